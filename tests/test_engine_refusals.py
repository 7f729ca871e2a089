"""Every way an engine refuses to run says what is wrong and what to do, in one line.

A sweep over the refusal paths of the three engines (torch; ONNX Runtime; TensorRT, on
tests/fake_tensorrt.py where TensorRT itself is not installed): `Engine.ready` reasons,
errors from choosing, opening, building and running an engine. Each message must be one
non-empty line naming what it is about and pointing at a fix (a command, an option, an
install). An empty message once reached users as a bare "Error:" line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from dcgan_cli import plugins
from dcgan_cli.core.errors import DcganError, ExitCode
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.base import Engine, engine_class
from dcgan_cli.engines.export import export_generator
from dcgan_cli.engines.onnx_files import BuildRequest, onnx_path
from dcgan_cli.engines.selection import select_engine
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "digits-run"
TENSORRT_SOURCE = ROOT / "engines" / "tensorrt"
MACHINE = ("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0")  # the fake's TensorRT and GPU
# What a message offers as a way out: a command, an option, an install or a rebuild.
REMEDIES = ("`dcgan ", "pip install", "--engine", "--device", "--precision", "--rebuild", "use ", "pass ", "report it")

if importlib.util.find_spec("dcgan_tensorrt") is None:  # installed only where NVIDIA's driver is
    sys.path.insert(0, str(TENSORRT_SOURCE))
import dcgan_tensorrt as dt  # noqa: E402

HAVE_ORT = importlib.util.find_spec("dcgan_onnxruntime") is not None
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="the onnxruntime engine is not installed here")


def load_fake_tensorrt():
    spec = importlib.util.spec_from_file_location("tensorrt", TENSORRT_SOURCE / "tests" / "fake_tensorrt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("refusals") / "digits-run"
    shutil.copytree(FIXTURE, run)
    export_generator(run, "fp32", verify=False)
    return run


@pytest.fixture
def run(exported, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "digits-run"
    shutil.copytree(exported, copy)
    return copy


@pytest.fixture
def trt_registered(registered):
    """The TensorRT engine among the registered engines (it is installed only where NVIDIA's driver is)."""
    if plugins.get_plugin_manager().get_plugin("tensorrt") is None:
        registered(dt, "tensorrt")


@pytest.fixture
def trt(run, monkeypatch):
    """The fake tensorrt module and a CPU stand-in for CUDA; an fp32 engine built for batches 1..8."""
    fake = load_fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(dt, "CUDA", fake.CpuDevices(MACHINE))
    dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=8, max_batch=8))
    return fake


def refusal(action) -> str:
    """The message of ``action``: the reason of a (False, reason) it returns, or of the DcganError it raises."""
    try:
        outcome = action()
    except DcganError as exc:
        return str(exc)
    assert isinstance(outcome, tuple) and outcome[0] is False, f"expected a refusal, got {outcome!r}"
    return outcome[1]


def assert_clear(message: str, *phrases: str) -> None:
    assert message.strip(), "an empty message"
    assert "\n" not in message, f"more than one line: {message!r}"
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    assert any(r in message for r in REMEDIES), f"no way out offered: {message!r}"


def edit_record(run: Path, **changes) -> None:
    path = dt.engine_paths(run, "fp32")[1]
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def replace_engine(run: Path, data: bytes) -> None:
    dt.engine_paths(run, "fp32")[0].write_bytes(data)
    edit_record(run, engine_sha256=hashlib.sha256(data).hexdigest())


def cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


# ---------------------------------------------------------------------------- torch and choosing


def test_torch_engine_refusals(run):
    assert_clear(
        refusal(lambda: TorchEngine(run, device="cpu", precision="fp16")),
        "runs fp16 on a GPU only",
    )
    (run / "generator.safetensors").unlink()
    assert_clear(refusal(lambda: TorchEngine(run, device="cpu")), "has no generator.safetensors")


def test_choosing_refusals(run):
    assert_clear(refusal(lambda: select_engine("torch", run, precision="fp8")), "unknown precision 'fp8'")
    assert_clear(refusal(lambda: engine_class("warp-drive")), "unknown engine 'warp-drive'", "torch")
    if plugins.get_plugin_manager().get_plugin("tensorrt") is None:  # not installed: say how to install it
        assert_clear(refusal(lambda: engine_class("tensorrt")), "engine 'tensorrt' is not installed")


def test_a_plugin_engine_that_refuses_without_a_reason_gets_one(run, registered):
    class Silent(TorchEngine):
        NAME = "silent"
        AUTO_PRIORITY = 99

        @classmethod
        def ready(cls, run_dir, precision="fp32", device="auto"):
            return False, ""

    class Plugin:
        @hookimpl
        def dcgan_register_engines(self, register):
            register(Silent)

    registered(Plugin(), "silent-engine-plugin")
    message = refusal(lambda: select_engine("silent", run, device="cpu"))
    assert_clear(message, "engine 'silent' is not ready", "gave no reason")
    choice = select_engine("auto", run, device="cpu")
    assert choice.engine is not Silent and "gave no reason" in choice.notes()[0]


# ---------------------------------------------------------------------------- onnxruntime


@needs_ort
def test_onnxruntime_refusals(run, tmp_path):
    from dcgan_onnxruntime import OnnxRuntimeEngine

    bare = tmp_path / "bare"
    shutil.copytree(FIXTURE, bare)
    assert_clear(refusal(lambda: OnnxRuntimeEngine.ready(bare)), "has no exports/generator.onnx", "`dcgan export")
    assert_clear(refusal(lambda: OnnxRuntimeEngine(bare, device="cpu")), "has no exports/generator.onnx")
    assert_clear(refusal(lambda: OnnxRuntimeEngine.ready(bare, "fp16")), "generator-fp16.onnx", "--precision fp16")
    assert_clear(
        refusal(lambda: select_engine("onnxruntime", run, precision="bf16")),
        "runs fp32, fp16, int8; got --precision bf16",
    )
    not_a_generator = tmp_path / "identity.onnx"
    shutil.copy(FIXTURE / "config.json", not_a_generator)
    assert_clear(
        refusal(lambda: OnnxRuntimeEngine(run, device="cpu", model=not_a_generator)), "is not a readable ONNX file"
    )

    stale = tmp_path / "stale"
    shutil.copytree(run, stale)
    generator = stale / "generator.safetensors"
    generator.write_bytes(generator.read_bytes() + b" ")  # other weights than the export's
    for action in (lambda: OnnxRuntimeEngine.ready(stale), lambda: OnnxRuntimeEngine(stale, device="cpu")):
        assert_clear(refusal(action), "was exported from other weights than", "--force")

    cut(onnx_path(run))
    for action in (
        lambda: OnnxRuntimeEngine.ready(run),
        lambda: OnnxRuntimeEngine(run, device="cpu"),
        lambda: select_engine("onnxruntime", run, device="cpu"),
    ):
        assert_clear(refusal(action), "generator.onnx is not a readable ONNX file")


# ---------------------------------------------------------------------------- tensorrt


def test_tensorrt_without_tensorrt_or_cuda_says_what_is_missing():
    if importlib.util.find_spec("tensorrt") is None:
        assert_clear(dt.TensorRTEngine.is_available()[1], "TensorRT is not installed")
    if not torch.cuda.is_available():
        assert_clear(dt.CudaDevices().missing(), "no CUDA device")


@pytest.mark.parametrize(
    "damage, phrases",
    [
        (lambda run: dt.engine_paths(run, "fp32")[0].unlink(), ["has no TensorRT engine generator-fp32.engine"]),
        (lambda run: dt.engine_paths(run, "fp32")[1].unlink(), ["has no record generator-fp32.engine.json"]),
        (lambda run: dt.engine_paths(run, "fp32")[1].write_text("[1, 2"), ["is not valid JSON"]),
        (lambda run: dt.engine_paths(run, "fp32")[1].write_text("[]"), ["is not a TensorRT engine record"]),
        (lambda run: edit_record(run, gpu="H100"), ["its record has no 'gpu' object"]),
        (lambda run: edit_record(run, gpu={"name": "NVIDIA L4", "compute_capability": "8.9"}), ["built for NVIDIA L4"]),
        (lambda run: edit_record(run, tensorrt="10.0.1"), ["built with TensorRT 10.0.1, this machine has 10.9.0.34"]),
        (lambda run: cut(dt.engine_paths(run, "fp32")[0]), ["does not match its record"]),
        (lambda run: onnx_path(run).unlink(), ["generator.onnx is gone"]),
        (lambda run: cut(onnx_path(run)), ["generator.onnx is not a readable ONNX file"]),
        (lambda run: replace_engine(run, b"a plan of another TensorRT"), ["TensorRT could not deserialize it"]),
    ],
    ids=[
        "no-engine",
        "no-record",
        "record-not-json",
        "record-not-object",
        "record-malformed",
        "another-gpu",
        "another-tensorrt",
        "damaged-engine",
        "onnx-gone",
        "onnx-damaged",
        "plan-unreadable",
    ],
)
def test_tensorrt_refuses_what_it_cannot_load(run, trt, trt_registered, damage, phrases):
    damage(run)
    messages = [refusal(lambda: dt.TensorRTEngine(run, precision="fp32"))]
    if "deserialize" not in phrases[0]:  # only loading the plan finds that out
        messages.append(refusal(lambda: dt.TensorRTEngine.ready(run, "fp32")))
        messages.append(refusal(lambda: select_engine("tensorrt", run)))
    for message in messages:
        assert_clear(message, *phrases)


def test_tensorrt_refuses_other_devices_requests_and_failures(run, trt):
    assert_clear(refusal(lambda: dt.TensorRTEngine(run, device="cpu")), "runs on CUDA devices only, not 'cpu'")
    assert_clear(refusal(lambda: dt.TensorRTEngine(run, precision="fp16")), "has no TensorRT engine generator-fp16")
    assert_clear(
        refusal(lambda: dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=64, max_batch=8))),
        "--opt-batch 64 is larger than --max-batch 8",
    )
    assert_clear(
        refusal(lambda: dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=4, max_batch=8))),
        "its batch profile is opt 8, max 8; asked for opt 4, max 8",
        "--rebuild",
    )
    with dt.TensorRTEngine(run) as engine:
        assert_clear(refusal(lambda: engine.generate(torch.zeros(3, 50))), "refused a batch of 3 z of length 50")
        trt.fail_execute = True
        assert_clear(refusal(lambda: engine.generate(seeded_z(0, 3, 100, "normal"))), "TensorRT failed to run")
    trt.fail_execute, trt.fail_build = False, True
    assert_clear(
        refusal(lambda: dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=8, max_batch=8, rebuild=True))),
        "TensorRT could not build an engine",
    )


def test_a_refusal_reaches_the_command_line_as_one_error_line(run, trt, trt_registered, cli):
    """The bug this sweep began with: an engine file whose record is missing gave `Error: ` and nothing."""
    dt.engine_paths(run, "fp32")[1].unlink()
    result = cli(["sample", "-r", run, "-n", "2", "--engine", "tensorrt", "--out", run.parent / "g.png"])
    assert result.exit_code == ExitCode.BAD_INPUT and "Traceback" not in result.output
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("Error:")]
    assert_clear(line, "has no record generator-fp32.engine.json")


def test_engine_base_class_refusals(run):
    class FP32Only(Engine):
        NAME = "fp32-only"

        def generate(self, z):
            return z

    assert_clear(
        refusal(lambda: FP32Only(run, precision="fp16")), "the fp32-only engine runs fp32; got --precision fp16", "use "
    )
