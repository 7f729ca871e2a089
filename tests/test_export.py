import importlib.util
import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from dcgan_cli.core.errors import DcganError, ExitCode
from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.core.networks import load_generator, save_generator
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.engines.export import export_generator
from dcgan_cli.engines.onnx_files import (
    TOLERANCES,
    BuildRequest,
    onnx_path,
    read_generator_onnx,
)

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("dcgan_onnxruntime") is None,
    reason="the dcgan-onnxruntime engine is not installed (python scripts/install.py installs it)",
)


@needs_ort
def test_export_writes_a_verified_onnx_keeps_it_when_up_to_date_and_refuses_stale_ones(cli, trained_run):
    result = cli(["export"])
    assert result.exit_code == 0, result.output
    assert "max |ONNX - PyTorch|" in result.stdout and ": ok" in result.stdout
    path = trained_run / "exports" / "generator.onnx"
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (z,), (image,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert z.name == "z" and image.name == "image"
    assert dims(z)[1:] == [100] and dims(image)[1:] == [1, 32, 32]
    assert isinstance(dims(z)[0], str) and dims(z)[0] == dims(image)[0]  # one dynamic batch axis
    meta = {p.key: p.value for p in model.metadata_props}
    assert {k: meta[k] for k in ("nz", "prior", "size", "channels", "run_id")} == {
        "nz": "100",
        "prior": "normal",
        "size": "32",
        "channels": "1",
        "run_id": "digits-small",
    }
    assert meta["dcgan_cli_version"] and meta["precision"] == "fp32"
    # eval-mode BatchNorm is folded into the transposed convolutions: no training-mode statistics left
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}

    record = json.loads((trained_run / "exports" / "export.json").read_text())
    (entry,) = record["models"]
    assert entry["parity"]["passed"] and entry["parity"]["max_abs_diff"] <= 1e-4
    assert entry["parity"]["runtime"].startswith("onnxruntime")

    again = cli(["export"])
    assert again.exit_code == 0 and "kept" in again.stdout

    # An export of other weights is never replaced silently.
    netG = load_generator(trained_run)
    with torch.no_grad():
        netG.to_image.conv.weight.mul_(1.5)  # "training went on"
    save_generator(trained_run, netG.state_dict(), netG.config, {"step": 1})
    before = (trained_run / "exports" / "generator.onnx").read_bytes()
    refused = cli(["export"])
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert "pass --force" in refused.stderr and "Traceback" not in refused.output
    assert (trained_run / "exports" / "generator.onnx").read_bytes() == before
    # the ONNX Runtime engine also refuses the stale file rather than draw other images
    stale = cli(["sample", "-n", "2", "--engine", "onnxruntime", "--out", "x.png"])
    assert stale.exit_code == ExitCode.BAD_INPUT and "other weights" in stale.stderr
    assert cli(["export", "--force"]).exit_code == 0
    assert (trained_run / "exports" / "generator.onnx").read_bytes() != before


def test_exporting_a_run_without_a_generator_says_so(cli, trained_run):
    RunPaths(trained_run).generator.unlink()
    result = cli(["export"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "has no generator.safetensors" in result.stderr and "dcgan train" in result.stderr
    assert not (trained_run / "exports" / "generator.onnx").exists()


def _onnx_file(path, inputs, outputs, nodes):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize(
    "name, z_shape, out_name, out_shape, message",
    [
        ("x", [None, 100], "image", [None, 1, 32, 32], "expected one input 'z'"),
        ("z", [None, 100, 1], "image", [None, 1, 32, 32], "input 'z' has shape"),
        ("z", [None, 100], "logits", [None, 1, 32, 32], "expected one output 'image'"),
        ("z", [None, 100], "image", [None, 10], "output 'image' has shape"),
    ],
)
def test_an_onnx_file_that_is_not_a_generator_is_refused(tmp_path, name, z_shape, out_name, out_shape, message):
    z = helper.make_tensor_value_info(name, TensorProto.FLOAT, z_shape)
    out = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)
    path = _onnx_file(tmp_path / "model.onnx", [z], [out], [helper.make_node("Identity", [name], [out_name])])
    with pytest.raises(DcganError, match="is not a dcgan generator") as err:
        read_generator_onnx(path)
    assert message in str(err.value)


def test_a_generator_of_another_model_and_a_damaged_file_are_refused(tmp_path):
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 64])
    out = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])
    path = _onnx_file(tmp_path / "model.onnx", [z], [out], [helper.make_node("Identity", ["z"], ["image"])])
    info = read_generator_onnx(path)
    assert (info.nz, info.channels, info.size) == (64, 3, 64)
    with pytest.raises(DcganError, match="exported from another model"):
        read_generator_onnx(path, DCGANConfig(size=32, channels=1, nz=100))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage that is not protobuf" * 3)
    with pytest.raises(DcganError, match="not a readable ONNX file|is not a dcgan generator"):
        read_generator_onnx(broken)


@needs_ort
def test_fp16_export_writes_a_half_model_within_its_tolerance(trained_run):
    result = export_generator(trained_run, "fp16")
    assert result.path == onnx_path(trained_run, "fp16") and result.path.name == "generator-fp16.onnx"
    assert result.parity.passed and result.parity.tolerance == TOLERANCES["fp16"]
    model = onnx.load(str(result.path))
    weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == TensorProto.FLOAT16 for w in weights)
    # float32 in and out like every engine, half inside
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_bf16_export_is_checked_by_the_onnx_reference_runtime(trained_run):
    result = export_generator(trained_run, "bf16")
    assert result.opset >= 22  # ONNX's ConvTranspose takes bfloat16 from opset 22
    assert result.parity.runtime.startswith("onnx.reference")
    assert 0 < result.parity.max_abs_diff <= TOLERANCES["bf16"]


def test_bf16_without_trt_and_bad_batch_profiles_are_refused(cli, trained_run):
    result = cli(["export", "--precision", "bf16"])
    assert result.exit_code == ExitCode.BAD_INPUT and "add --trt" in result.stderr
    with pytest.raises(DcganError, match="larger than --max-batch"):
        BuildRequest("fp16", opt_batch=512, max_batch=256).validate()
    result = cli(["export", "--trt", "--opt-batch", "0"])
    assert result.exit_code == ExitCode.BAD_INPUT and "at least 1" in result.stderr


@pytest.mark.skipif(
    torch.cuda.is_available() and importlib.util.find_spec("tensorrt") is not None,
    reason="TensorRT and CUDA are present: --trt builds instead of refusing",
)
def test_trt_without_tensorrt_says_what_is_missing_and_how_to_install(cli, trained_run):
    result = cli(["export", "--trt"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "TensorRT" in result.stderr and "pip install" in result.stderr
    assert "Traceback" not in result.output
    assert not (trained_run / "exports" / "generator.onnx").exists()  # refused before any work
