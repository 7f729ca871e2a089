"""Sampling throughput: each engine against the plain PyTorch fp32 eager generator.

The reference is what a user writes by hand: the paper's 64x64 generator (nz=100, ngf=64,
RGB) in eval mode under torch.no_grad(), contiguous NCHW tensors. Every engine runs the
same weights in this process; reference and engine calls alternate, so machine noise hits
both alike. The figure that matters is the ratio.

    python benchmarks/sample_throughput.py                       # CPU: fp32, int8, bf16; batch 1 and 256
    python benchmarks/sample_throughput.py --precisions fp32 --batch-sizes 1,64,256 --json
    python benchmarks/sample_throughput.py --device cuda --precisions fp16 --batch-sizes 1024
    python benchmarks/sample_throughput.py --memory 100000       # peak RSS of `dcgan sample -n 100000`

Targets at 64x64 on the 2-core CPU: the best engine and precision >= 3x the reference at batch 1
and >= 2.5x at 256 (int8 or bf16; fp32 alone reached 2.0x and 1.9x).
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

import torch

from dcgan_cli.core.model import DCGANConfig, build_models
from dcgan_cli.core.networks import save_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.base import get_engines
from dcgan_cli.engines.export import export_generator
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.step import standing_generator

TARGETS = {1: 3.0, 256: 2.5}


def make_run(root: Path, size: int, ngf: int, channels: int) -> Path:
    """A run folder holding an untrained generator (speed does not depend on the weights), its
    BatchNorm statistics measured as training measures them (int8 calibrates on its activations)."""
    model = DCGANConfig(size=size, channels=channels, ngf=ngf, ndf=ngf)
    create_run(root, model, TrainConfig(dataset="fake", device="cpu"), {"name": "fake"})
    netG, _ = build_models(model, seed=0)
    netG = standing_generator(netG, seed=0)  # BatchNorm statistics of its own activations, as a trained run has
    save_generator(root, netG.state_dict(), model, {"step": 0})
    return root


def per_call(fn, min_time: float, clock=time.perf_counter) -> float:
    """Seconds per call (by ``clock``), the median over as many calls as fit in min_time (at least 3)."""
    times = []
    started = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < min_time:
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def compare(
    run_dir: Path,
    engine_names: list[str],
    batch_sizes: list[int],
    precisions: list[str],
    device: str,
    rounds: int,
    min_time: float,
    clock=time.perf_counter,
    threads: int | None = None,
) -> list[dict]:
    from dcgan_cli import load_generator

    reference_device = torch.device("cuda" if device.startswith("cuda") else "cpu")
    reference = load_generator(run_dir, device=reference_device)  # plain: fp32, NCHW, eval
    engines = get_engines()
    rows = []
    cases = [(n, p) for n in engine_names for p in precisions if p in engines[n].PRECISIONS]
    for name, precision in cases:
        try:
            engine = engines[name](
                run_dir, device=device, precision=precision, **({"threads": threads} if threads else {})
            )
        except Exception as exc:  # an engine that cannot run here is reported, not fatal
            print(f"{name} {precision}: skipped ({exc})", file=sys.stderr)
            continue
        with engine:
            for batch in batch_sizes:
                z = seeded_z(0, batch, reference.config.nz, reference.config.prior)
                z_ref = z.to(reference_device)

                def run_reference(z_ref=z_ref):
                    with torch.no_grad():
                        reference(z_ref).cpu()

                def run_engine(engine=engine, z=z):
                    engine.generate(z)

                for fn in (run_reference, run_engine):  # warm-up both
                    fn()
                    fn()
                ref_times, eng_times = [], []
                for _ in range(rounds):  # alternate, so load changes hit both
                    ref_times.append(per_call(run_reference, min_time, clock))
                    eng_times.append(per_call(run_engine, min_time, clock))
                ref_ips, eng_ips = batch / statistics.median(ref_times), batch / statistics.median(eng_times)
                rows.append(
                    {
                        "engine": name,
                        "precision": precision,
                        "runs_on": engine.describe(),
                        "batch": batch,
                        "reference_images_per_s": ref_ips,
                        "engine_images_per_s": eng_ips,
                        "ratio": eng_ips / ref_ips,
                    }
                )
                print(
                    f"{name:12s} {precision:5s} batch {batch:5d}: {eng_ips:10.1f} img/s vs reference {ref_ips:10.1f} img/s "
                    f"= {eng_ips / ref_ips:5.2f}x   [{engine.describe()}]",
                    flush=True,
                )
    return rows


def measure_memory(run_dir: Path, n: int, workdir: Path) -> dict:
    """Peak resident memory of `dcgan sample -n N --out x.npz` (a separate process)."""
    out = workdir / "all.npz"
    started = time.perf_counter()
    env = {**os.environ, "DCGAN_QUIET": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dcgan_cli",
            "sample",
            "-r",
            str(run_dir),
            "-n",
            str(n),
            "--out",
            str(out),
            "--engine",
            "auto",
        ],
        check=True,
        env=env,
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: kilobytes
    size_mb = out.stat().st_size / 1e6
    out.unlink()
    return {"images": n, "peak_rss_mb": peak_mb, "npz_mb": size_mb, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default=None, help="comma-separated (default: every engine registered)")
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,int8,bf16", help="comma-separated (each engine runs its own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per case")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per timing in each round")
    parser.add_argument(
        "--memory", type=int, default=0, metavar="N", help="also measure peak RSS of sampling N images to .npz"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every engine (default: all)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by this process's CPU seconds, not the wall clock: steadier on a machine others share "
        "(with --threads 1, where no thread waits for another)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter

    workdir = Path(tempfile.mkdtemp(prefix="dcgan-bench-"))
    try:
        run_dir = make_run(workdir / "run", args.size, args.ngf, args.channels)
        precisions = args.precisions.split(",")
        for p in sorted({"fp32", *precisions} - {"bf16"}):  # ONNX Runtime runs fp32, fp16 and int8 exports
            result = export_generator(run_dir, p)
            if result.parity is not None:
                print(f"export {p}: {result.parity.summary()}", flush=True)
        names = args.engines.split(",") if args.engines else sorted(get_engines())
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        print(
            f"{args.size}x{args.size}x{args.channels} generator, ngf={args.ngf}, {args.precisions} on {args.device}; "
            f"reference: plain PyTorch fp32 eager; {torch.get_num_threads()} threads"
            + (", per CPU-second" if args.cpu_time else ""),
            flush=True,
        )
        rows = compare(
            run_dir, names, batch_sizes, precisions, args.device, args.rounds, args.min_time, clock, args.threads
        )
        verdicts = []
        for batch, target in TARGETS.items():
            best = max((r for r in rows if r["batch"] == batch), key=lambda r: r["ratio"], default=None)
            if best is not None and args.device == "cpu" and (args.size, args.ngf) == (64, 64):
                ok = best["ratio"] >= target
                verdicts.append(ok)
                print(
                    f"best at batch {batch}: {best['engine']} {best['precision']} {best['ratio']:.2f}x (target >= {target}x): {'ok' if ok else 'MISSED'}"
                )
        memory = measure_memory(run_dir, args.memory, workdir) if args.memory else None
        if memory:
            print(
                f"dcgan sample -n {memory['images']} --out all.npz: peak RSS {memory['peak_rss_mb']:.0f} MB "
                f"(limit 2048 MB), {memory['npz_mb']:.0f} MB written in {memory['seconds']:.0f} s"
            )
        if args.json:
            print(json.dumps({"rows": rows, "memory": memory}, indent=2))
        return 0 if all(verdicts) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
