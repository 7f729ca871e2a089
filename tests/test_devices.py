"""--device: auto is CUDA, then Apple's MPS, then the CPU; what MPS cannot run falls back with one note.

This machine has neither CUDA nor MPS, so the choice is tested through the selection logic:
the pure functions of core/devices.py, and resolve_device with torch's availability probes
answering as they would on a Mac or a CUDA machine. What only a Mac can confirm (that the
torch engine and a training step run on MPS) is listed in docs/cli.md, "Devices".
"""

from types import SimpleNamespace

import pytest
import torch

from dcgan_cli.core import devices
from dcgan_cli.core.devices import (
    auto_device_type,
    compile_for,
    cpu_threads,
    cuda_graphs_for,
    inference_precision_for,
    processes_device_for,
    resolve_device,
    training_precision_for,
)
from dcgan_cli.core.errors import DcganError, ExitCode


@pytest.mark.parametrize(
    "cuda,mps,expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_the_cpu(cuda, mps, expected):
    assert auto_device_type(cuda, mps) == expected


@pytest.fixture
def machine(monkeypatch):
    """machine(cuda=..., mps=...): torch's probes answer as on such a machine."""

    def set_machine(*, cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_machine


def test_resolve_auto_follows_the_machine(machine):
    machine(cuda=False, mps=True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device("cpu") == torch.device("cpu")
    machine(cuda=False, mps=False)
    assert resolve_device("auto") == torch.device("cpu")
    machine(cuda=True, mps=True)
    assert resolve_device("auto") == torch.device("cuda")


def test_devices_this_machine_lacks_or_that_do_not_exist_are_one_clear_error(machine):
    machine(cuda=False, mps=False)
    with pytest.raises(DcganError, match="MPS is not available here") as caught:
        resolve_device("mps")
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    with pytest.raises(DcganError, match="no CUDA device"):
        resolve_device("cuda:0")
    with pytest.raises(DcganError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    with pytest.raises(DcganError, match="unsupported device 'meta'"):
        resolve_device("meta")


def test_the_real_machine_resolves_auto_to_what_it_has():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_what_mps_cannot_run_falls_back_with_one_note():
    assert training_precision_for("mps", "bf16") == (
        "fp32",
        "MPS: bf16 training is not supported here; training in fp32",
    )
    assert training_precision_for("mps", "fp16")[0] == "fp32"
    assert training_precision_for("mps", "fp32") == ("fp32", "")
    assert training_precision_for("cuda", "bf16") == ("bf16", "")
    assert inference_precision_for("mps", "bf16")[0] == "fp16" and "fp16" in inference_precision_for("mps", "bf16")[1]
    assert inference_precision_for("mps", "fp16") == ("fp16", "")
    assert inference_precision_for("cuda", "bf16") == ("bf16", "")
    assert compile_for("mps", True)[0] is False and compile_for("mps", True)[1].startswith("MPS:")
    assert compile_for("cuda", True) == (True, "")
    assert compile_for("mps", False) == (False, "")
    assert cuda_graphs_for("mps", True)[0] is False and "CUDA-only" in cuda_graphs_for("mps", True)[1]
    assert cuda_graphs_for("cuda", True) == (True, "")
    assert cuda_graphs_for("cpu", True) == (False, "")  # nothing to say: the CPU never had them
    assert processes_device_for("mps", 2)[0] == "cpu" and processes_device_for("mps", 1) == ("mps", "")
    for message in (training_precision_for("mps", "bf16")[1], compile_for("mps", True)[1]):
        assert "\n" not in message and len(message) < 100


def test_a_training_session_on_mps_drops_half_precision_and_compile(capsys):
    from dcgan_cli.training.config import TrainConfig
    from dcgan_cli.training.step import session_settings

    cfg = TrainConfig(dataset="digits", precision="bf16", compile=True)
    assert session_settings(torch.device("mps"), cfg) == ("fp32", False)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(notes) == 2 and all(line.startswith("MPS:") for line in notes)
    assert session_settings(torch.device("cpu"), cfg) == ("bf16", True)  # the CPU runs both: unchanged
    assert capsys.readouterr().err == ""


def test_several_processes_on_mps_train_on_the_cpu(capsys):
    from dcgan_cli.training.distributed import DistContext, device_for

    assert device_for(DistContext(rank=0, world_size=2), torch.device("mps")) == torch.device("cpu")
    assert "train on the CPU" in capsys.readouterr().err
    assert device_for(DistContext(), torch.device("mps")) == torch.device("mps")  # one process keeps the GPU


def test_cpu_threads_without_sched_getaffinity(monkeypatch):
    """macOS and Windows have no os.sched_getaffinity: the CPU count stands in (train --nproc uses it)."""
    monkeypatch.delattr(devices.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 6)
    assert cpu_threads() == 6
    monkeypatch.setattr(devices.os, "cpu_count", lambda: None)
    assert cpu_threads() == 1


def test_train_command_has_no_linux_only_calls():
    """The multi-process launch shares the CPUs out through cpu_threads, which works off Linux."""
    import ast
    from pathlib import Path

    import dcgan_cli.commands.train as train

    tree = ast.parse(Path(train.__file__).read_text())
    calls = {
        node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    assert "sched_getaffinity" not in calls


def test_the_torch_engine_describes_mps_and_refuses_half_precision_on_the_cpu(trained_run):
    from dcgan_cli.engines.torch_engine import TorchEngine

    with pytest.raises(DcganError, match="on a GPU only"):
        TorchEngine(trained_run, device="cpu", precision="fp16")
    engine = TorchEngine(trained_run, device="cpu")
    assert engine.use_graphs is False and engine.precision == "fp32"
    fake = SimpleNamespace(device=torch.device("mps"), precision="fp16", use_graphs=False)
    assert TorchEngine.describe(fake) == "torch (Apple GPU (MPS), fp16, channels-last)"
