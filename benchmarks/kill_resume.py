"""Crash safety: SIGKILL `dcgan train` at random moments, resume, compare with a clean run.

One uninterrupted reference run is trained first. Then each trial starts the same
training, kills it with SIGKILL after a random delay (anywhere from interpreter start-up
to the last checkpoint write), checks that every file named like a checkpoint reads back
whole and that latest.json names one of them, resumes with `dcgan train --resume` (or
starts again when the kill came before config.json existed) and lets it finish. A trial
passes when the final weights, both optimizer states and the RNG state equal the
reference bit for bit.

    python benchmarks/kill_resume.py                # 20 trials
    python benchmarks/kill_resume.py --trials 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dcgan_cli.core.files import read_json, read_safetensors
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.training.checkpoints import latest_checkpoint, list_checkpoints


def train_command(run: Path, steps: int, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "dcgan_cli", "train", "digits", "--out", str(run), "--ngf", "8", "--ndf", "8",
        "--batch-size", "64", "--epochs", "100", "--max-steps", str(steps), "--checkpoint-every", "3",
        "--seed", str(seed), "--device", "cpu",
    ]  # fmt: skip


def resume_command(run: Path) -> list[str]:
    return [sys.executable, "-m", "dcgan_cli", "train", "--resume", str(run)]


def env() -> dict:
    return {**os.environ, "DCGAN_QUIET": "1", "OMP_NUM_THREADS": "1"}


def check_after_kill(run: Path) -> str | None:
    """None when the run folder is consistent after a SIGKILL, else what is wrong."""
    for _step, path in list_checkpoints(run):
        try:
            read_safetensors(path)
        except Exception as exc:  # a complete-looking name on an incomplete file
            return f"{path.name} is named like a checkpoint but does not read back: {exc}"
    latest = RunPaths(run).latest
    if latest.exists():
        pointer = read_json(latest)
        if not (run / pointer["checkpoint"]).is_file():
            return f"latest.json names {pointer['checkpoint']}, which does not exist"
    return None


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    found = latest_checkpoint(run)
    assert found is not None, f"{run} has no checkpoint"
    return found[1]


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=40, help="training steps of every run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        reference = work / "reference"
        started = time.monotonic()
        subprocess.run(train_command(reference, args.steps, args.seed), env=env(), check=True, capture_output=True)
        full_time = time.monotonic() - started
        expected = final_tensors(reference)

        results = []
        for trial in range(args.trials):
            run = work / f"trial-{trial:02d}"
            delay = rng.uniform(0.2, full_time)
            process = subprocess.Popen(
                train_command(run, args.steps, args.seed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            time.sleep(delay)
            killed = process.poll() is None
            if killed:
                process.kill()
            process.wait()
            problem = check_after_kill(run)
            step_at_kill = (
                latest_checkpoint(run)[2]["step"] if (run / "checkpoints").is_dir() and list_checkpoints(run) else 0
            )
            if problem is None:
                again = (
                    resume_command(run) if RunPaths(run).config.is_file() else train_command(run, args.steps, args.seed)
                )
                finish = subprocess.run(again, env=env(), capture_output=True, text=True)
                if finish.returncode != 0:
                    problem = f"resume failed ({finish.returncode}): {finish.stderr.strip().splitlines()[-1:]}"
                elif not same(final_tensors(run), expected):
                    problem = "final weights differ from the uninterrupted run"
            results.append(
                {
                    "trial": trial,
                    "delay_s": round(delay, 2),
                    "killed": killed,
                    "resumed_from_step": step_at_kill,
                    "problem": problem,
                }
            )
            if not args.json:
                status = "ok" if problem is None else f"FAIL: {problem}"
                print(
                    f"trial {trial:2d}: killed after {delay:5.2f}s (checkpoint step {step_at_kill:3d}) -> {status}",
                    flush=True,
                )

    passed = sum(r["problem"] is None for r in results)
    summary = {
        "trials": args.trials,
        "passed": passed,
        "steps": args.steps,
        "uninterrupted_seconds": round(full_time, 1),
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{passed}/{args.trials} trials passed")
    raise SystemExit(0 if passed == args.trials else 1)


if __name__ == "__main__":
    main()
