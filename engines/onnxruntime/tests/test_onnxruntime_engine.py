"""Real ONNX Runtime sessions on an exported copy of the committed digits fixture run."""

import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest
import torch

import dcgan_onnxruntime
from dcgan_cli import load_generator
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.base import get_engines
from dcgan_cli.engines.export import export_generator
from dcgan_cli.engines.onnx_files import TOLERANCES, onnx_path
from dcgan_cli.engines.selection import select_engine
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_onnxruntime import OnnxRuntimeEngine, providers_for

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "digits-run"


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    """The fixture run (32x32 digits, ngf 32) with exports/generator.onnx and generator-fp16.onnx."""
    run = tmp_path_factory.mktemp("ort") / "digits-run"
    shutil.copytree(FIXTURE, run)
    export_generator(run, "fp32")
    export_generator(run, "fp16")
    return run


def test_the_engine_is_found_through_its_installed_entry_point(cli):
    points = [ep for ep in importlib.metadata.entry_points(group="dcgan") if ep.name == "onnxruntime"]
    assert [ep.dist.name for ep in points] == ["dcgan-onnxruntime"]
    assert get_engines()["onnxruntime"] is OnnxRuntimeEngine
    result = cli(["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["onnxruntime"]["distribution"] == "dcgan-onnxruntime"
    assert rows["onnxruntime"]["hooks"] == ["dcgan_register_engines"] and not rows["onnxruntime"]["builtin"]


@pytest.mark.parametrize("batch", [1, 3, 64, 100])
def test_every_batch_size_matches_pytorch_within_fp32_tolerance(exported_run, batch):
    netG = load_generator(exported_run)
    z = seeded_z(7, batch, 100, "normal")
    with torch.inference_mode():
        expected = netG(z)
    with OnnxRuntimeEngine(exported_run, device="cpu") as engine:
        images = engine.generate(z)
    assert images.shape == (batch, 1, 32, 32) and images.dtype == torch.float32
    assert (images - expected).abs().max() <= TOLERANCES["fp32"]


def test_throughput_streams_and_a_single_session_give_the_same_images(exported_run):
    z = seeded_z(1, 70, 100, "normal")  # slices of 32, 32 and 6 across two workers
    with (
        OnnxRuntimeEngine(exported_run, device="cpu", threads=2) as streamed,
        OnnxRuntimeEngine(exported_run, device="cpu", threads=1) as single,
    ):
        assert streamed.streams is not None and single.streams is None
        assert "CPUExecutionProvider" in streamed.describe() and "2 streams" in streamed.describe()
        assert torch.equal(streamed.generate(z), single.generate(z))


def test_fp16_model_matches_pytorch_within_its_tolerance(exported_run):
    z = seeded_z(3, 16, 100, "normal")
    with torch.inference_mode():
        expected = load_generator(exported_run)(z)
    with OnnxRuntimeEngine(exported_run, device="cpu", precision="fp16") as engine:
        assert engine.path == onnx_path(exported_run, "fp16")
        diff = (engine.generate(z) - expected).abs().max()
    assert 0 < diff <= TOLERANCES["fp16"]  # half weights differ a little, never by a grey level


def test_onnxruntime_and_torch_engines_draw_the_same_images_for_a_seed(exported_run):
    z = seeded_z(11, 8, 100, "normal")
    with (
        OnnxRuntimeEngine(exported_run, device="cpu") as ort_engine,
        TorchEngine(exported_run, device="cpu") as torch_engine,
    ):
        assert (ort_engine.generate(z) - torch_engine.generate(z)).abs().max() <= TOLERANCES["fp32"]


def test_auto_prefers_onnxruntime_once_exported_and_says_why(exported_run, tmp_path):
    choice = select_engine("auto", exported_run, device="cpu", batch_size=1)
    assert choice.engine is OnnxRuntimeEngine and "bench" in choice.reason
    bare = tmp_path / "bare"
    shutil.copytree(FIXTURE, bare)
    choice = select_engine("auto", bare, device="cpu")
    assert choice.engine is TorchEngine
    assert "onnxruntime" in choice.hint and "dcgan export" in choice.hint
    with pytest.raises(DcganError, match="dcgan export"):
        select_engine("onnxruntime", bare)


def test_a_file_that_is_not_a_generator_is_refused(exported_run, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 100])
    y = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["image"])], "g", [x], [y])
    path = tmp_path / "classifier.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(DcganError, match="is not a dcgan generator.*expected one input 'z'"):
        OnnxRuntimeEngine(exported_run, device="cpu", model=path)


def test_cpu_sessions_use_the_cpu_provider_and_throughput_options():
    assert providers_for(torch.device("cpu"), 100, "fp32", Path("unused")) == ["CPUExecutionProvider"]
    options = dcgan_onnxruntime.session_options(3)
    import onnxruntime as ort

    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (none here): I/O binding runs on CUDA only"
)
def test_cuda_io_binding_matches_the_cpu_session(exported_run):
    z = seeded_z(5, 64, 100, "normal")
    with OnnxRuntimeEngine(exported_run, device="cuda") as gpu, OnnxRuntimeEngine(exported_run, device="cpu") as cpu:
        assert gpu.on_cuda, gpu.describe()
        assert (gpu.generate(z) - cpu.generate(z)).abs().max() <= TOLERANCES["fp32"]
