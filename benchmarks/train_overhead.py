"""What training's extras cost: the whole `dcgan train` process against a bare loop of the same steps.

"whole" is the command as a user runs it, timed from its start to its exit: start-up, data,
every step, and at default settings the extras (checkpoints, generator files, sample grids,
the quality signal, the loss plot, metrics). "bare" is a second process that runs the same
steps on the same batches with the same step code (the trainer's own ``train_step``, models
and optimizers, so the CPU convolution variant is the same too) and nothing else, timed
around the loop alone. The figure is whole / bare; the target is at most 1.05.

The two runs are long, so by default they run once each (whole, then bare); --rounds N
alternates them N times and reports medians. Besides wall-clock it reports CPU time (the
whole process's, every thread, against the bare loop's): on a shared machine wall-clock
swings several percent from one run to the next with the neighbours' load, CPU time less.

Two processes minutes apart see different neighbours (on our 2-core machine the same steps
took 5-8% longer in one of two back-to-back processes as often as not), so the whole process
is also measured against itself: `dcgan train --json` reports its training loop's seconds and
how many of them went to snapshots, checkpoints and the loss plot, and the process's wall
time over the loop's steps alone ("same process") counts start-up, extras and exit at the
same moment as the steps. It cannot see extras that slow the steps down (a thread competing
for the cores did, once), which the bare loop in another process can.

    python benchmarks/train_overhead.py                                     # digits, 50 epochs
    python benchmarks/train_overhead.py --size 64 --channels 3 --epochs 5   # a 64x64 model on digits
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bare_loop(run: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the steps alone: the trainer's step over the run's batches, nothing written."""
    from dcgan_cli.data.batches import EpochBatchSampler, make_loader
    from dcgan_cli.training.trainer import Trainer

    trainer = Trainer(run)
    cfg = trainer.cfg
    started, cpu_started = time.perf_counter(), time.process_time()
    while trainer.step < trainer.total_steps:
        epoch = trainer.step // trainer.steps_per_epoch
        sampler = EpochBatchSampler(len(trainer.dataset), cfg.batch_size, cfg.seed, epoch, 0, 0, 1)
        for batch in make_loader(trainer.dataset, sampler, cfg.workers, pin_memory=False):
            real = batch.images.to(trainer.device, memory_format=trainer.memory_format)
            losses = trainer.train_step(real)
            trainer.step += 1
            if trainer.step >= trainer.total_steps:
                break
    losses[0].item()  # the last step has finished
    return time.perf_counter() - started, time.process_time() - cpu_started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--channels", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bare-from", type=Path, help=argparse.SUPPRESS)  # the bare process
    args = parser.parse_args(argv)
    if args.bare_from:
        wall, cpu = bare_loop(args.bare_from)
        print(json.dumps({"seconds": wall, "cpu_seconds": cpu}))
        return 0

    work = Path(tempfile.mkdtemp(prefix="dcgan-overhead-"))
    env = {**os.environ, "DCGAN_QUIET": "1"}
    shape = [
        *(["--size", str(args.size)] if args.size else []),
        *(["--channels", str(args.channels)] if args.channels else []),
    ]
    whole_s, bare_s, whole_cpu, bare_cpu, steps = [], [], [], [], None
    loop_steps_s, snapshots = [], []  # the whole process's own steps (its loop less extras), snapshots taken
    try:
        for r in range(args.rounds):
            run = work / f"whole-{r}"
            command = [sys.executable, "-m", "dcgan_cli", "train", args.dataset, "--epochs", str(args.epochs),
                       "--device", "cpu", "--out", str(run), "--json", *shape]  # fmt: skip
            started, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            done = json.loads(subprocess.run(command, check=True, env=env, capture_output=True, text=True).stdout)
            whole_s.append(time.perf_counter() - started)
            loop_steps_s.append(done["seconds"] - done["extras_seconds"])
            snapshots.append(done["snapshots"])
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            whole_cpu.append(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
            steps = json.loads((run / "latest.json").read_text())["step"]
            bare = work / f"bare-{r}"
            bare.mkdir()
            shutil.copy(run / "config.json", bare / "config.json")
            shutil.rmtree(run)
            out = subprocess.run(
                [sys.executable, __file__, "--bare-from", str(bare)],
                check=True,
                env=env,
                capture_output=True,
                text=True,
            )
            measured = json.loads(out.stdout.splitlines()[-1])
            bare_s.append(measured["seconds"])
            bare_cpu.append(measured["cpu_seconds"])
            shutil.rmtree(bare)
        whole, bare = statistics.median(whole_s), statistics.median(bare_s)
        cpu_ratio = statistics.median(whole_cpu) / statistics.median(bare_cpu)
        same_process = statistics.median(w / own for w, own in zip(whole_s, loop_steps_s))
        result = {
            "dataset": args.dataset,
            "epochs": args.epochs,
            "steps": steps,
            "whole_s": round(whole, 1),
            "bare_s": round(bare, 1),
            "ratio": round(whole / bare, 3),
            "whole_cpu_s": round(statistics.median(whole_cpu), 1),
            "bare_cpu_s": round(statistics.median(bare_cpu), 1),
            "cpu_ratio": round(cpu_ratio, 3),
            "own_steps_s": round(statistics.median(loop_steps_s), 1),
            "same_process_ratio": round(same_process, 3),
            "snapshots": snapshots,
            "rounds": {
                "whole": [round(x, 1) for x in whole_s],
                "bare": [round(x, 1) for x in bare_s],
                "whole_cpu": [round(x, 1) for x in whole_cpu],
                "bare_cpu": [round(x, 1) for x in bare_cpu],
                "own_steps": [round(x, 1) for x in loop_steps_s],
            },
            "cpus": os.cpu_count(),
        }
        print(
            f"dcgan train {args.dataset} --epochs {args.epochs} {' '.join(shape)} ({steps} steps, {os.cpu_count()} CPUs): "
            f"whole process {whole:.1f} s, bare steps {bare:.1f} s: {whole / bare:.3f}x (target <= 1.05); "
            f"CPU time {statistics.median(whole_cpu):.1f} s vs {statistics.median(bare_cpu):.1f} s: {cpu_ratio:.3f}x"
        )
        print(
            f"same process: whole {whole:.1f} s over its own steps {statistics.median(loop_steps_s):.1f} s "
            f"(its loop less {snapshots[-1]} snapshots, checkpoints and plots): {same_process:.3f}x"
        )
        if args.json:
            print(json.dumps(result, indent=2))
        return 0 if whole / bare <= 1.05 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
