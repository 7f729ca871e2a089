"""`dcgan sample` in shards over processes: the same files whatever the processes, resumable after a kill."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.engines.export import export_generator
from dcgan_cli.engines.shards import RECORD_NAME, ShardJob, make_plan

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "digits-run"
QUIET = {**os.environ, "DCGAN_QUIET": "1"}


def files(folder: Path) -> dict[str, bytes]:
    """Every visible file of ``folder`` by name (the record and the lock are hidden)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


@pytest.fixture
def sample(cli):
    """sample(run, *args) -> (exit code, stderr) of `dcgan sample` in this process (workers are real processes)."""

    def run(run_dir, *args):
        result = cli(["sample", "-r", run_dir, "--device", "cpu", *args])
        return result.exit_code, result.stderr

    return run


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A copy of the trained digits fixture run (32x32x1) with its ONNX export."""
    run = tmp_path_factory.mktemp("shards") / "digits-run"
    shutil.copytree(FIXTURE_RUN, run)
    export_generator(run, "fp32")
    return run


def test_a_killed_job_continues_where_it_stopped_with_the_same_files(exported_run, tmp_path, sample):
    """Image i is the same file from one process, from two, and after a kill and a resume."""
    common = ("-n", 1200, "--shard-size", 60, "--batch-size", 30, "--engine", "torch")
    code, err = sample(exported_run, *common, "--out-dir", tmp_path / "reference")
    assert code == 0, err

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "dcgan_cli", "sample", "-r", str(exported_run), "--device", "cpu"]
    process = subprocess.Popen(
        [*command, *map(str, common), "--out-dir", str(out), "--nproc", "2"],
        env=QUIET,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: its workers are found by it below
    )
    record = out / RECORD_NAME
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            if len(json.loads(record.read_text()).get("done", [])) >= 2:
                break
        time.sleep(0.02)
    assert process.poll() is None, "the job ended before it could be killed: give it more images"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_at_kill = len(json.loads(record.read_text())["done"])
    assert 2 <= done_at_kill < 20
    deadline = time.monotonic() + 10  # the workers die with the parent: nothing keeps writing
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("worker processes outlived the killed job")

    code, err = sample(exported_run, *common, "--out-dir", out, "--nproc", 2)
    assert code == 0, err
    assert f"{done_at_kill} of 20 shards were done" in err
    assert files(out) == files(tmp_path / "reference")
    record = json.loads(record.read_text())
    assert record["complete"] and record["done"] == list(range(20)) and record["plan"]["engine"] == "torch"


def test_other_settings_in_the_same_folder_are_refused_unless_forced(exported_run, tmp_path, sample):
    out = tmp_path / "pngs"
    assert sample(exported_run, "-n", 40, "--out-dir", out, "--engine", "torch")[0] == 0
    code, err = sample(exported_run, "-n", 40, "--out-dir", out, "--engine", "torch")
    assert code == 0 and "All 40 images were already in" in err
    before = files(out)
    code, err = sample(exported_run, "-n", 40, "--seed", 9, "--out-dir", out, "--engine", "torch")
    assert code == ExitCode.BAD_INPUT
    assert "other settings (seed 0 (now 9))" in err and "--force to start over" in err
    assert files(out) == before  # the refused job touched nothing
    code, err = sample(exported_run, "-n", 40, "--seed", 9, "--out-dir", out, "--engine", "torch", "--force")
    assert code == 0, err
    assert sorted(files(out)) == sorted(before) and files(out) != before


def test_a_folder_being_written_is_refused(exported_run, tmp_path, sample):
    out = tmp_path / "busy"
    plan = make_plan(
        exported_run, "png", n=10, seed=0, shard_size=5, batch_size=5, engine="torch", precision="fp32", device="cpu"
    )
    with ShardJob(plan, out).lock():
        code, err = sample(exported_run, "-n", 10, "--out-dir", out, "--engine", "torch")
    assert code == ExitCode.BAD_INPUT
    assert f"{out} is being written by dcgan sample (pid {os.getpid()})" in err


def test_tar_shards_hold_the_images_in_webdataset_layout(exported_run, tmp_path, sample):
    common = ("-n", 50, "--seed", 2, "--shard-size", 20, "--engine", "torch")
    assert sample(exported_run, *common, "--out-dir", tmp_path / "pngs")[0] == 0
    code, err = sample(exported_run, *common, "--out-dir", tmp_path / "tars", "--tar")
    assert code == 0, err
    assert sorted(files(tmp_path / "tars")) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    pngs = files(tmp_path / "pngs")
    with tarfile.open(tmp_path / "tars" / "shard-000001.tar") as tar:
        names = tar.getnames()
        assert names[:4] == ["000020.png", "000020.json", "000021.png", "000021.json"] and len(names) == 40
        assert tar.extractfile("000033.png").read() == pngs["000033.png"]
        assert json.loads(tar.extractfile("000033.json").read()) == {"index": 33, "seed": 2}


def test_npz_from_two_onnxruntime_processes_holds_what_one_process_draws(exported_run, tmp_path, sample):
    pngs = tmp_path / "pngs"
    assert sample(exported_run, "-n", 90, "--out-dir", pngs, "--engine", "onnxruntime", "--shard-size", 30)[0] == 0
    code, err = sample(
        exported_run, "-n", 90, "--out", tmp_path / "all.npz", "--nproc", 2, "--shard-size", 25, "--save-z",
        "--engine", "onnxruntime",
    )  # fmt: skip
    assert code == 0, err
    assert not (tmp_path / "all.npz.parts").exists(), "the parts are removed once assembled"
    data = np.load(tmp_path / "all.npz")
    assert data["images"].shape == (90, 32, 32, 1) and data["z"].shape == (90, 100)
    for i in (0, 24, 25, 89):  # across shard edges of both jobs
        assert np.array_equal(np.asarray(Image.open(pngs / f"{i:06d}.png")), data["images"][i, :, :, 0])


def test_nproc_is_refused_for_a_grid_and_beyond_the_cpus(exported_run, tmp_path, sample):
    code, err = sample(exported_run, "-n", 4, "--out", tmp_path / "grid.png", "--nproc", 2)
    assert code == ExitCode.BAD_INPUT and "not for one grid picture" in err
    code, err = sample(exported_run, "-n", 4, "--out-dir", tmp_path / "d", "--nproc", 4096)
    assert code == ExitCode.BAD_INPUT and "--nproc 4096 is more than the" in err
