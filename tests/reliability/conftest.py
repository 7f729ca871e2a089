import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dcgan_env() -> dict:
    return {**os.environ, "DCGAN_QUIET": "1", "OMP_NUM_THREADS": "1"}


def long_training(run: Path, *extra: str, **popen) -> subprocess.Popen:
    """A tiny-model training that runs until it is stopped, checkpointing every 5 steps;
    ``extra`` arguments go on its command line (``--nproc 2``)."""
    cmd = [
        sys.executable,
        "-m",
        "dcgan_cli",
        "train",
        "digits",
        "--out",
        str(run),
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--batch-size",
        "64",
        "--max-steps",
        "100000",
        "--epochs",
        "10000",
        "--checkpoint-every",
        "5",
        "--device",
        "cpu",
        *extra,
    ]
    return subprocess.Popen(cmd, env=dcgan_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for_checkpoint(run: Path, process: subprocess.Popen, timeout: float = 120, after: int = 0) -> None:
    """Wait until ``run`` has a checkpoint of a step above ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "latest.json").exists() and json.loads((run / "latest.json").read_text())["step"] > after:
            return
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.communicate()}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("no checkpoint appeared in time")


@pytest.fixture
def dcgan_cmd():
    def run(*args, **kwargs):
        return subprocess.run(
            [sys.executable, "-m", "dcgan_cli", *map(str, args)],
            env=dcgan_env(),
            capture_output=True,
            text=True,
            **kwargs,
        )

    return run


@pytest.fixture(name="long_training")
def long_training_fixture():
    started = []

    def start(run, *extra, **popen):
        p = long_training(run, *extra, **popen)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            # SIGTERM first: a `--nproc` launcher passes it on to its workers, which sit in their
            # own sessions and would outlive a SIGKILLed launcher.
            p.terminate()
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(name="wait_for_checkpoint")
def wait_for_checkpoint_fixture():
    return wait_for_checkpoint
