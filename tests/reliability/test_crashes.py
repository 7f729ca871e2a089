"""What survives a crash: SIGKILL at any moment, Ctrl-C, a full disk, a second writer."""

import json
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
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kill_resume.py"), "--trials", "5", "--steps", "30", "--json"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "DCGAN_QUIET": "1"},
    )
    summary = json.loads(result.stdout)
    problems = [r for r in summary["results"] if r["problem"]]
    assert summary["passed"] == 5, problems
    assert result.returncode == 0


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
