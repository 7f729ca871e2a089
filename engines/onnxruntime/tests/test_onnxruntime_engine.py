"""Real ONNX Runtime sessions on an exported copy of the committed digits fixture run."""

import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest
import torch

import dcgan_onnxruntime
from dcgan_cli import load_generator
from dcgan_cli.api import ExitCode
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


# ---------------------------------------------------------------------------- --engine auto and readiness


def assert_auto_passes_over_onnxruntime(cli, run: Path, why: str) -> None:
    """auto takes the torch engine and says, in one line, why not onnxruntime; `dcgan sample`
    draws with it; named explicitly, onnxruntime is refused with the same reason (exit 2)."""
    choice = select_engine("auto", run, device="cpu", batch_size=16)
    assert choice.engine is TorchEngine
    assert [name for name, _ in choice.passed_over] == ["onnxruntime"]
    assert why in choice.passed_over[0][1] and "\n" not in choice.passed_over[0][1]
    with pytest.raises(DcganError, match=f"engine 'onnxruntime' is not ready for {run}: .*{why}"):
        select_engine("onnxruntime", run, device="cpu")
    out = run.parent / f"{run.name}-grid.png"
    result = cli(["sample", "-r", run, "-n", "4", "--device", "cpu", "--out", out])
    assert result.exit_code == 0, result.output
    assert "Engine torch:" in result.stderr
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("Skipped the onnxruntime engine")]
    assert why in line and out.is_file()
    refused = cli(
        [
            "sample",
            "-r",
            run,
            "-n",
            "4",
            "--device",
            "cpu",
            "--engine",
            "onnxruntime",
            "--out",
            out.with_suffix(".x.png"),
        ]
    )
    assert refused.exit_code == ExitCode.BAD_INPUT and why in refused.stderr and "Traceback" not in refused.output
    assert not out.with_suffix(".x.png").exists()


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), "is not a readable ONNX file"),
        (lambda path: path.write_bytes(b"\x00garbage" * 100), "is not a readable ONNX file"),
        (lambda path: path.write_bytes(b""), "is not"),
    ],
    ids=["cut-in-half", "garbage", "empty"],
)
def test_auto_passes_over_a_corrupt_export(exported_run, tmp_path, cli, damage, why):
    run = tmp_path / "digits-run"
    shutil.copytree(exported_run, run)
    damage(onnx_path(run, "fp32"))
    assert_auto_passes_over_onnxruntime(cli, run, why)


def test_auto_passes_over_an_export_made_before_training_went_on(tmp_path, cli):
    """A real run: trained 2 steps, exported, then `dcgan train --resume` to step 4. The export
    holds the step-2 weights: auto must not draw with them. Exporting again makes it current."""
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.training.config import TrainConfig, create_run
    from dcgan_cli.training.trainer import Trainer

    run = tmp_path / "runs" / "growing"
    cfg = TrainConfig(dataset="digits", epochs=1, max_steps=2, batch_size=64, device="cpu")
    create_run(run, DCGANConfig(size=32, channels=1, ngf=8, ndf=8), cfg, {"name": "digits"})
    Trainer(run).run()
    assert cli(["export", "-r", run]).exit_code == 0
    assert select_engine("auto", run, device="cpu").engine is OnnxRuntimeEngine

    result = cli(["train", "--resume", run, "--max-steps", "4"])
    assert result.exit_code == 0, result.output
    assert_auto_passes_over_onnxruntime(cli, run, "was exported from other weights than")
    assert "training went on since?" in select_engine("auto", run, device="cpu").passed_over[0][1]

    assert cli(["export", "-r", run, "--force"]).exit_code == 0  # as the line said: from the current weights
    choice = select_engine("auto", run, device="cpu")
    assert choice.engine is OnnxRuntimeEngine and choice.passed_over == []


def test_an_export_of_another_precision_or_without_its_weights_record_is_not_ready(exported_run, tmp_path):
    import onnx

    run = tmp_path / "digits-run"
    shutil.copytree(exported_run, run)
    shutil.copy(onnx_path(run, "fp16"), onnx_path(run, "fp32"))  # an fp16 model where the fp32 one belongs
    ok, reason = OnnxRuntimeEngine.ready(run, "fp32")
    assert not ok and "holds a fp16 model, not fp32" in reason and "dcgan export" in reason
    model = onnx.load(str(onnx_path(run, "fp16")))
    kept = [p for p in model.metadata_props if p.key != "generator_sha256"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(onnx_path(run, "fp16")))
    ok, reason = OnnxRuntimeEngine.ready(run, "fp16")
    assert not ok and "does not record the weights it was exported from" in reason
    assert f"dcgan export -r {run} --precision fp16 --force" in reason
