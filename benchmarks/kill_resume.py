"""Crash safety: SIGKILL `dcgan train` at random moments, resume, compare with a clean run.

One uninterrupted reference run is trained first, timing when its first checkpoint
appears. Then each trial starts the same training and kills it with SIGKILL, alternately
(from the first trial on) before any checkpoint exists (anywhere from interpreter start-up
on) and after the first one was written (anywhere in the steps that follow). Whether a
checkpoint existed at the kill is read off the run folder afterwards, not assumed. Each
trial checks that every file named like a checkpoint reads back whole and that latest.json
names one of them, resumes with `dcgan train --resume` (or starts again when the kill came
before config.json existed) and lets it finish.

A trial passes when the final weights, both optimizer states and the RNG state equal the
reference bit for bit, and the finishing session began where it should: at the newest
checkpoint's step (above 0) after a kill that left one, from scratch otherwise, running
only the remaining steps (its note "Resuming from ... (step N" and its "Done: ..." line
say so). A restart from step 0 would also end bitwise equal, so the weights alone prove
nothing about resumption.

    python benchmarks/kill_resume.py                # 20 trials
    python benchmarks/kill_resume.py --trials 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dcgan_cli.core.files import read_json, read_safetensors
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.training.checkpoints import latest_checkpoint, list_checkpoints

RESUMED = re.compile(r"Resuming from step-\d+\.safetensors \(step (\d+),")
DONE = re.compile(r"Done: (\d+) steps(?: \((\d+) run now, resumed at step (\d+)\))?")
POLL_S = 0.01


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


def has_checkpoint(run: Path) -> bool:
    return bool(list_checkpoints(run))


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


def timed_reference(run: Path, steps: int, seed: int) -> tuple[float, float]:
    """Train the reference run; (seconds until its first checkpoint existed, seconds in all)."""
    started = time.monotonic()
    process = subprocess.Popen(
        train_command(run, steps, seed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    first = None
    while process.poll() is None:
        if first is None and has_checkpoint(run):
            first = time.monotonic() - started
        time.sleep(POLL_S)
    total = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"the reference run failed: {process.stderr.read()[-2000:]}")
    return (first if first is not None else total), total


def kill_when(process: subprocess.Popen, run: Path, delay: float, *, after_checkpoint: bool) -> bool:
    """SIGKILL ``process`` ``delay`` s after it started, or (``after_checkpoint``) after its first
    checkpoint appeared; True when it was still running to be killed."""
    started = time.monotonic()
    while after_checkpoint and not has_checkpoint(run) and process.poll() is None:
        time.sleep(POLL_S)
        started = time.monotonic()
    while time.monotonic() - started < delay and process.poll() is None:
        time.sleep(POLL_S)
    if process.poll() is not None:
        return False
    process.kill()
    process.wait()
    return True


def finishing_session(output: str, steps: int) -> tuple[int, int | None]:
    """(step the finishing session began at, steps it ran) from what it printed."""
    resumed = RESUMED.search(output)
    done = DONE.search(output)
    began = int(resumed.group(1)) if resumed else 0
    ran = None
    if done and int(done.group(1)) == steps:
        ran = int(done.group(2)) if done.group(2) is not None else steps
    return began, ran


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
        first_checkpoint_time, full_time = timed_reference(reference, args.steps, args.seed)
        expected = final_tensors(reference)

        results = []
        for trial in range(args.trials):
            run = work / f"trial-{trial:02d}"
            plan = "before" if trial % 2 == 0 else "after"
            # Half the time to the first checkpoint, or half the time left after it: a margin
            # for a machine that runs faster or slower than it did for the reference.
            if plan == "before":
                delay = rng.uniform(0.2, max(0.2, 0.5 * first_checkpoint_time))
            else:
                delay = rng.uniform(0.0, 0.5 * (full_time - first_checkpoint_time))
            process = subprocess.Popen(
                train_command(run, args.steps, args.seed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            killed = kill_when(process, run, delay, after_checkpoint=plan == "after")
            if not killed:
                process.wait()
            checkpoint_at_kill = has_checkpoint(run)  # files can only have appeared before the kill
            problem = check_after_kill(run)
            step_at_kill = latest_checkpoint(run)[2]["step"] if problem is None and checkpoint_at_kill else 0
            began = ran = None
            if problem is None:
                again = (
                    resume_command(run) if RunPaths(run).config.is_file() else train_command(run, args.steps, args.seed)
                )
                finish = subprocess.run(again, env=env(), capture_output=True, text=True)
                began, ran = finishing_session(finish.stdout + finish.stderr, args.steps)
                if finish.returncode != 0:
                    problem = f"resume failed ({finish.returncode}): {finish.stderr.strip().splitlines()[-1:]}"
                elif not same(final_tensors(run), expected):
                    problem = "final weights differ from the uninterrupted run"
                elif killed and checkpoint_at_kill and began != step_at_kill:
                    problem = f"the newest checkpoint was step {step_at_kill}, but the run resumed at step {began}"
                elif killed and not checkpoint_at_kill and began != 0:
                    problem = f"no checkpoint existed, yet the run resumed at step {began}"
                elif killed and ran != args.steps - began:
                    problem = f"resumed at step {began}, it ran {ran} steps, not the {args.steps - began} left"
            results.append(
                {
                    "trial": trial,
                    "plan": plan,
                    "delay_s": round(delay, 2),
                    "killed": killed,
                    "checkpoint_at_kill": killed and checkpoint_at_kill,
                    "checkpoint_step_at_kill": step_at_kill,
                    "resumed_from_step": began,
                    "steps_run": ran,
                    "problem": problem,
                }
            )
            if not args.json:
                status = "ok" if problem is None else f"FAIL: {problem}"
                when = "after a checkpoint" if checkpoint_at_kill else "before any checkpoint"
                what = f"killed {when} (plan: {plan}, {delay:4.2f} s)" if killed else "finished before the kill"
                print(f"trial {trial:2d}: {what}, resumed at step {began} -> {status}", flush=True)

    passed = sum(r["problem"] is None for r in results)
    summary = {
        "trials": args.trials,
        "passed": passed,
        "steps": args.steps,
        "killed_before_checkpoint": sum(r["killed"] and not r["checkpoint_at_kill"] for r in results),
        "killed_after_checkpoint": sum(r["checkpoint_at_kill"] for r in results),
        "not_killed": sum(not r["killed"] for r in results),
        "seconds_to_first_checkpoint": round(first_checkpoint_time, 1),
        "uninterrupted_seconds": round(full_time, 1),
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{passed}/{args.trials} trials passed: {summary['killed_before_checkpoint']} killed before the first "
            f"checkpoint, {summary['killed_after_checkpoint']} after it, {summary['not_killed']} finished first"
        )
    raise SystemExit(0 if passed == args.trials else 1)


if __name__ == "__main__":
    main()
