"""scripts/gpu_check.py, the GPU acceptance check: what it says without a GPU, its table and
exit code, and its checks run on the CPU engines (the GPU paths themselves need a GPU)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.hookspecs import hookimpl

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["gpu_check"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the script checks it")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2():
    done = run_script()
    assert done.returncode == 2
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("no CUDA GPU here")
    assert "--device cpu" in done.stdout and done.stderr == ""


def test_on_the_cpu_every_check_that_applies_passes(tmp_path):
    """The script's own smoke test: the same checks on the CPU, where they apply."""
    done = run_script("--device", "cpu", "--steps", "1", "--bench-time", "0.05", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {(r["group"], r["check"]): r for r in json.loads(done.stdout)["rows"]}
    failed = [r for r in rows.values() if r["status"] == "FAIL"]
    assert failed == []
    for key in [("train", "fp32, channels-last"), ("train", "fp32, contiguous"), ("train", "bf16, channels-last")]:
        assert rows[key]["status"] == "ok" and rows[key]["detail"].startswith("1 step, "), rows[key]
    assert rows[("sample", "torch fp32")]["status"] == "ok" and "max |diff|" in rows[("sample", "torch fp32")]["detail"]
    for key in [("train", "bf16, channels-last, compile"), ("train", "2 processes, NCCL"), ("sample", "torch fp16")]:
        assert rows[key]["status"] == "skip" and rows[key]["detail"], key  # GPU only, and it says so
    if importlib.util.find_spec("dcgan_onnxruntime") is not None:
        for key in [("export", "fp32"), ("export", "fp16"), ("sample", "onnxruntime fp16"), ("bench", "fp32")]:
            assert rows[key]["status"] == "ok", rows[key]
        assert "onnxruntime" in rows[("bench", "fp32")]["detail"] and "torch" in rows[("bench", "fp32")]["detail"]
    assert ", 0 failed in " in json.loads(done.stdout)["summary"]


def test_a_failing_check_is_a_row_and_a_nonzero_exit(gpu_check, monkeypatch, capsys):
    def broken():
        raise RuntimeError("kernel launch failed\nsecond line")

    def refused():
        raise DcganError("one clear line")

    def not_here():
        raise gpu_check.Skip("needs two GPUs")

    checks = [("a", "ok", lambda: "fine"), ("a", "broken", broken), ("b", "refused", refused), ("b", "skip", not_here)]
    monkeypatch.setattr(gpu_check, "checks_for", lambda *args: checks)
    assert gpu_check.main(["--device", "cpu"]) == 1
    table = capsys.readouterr().out
    assert (
        "kernel launch failed" in table
        and "second line" not in table
        and "4 checks: 1 ok, 1 skipped, 2 failed" in table
    )
    monkeypatch.setattr(gpu_check, "checks_for", lambda *args: [checks[0], checks[3]])
    assert gpu_check.main(["--device", "cpu", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["check"], r["status"], r["detail"]) for r in rows] == [
        ("ok", "ok", "fine"),
        ("skip", "skip", "needs two GPUs"),
    ]


def test_an_engine_that_draws_other_images_fails_its_sample_check(gpu_check, registered, tmp_path):
    class Darker(TorchEngine):
        NAME = "darker"

        def generate(self, z):
            return super().generate(z) - 0.01  # off by about a grey level: far beyond fp32's tolerance

    class Plugin:
        @hookimpl
        def dcgan_register_engines(self, register):
            register(Darker)

    registered(Plugin(), "darker-engine-plugin")
    run = tmp_path / "digits-run"
    shutil.copytree(gpu_check.FIXTURE, run)
    reference = gpu_check.reference_images(run)
    assert gpu_check.sample_check(run, reference, "torch", "fp32", "cpu")().startswith("max |diff|")
    with pytest.raises(RuntimeError, match=r"max \|diff\| 0.01 from PyTorch fp32 > tolerance 0.0001"):
        gpu_check.sample_check(run, reference, "darker", "fp32", "cpu")()
