"""What survives a crash: SIGKILL at any moment, Ctrl-C, a full disk, a second writer."""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.files import read_safetensors
from dcgan_cli.training.checkpoints import latest_checkpoint, list_checkpoints

ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run():
    """Five SIGKILLs: trials 0, 2 and 4 before the first checkpoint exists, 1 and 3 after it.

    Each finishing session must end bitwise equal to the reference and begin where the
    kill left the run: at the newest checkpoint's step (above 0) when one existed, running
    only the steps left; from scratch when none did (benchmarks/kill_resume.py checks both).
    """
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kill_resume.py"), "--trials", "5", "--steps", "30", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DCGAN_QUIET": "1"},
    )
    summary = json.loads(result.stdout)
    problems = [r for r in summary["results"] if r["problem"]]
    assert summary["passed"] == 5, problems
    assert result.returncode == 0
    # Both kinds of kill happened, as planned (the plan keeps half the measured time as a margin).
    assert [r["plan"] for r in summary["results"]] == ["before", "after", "before", "after", "before"]
    assert (summary["killed_before_checkpoint"], summary["killed_after_checkpoint"]) == (3, 2), summary["results"]
    for trial in summary["results"]:
        if trial["checkpoint_at_kill"]:
            assert trial["resumed_from_step"] == trial["checkpoint_step_at_kill"] > 0, trial
            assert trial["steps_run"] == 30 - trial["resumed_from_step"], trial
        else:
            assert trial["resumed_from_step"] == 0 and trial["steps_run"] == 30, trial


def test_ctrl_c_writes_a_checkpoint_says_how_to_resume_and_exits_130(
    tmp_path, long_training, wait_for_checkpoint, dcgan_cmd
):
    run = tmp_path / "run"
    process = long_training(run)
    wait_for_checkpoint(run, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    line = next(text for text in stderr.splitlines() if text.startswith("Error:"))
    assert "interrupted at step" in line and f"Resume with: dcgan train --resume {run}" in line
    step = latest_checkpoint(run)[2]["step"]
    assert f"step {step};" in line
    finish = dcgan_cmd("train", "--resume", run, "--max-steps", step + 2)
    assert finish.returncode == 0, finish.stderr
    assert latest_checkpoint(run)[2]["step"] == step + 2


def test_full_disk_keeps_the_previous_checkpoint_and_latest_json(tmp_path, dcgan_cmd):
    run = tmp_path / "run"
    first = dcgan_cmd(
        "train",
        "digits",
        "--out",
        run,
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--batch-size",
        "64",
        "--max-steps",
        "5",
        "--checkpoint-every",
        "5",
        "--device",
        "cpu",
    )
    assert first.returncode == 0, first.stderr
    latest_before = (run / "latest.json").read_bytes()
    checkpoint = list_checkpoints(run)[0][1]
    size = checkpoint.stat().st_size

    def limit_file_size():  # files may grow to a third of a checkpoint: the next one cannot be written
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 3, size // 3))

    second = dcgan_cmd("train", "--resume", run, "--max-steps", "10", preexec_fn=limit_file_size)
    assert second.returncode == ExitCode.BAD_INPUT, second.stderr
    assert "Traceback" not in second.stderr
    assert "could not write" in second.stderr and "File too large" in second.stderr
    assert "previous version of the file is untouched" in second.stderr
    assert (run / "latest.json").read_bytes() == latest_before
    read_safetensors(checkpoint)  # still whole
    assert [s for s, _ in list_checkpoints(run)] == [5]
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name], "temporary files are cleaned up"
    # With room again, the run continues from step 5.
    third = dcgan_cmd("train", "--resume", run, "--max-steps", "10")
    assert third.returncode == 0, third.stderr
    assert latest_checkpoint(run)[2]["step"] == 10


def test_a_second_writer_is_refused_and_a_dead_holder_leaves_no_stale_lock(
    tmp_path, long_training, wait_for_checkpoint, dcgan_cmd
):
    run = tmp_path / "run"
    holder = long_training(run)
    wait_for_checkpoint(run, holder)
    second = dcgan_cmd("train", "--resume", run, "--max-steps", "3")
    assert second.returncode == ExitCode.BAD_INPUT
    assert f"is in use by dcgan train (pid {holder.pid})" in second.stderr
    forced = dcgan_cmd("train", "digits", "--out", run, "--force")
    assert forced.returncode == ExitCode.BAD_INPUT and "in use" in forced.stderr
    assert (run / "config.json").exists(), "--force did not touch a run another process holds"
    holder.kill()  # SIGKILL: no chance to clean up
    holder.wait()
    step = latest_checkpoint(run)[2]["step"]
    after = dcgan_cmd("train", "--resume", run, "--max-steps", step + 1)
    assert after.returncode == 0, after.stderr


def error_line(stderr: str) -> str:
    lines = [text for text in stderr.splitlines() if text.startswith("Error:")]
    assert len(lines) == 1, stderr  # one message, also from several processes
    return lines[0]


def test_sigterm_writes_a_checkpoint_exits_143_and_the_run_resumes(
    tmp_path, long_training, wait_for_checkpoint, dcgan_cmd
):
    run = tmp_path / "run"
    process = long_training(run)
    wait_for_checkpoint(run, process)
    process.terminate()  # what a scheduler or `kill` sends
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == ExitCode.TERMINATED, stderr
    assert "Traceback" not in stderr
    step = latest_checkpoint(run)[2]["step"]
    line = error_line(stderr)
    assert f"terminated (SIGTERM) at step {step}; checkpoint step-{step:07d}.safetensors saved" in line
    assert f"Resume with: dcgan train --resume {run}" in line
    finish = dcgan_cmd("train", "--resume", run, "--max-steps", step + 2)
    assert finish.returncode == 0, finish.stderr
    assert f"Resuming from step-{step:07d}.safetensors (step {step}," in finish.stderr
    assert f"Done: {step + 2} steps (2 run now, resumed at step {step})" in finish.stdout


def test_two_processes_stop_together_on_ctrl_c_and_sigterm_and_resume(
    tmp_path, long_training, wait_for_checkpoint, dcgan_cmd
):
    """A real torchrun job of two CPU processes (gloo). Ctrl-C in a terminal signals the
    foreground process group, the launcher's; torchrun passes the signal on to the workers,
    which agree on a step, checkpoint it and exit 130. The resumed job gets SIGTERM (a
    scheduler stopping it) and exits 143 the same way. Then one process finishes the run."""
    run = tmp_path / "run"
    launcher = long_training(run, "--nproc", "2", start_new_session=True)
    wait_for_checkpoint(run, launcher, timeout=300)
    os.killpg(launcher.pid, signal.SIGINT)
    _, stderr = launcher.communicate(timeout=180)
    assert launcher.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    _, _, meta = latest_checkpoint(run)
    first = meta["step"]
    assert f"interrupted at step {first}; checkpoint step-{first:07d}.safetensors saved" in error_line(stderr)
    # Both replicas stopped after the same step: the checkpoint's digests of their weights agree.
    assert meta["world_size"] == 2 and len(set(meta["replica_sha256"])) == 1

    resumed = subprocess.Popen(
        [sys.executable, "-m", "dcgan_cli", "train", "--resume", str(run), "--nproc", "2"],
        env={**os.environ, "DCGAN_QUIET": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_checkpoint(run, resumed, timeout=300, after=first)
        resumed.terminate()
        _, stderr = resumed.communicate(timeout=180)
    finally:
        if resumed.poll() is None:
            resumed.terminate()
            resumed.wait(timeout=90)
    assert resumed.returncode == ExitCode.TERMINATED, stderr
    assert f"Resuming from step-{first:07d}.safetensors (step {first}," in stderr
    _, _, meta = latest_checkpoint(run)
    second = meta["step"]
    assert second > first and meta["resumed_from_step"] == first and len(set(meta["replica_sha256"])) == 1
    assert f"terminated (SIGTERM) at step {second}; checkpoint step-{second:07d}.safetensors saved" in error_line(
        stderr
    )

    finish = dcgan_cmd("train", "--resume", run, "--max-steps", second + 1)
    assert finish.returncode == 0, finish.stderr
    assert f"Done: {second + 1} steps (1 run now, resumed at step {second})" in finish.stdout
