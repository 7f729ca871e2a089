"""TensorRT engine: records, cache keys and refusals everywhere; building and running where TensorRT and CUDA are."""

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

import dcgan_tensorrt as dt
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.export import export_generator
from dcgan_cli.engines.onnx_files import BuildRequest, onnx_path

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "digits-run"
HAVE_TRT_AND_CUDA = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
needs_trt = pytest.mark.skipif(
    not HAVE_TRT_AND_CUDA, reason="needs TensorRT and a CUDA device; this machine has neither"
)
MACHINE = ("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture
def run_with_fake_engine(exported_run, tmp_path):
    """A copy of the exported fixture run with an engine file whose record says it was built
    on MACHINE (the bytes are not a real engine: only the checks read them)."""
    run = tmp_path / "digits-run"
    shutil.copytree(exported_run, run)
    engine_path, record_path = dt.engine_paths(run, "fp32")
    data = b"not really a TensorRT plan"
    engine_path.write_bytes(data)
    record = dt.engine_metadata(
        tensorrt_version=MACHINE[0],
        gpu_name=MACHINE[1],
        compute_capability=MACHINE[2],
        precision="fp32",
        opt_batch=256,
        max_batch=1024,
        onnx_file=onnx_path(run, "fp32"),
        onnx_sha256=hashlib.sha256(onnx_path(run, "fp32").read_bytes()).hexdigest(),
        engine_sha256=hashlib.sha256(data).hexdigest(),
        build_seconds=12.5,
        timing_cache=None,
    )
    record_path.write_text(json.dumps(record))
    return run


def test_the_engine_record_holds_what_it_was_built_for(run_with_fake_engine):
    record = json.loads(dt.engine_paths(run_with_fake_engine, "fp32")[1].read_text())
    assert record["tensorrt"] == MACHINE[0]
    assert record["gpu"] == {"name": MACHINE[1], "compute_capability": MACHINE[2]}
    assert record["precision"] == "fp32" and record["batch"] == {"min": 1, "opt": 256, "max": 1024}
    assert record["onnx"]["file"] == "generator.onnx" and len(record["onnx"]["sha256"]) == 64


def test_an_engine_from_this_machine_and_onnx_file_is_accepted(run_with_fake_engine):
    record, data = dt.checked_engine(run_with_fake_engine, "fp32", MACHINE)
    assert data == b"not really a TensorRT plan" and record["gpu"]["name"] == MACHINE[1]


@pytest.mark.parametrize(
    "machine, phrase",
    [
        (("10.13.0", MACHINE[1], MACHINE[2]), "built with TensorRT 10.9.0.34, this machine has 10.13.0"),
        (("10.9.0.34", "NVIDIA A100-SXM4-80GB", "8.0"), "built for NVIDIA H100 80GB HBM3 (compute capability 9.0)"),
    ],
)
def test_an_engine_from_another_machine_is_refused_with_the_rebuild_command(run_with_fake_engine, machine, phrase):
    with pytest.raises(DcganError) as err:
        dt.checked_engine(run_with_fake_engine, "fp32", machine)
    message = str(err.value)
    assert phrase in message
    assert f"dcgan export -r {run_with_fake_engine} --trt --precision fp32 --rebuild" in message


def test_an_engine_built_from_another_onnx_file_or_replaced_is_refused(run_with_fake_engine):
    import onnx

    path = onnx_path(run_with_fake_engine, "fp32")
    model = onnx.load(str(path))
    model.doc_string += " (edited)"  # still a valid generator of the same weights, but another file
    onnx.save(model, str(path))
    with pytest.raises(DcganError, match="another ONNX file than the run's current export"):
        dt.checked_engine(run_with_fake_engine, "fp32", MACHINE)


def test_a_damaged_engine_file_is_refused(run_with_fake_engine):
    dt.engine_paths(run_with_fake_engine, "fp32")[0].write_bytes(b"truncated")
    with pytest.raises(DcganError, match="does not match its record"):
        dt.checked_engine(run_with_fake_engine, "fp32", MACHINE)


def test_a_missing_engine_says_how_to_build_it(run_with_fake_engine):
    with pytest.raises(DcganError, match="dcgan export -r .* --trt --precision fp16"):
        dt.checked_engine(run_with_fake_engine, "fp16", MACHINE)


def test_timing_cache_keys_separate_tensorrt_versions_and_gpus(monkeypatch, tmp_path):
    key = dt.timing_cache_key(*MACHINE)
    assert key == "trt10.9.0.34-sm90-nvidia-h100-80gb-hbm3"
    assert (
        len(
            {
                key,
                dt.timing_cache_key("10.13.0", MACHINE[1], MACHINE[2]),
                dt.timing_cache_key(MACHINE[0], "NVIDIA L4", "8.9"),
            }
        )
        == 3
    )
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path))
    assert dt.timing_cache_path(*MACHINE) == tmp_path / "tensorrt" / f"{key}.timing-cache"
    monkeypatch.delenv("DCGAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dt.cache_root() == tmp_path / "xdg" / "dcgan-cli"


@pytest.mark.skipif(HAVE_TRT_AND_CUDA, reason="TensorRT and CUDA are present here")
def test_without_tensorrt_or_cuda_the_engine_says_what_is_missing(run_with_fake_engine):
    ok, reason = dt.TensorRTEngine.is_available()
    assert not ok
    if importlib.util.find_spec("tensorrt") is None:
        assert "TensorRT is not installed" in reason and "pip install" in reason
    if not torch.cuda.is_available():
        assert "no CUDA device" in reason
    with pytest.raises(DcganError, match="cannot run here"):
        dt.TensorRTEngine(run_with_fake_engine, precision="fp32")
    with pytest.raises(DcganError, match="cannot build a TensorRT engine"):
        dt.TensorRTEngine.build(run_with_fake_engine, BuildRequest("fp16"))


@needs_trt
def test_build_then_run_matches_pytorch_and_a_second_build_keeps_the_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "digits-run"
    shutil.copytree(FIXTURE, run)
    export_generator(run, "fp16")
    record = dt.TensorRTEngine.build(run, BuildRequest("fp16", opt_batch=64, max_batch=128))
    assert record["action"] == "built" and record["batch"] == {"min": 1, "opt": 64, "max": 128}
    assert Path(record["timing_cache"]).is_file()
    assert dt.TensorRTEngine.build(run, BuildRequest("fp16", opt_batch=64, max_batch=128))["action"] == "kept"
    from dcgan_cli import load_generator

    z = seeded_z(0, 300, 100, "normal")  # more than max_batch: split into slices
    with torch.inference_mode():
        expected = load_generator(run)(z)
    with dt.TensorRTEngine(run, precision="fp16") as engine:
        assert (engine.generate(z) - expected).abs().max() <= 1e-2
