"""Lower-precision generation: the int8 export (rewritten, quantized, checked), bf16 on the CPU, auto's choice."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.model import DCGANConfig, build_models
from dcgan_cli.core.networks import load_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines import export as export_module
from dcgan_cli.engines.export import export_generator, record_export
from dcgan_cli.engines.int8 import ConvFreeGenerator
from dcgan_cli.engines.onnx_files import onnx_path, read_generator_onnx
from dcgan_cli.engines.selection import select_engine
from dcgan_cli.engines.torch_engine import TorchEngine, cpu_has_bf16
from dcgan_cli.training.step import standing_generator

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "digits-run"
ort = pytest.importorskip("onnxruntime", reason="the int8 export is quantized and run by ONNX Runtime")


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory):
    """The trained digits fixture (32x32x1) with its fp32 and int8 exports."""
    run = tmp_path_factory.mktemp("int8") / "digits-run"
    shutil.copytree(FIXTURE_RUN, run)
    results = [export_generator(run, "fp32"), export_generator(run, "int8")]
    record_export(run, results)
    return run, results


@pytest.mark.parametrize("size, channels", [(32, 1), (64, 3)])
def test_the_rewritten_generator_computes_what_the_generator_computes(size, channels):
    netG, _ = build_models(DCGANConfig(size=size, channels=channels), seed=3)
    netG = standing_generator(netG, seed=3, batch_size=32)
    rewritten = ConvFreeGenerator(netG)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in rewritten.modules())
    z = seeded_z(4, 8, netG.config.nz, netG.config.prior)
    with torch.no_grad():
        expected, got = netG(z), rewritten(z)
    assert got.shape == expected.shape == (8, channels, size, size)
    assert (got - expected).abs().max() < 1e-5


def test_the_int8_export_is_quantized_runs_int8_convolutions_and_states_its_accuracy(int8_run, tmp_path):
    run, (_, result) = int8_run
    info = read_generator_onnx(onnx_path(run, "int8"))
    assert info.precision == "int8" and result.path == onnx_path(run, "int8")
    q = result.parity
    assert q.passed and q.samples == 256
    assert 1e-3 < q.max_abs_diff <= 0.25 and 1e-4 < q.mean_abs_diff <= 0.02  # quantized, and close
    assert q.quality["export"]["thumb_fd"] <= 1.25 * q.quality["fp32"]["thumb_fd"]
    assert abs(q.quality["export"]["diversity"] - q.quality["fp32"]["diversity"]) <= 0.05
    # What ONNX Runtime runs: int8 convolutions, and no float convolution anywhere.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(info.path), options, providers=["CPUExecutionProvider"])
    import onnx

    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    layers = len(load_generator(run).blocks)  # projection (a Gemm), upsamplings (4 convs each), image layer (1)
    assert ops.count("QLinearConv") == 4 * (layers - 1) + 1 and "QGemm" in ops
    assert "Conv" not in ops and "ConvTranspose" not in ops
    record = json.loads((run / "exports" / "export.json").read_text())
    int8 = next(m for m in record["models"] if m["precision"] == "int8")
    assert int8["parity"]["passed"] and int8["parity"]["mean_abs_diff"] == q.mean_abs_diff


def test_an_int8_export_that_fails_its_check_is_not_kept(int8_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    monkeypatch.setitem(export_module.MEAN_TOLERANCES, "int8", 1e-6)
    with pytest.raises(DcganError, match="differs from PyTorch"):
        export_generator(run, "int8")
    assert not onnx_path(run, "int8").exists()


def test_auto_takes_int8_only_when_asked_and_int8_samples_match_fp32(int8_run, cli, tmp_path, monkeypatch):
    run, _ = int8_run
    monkeypatch.chdir(tmp_path)
    choice = select_engine("auto", run, precision="int8", device="cpu")
    assert choice.engine.NAME == "onnxruntime"
    # The default precision is fp32, whatever faster exports the run has.
    assert select_engine("auto", run, precision="fp32", device="cpu").engine.NAME == "onnxruntime"
    result = cli(["sample", "-r", run, "-n", 64, "--out", "int8.npz", "--precision", "int8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = cli(["sample", "-r", run, "-n", 64, "--out", "fp32.npz", "--device", "cpu", "--engine", "torch"])
    assert result.exit_code == 0, result.output
    import numpy as np

    int8, fp32 = (np.load(f"{p}.npz")["images"].astype(int) for p in ("int8", "fp32"))
    assert 0 < np.abs(int8 - fp32).mean() <= 2.5  # grey levels: the mean error stays under a few


def test_asking_for_int8_without_the_export_says_how_to_make_it(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    with pytest.raises(DcganError, match=r"dcgan export -r .* --precision int8"):
        select_engine("auto", run, precision="int8", device="cpu")


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 dot products (AVX512-BF16 or AMX)")
def test_the_torch_engine_runs_bf16_on_a_cpu_that_has_it():
    netG = load_generator(FIXTURE_RUN)
    z = seeded_z(2, 32, 100, "normal")
    with torch.no_grad():
        expected = netG(z)
    with TorchEngine(FIXTURE_RUN, device="cpu", precision="bf16") as engine:
        got = engine.generate(z)
        assert "bf16" in engine.describe()
    assert got.dtype == torch.float32 and 0 < (got - expected).abs().max() <= 6e-2
