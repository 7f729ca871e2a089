"""The TensorRT engine's own control flow, on a machine without TensorRT or a GPU.

tests/fake_tensorrt.py stands in for NVIDIA's module (recording each call; its "engine" runs
the ONNX network it was built from on the CPU, through the addresses the engine binds) and
for the engine's CUDA seam (torch CPU tensors stand in for device memory). What runs is the
real dcgan_tensorrt: building with a profile and a persisted timing cache, keeping or
refusing an existing engine, loading, and generating in slices of the profile's max batch.
Where TensorRT and a GPU are present, test_tensorrt_engine.py runs the real thing.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

import dcgan_tensorrt as dt
from dcgan_cli.api import ExitCode
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.networks import load_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.onnx_files import TOLERANCES, BuildRequest, onnx_path


@pytest.fixture
def run(exported_run, tmp_path, monkeypatch) -> Path:
    """A private copy of the exported fixture run; timing caches under tmp_path."""
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "digits-run"
    shutil.copytree(exported_run, copy)
    return copy


@pytest.fixture
def built(run, fake_trt) -> Path:
    """The run with an fp32 engine built by the fake for batches 1..128 (tuned for 64)."""
    dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=64, max_batch=128))
    fake_trt.calls.clear()
    return run


def test_build_sets_the_profile_and_a_strongly_typed_network_and_records_the_machine(run, fake_trt):
    record = dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=64, max_batch=128))
    assert record["action"] == "built"
    assert fake_trt.names("parse_from_file") == [("parse_from_file", str(onnx_path(run, "fp32")))]
    assert fake_trt.names("create_network") == [
        ("create_network", 1 << fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    ]
    assert fake_trt.names("set_shape") == [("set_shape", "z", (1, 100), (64, 100), (128, 100))]
    assert ("clear_flag", "TF32") in fake_trt.calls  # fp32 engines stay fp32, as the tolerance assumes
    assert ("set_memory_pool_limit", "WORKSPACE", dt.WORKSPACE_BYTES) in fake_trt.calls
    engine_path, record_path = dt.engine_paths(run, "fp32")
    on_disk = json.loads(record_path.read_text())
    assert on_disk["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert on_disk["tensorrt"] == fake_trt.__version__ and on_disk["batch"] == {"min": 1, "opt": 64, "max": 128}
    assert dt.checked_engine(run, "fp32", dt.this_machine())[1] == engine_path.read_bytes()


def test_a_second_build_keeps_the_engine_and_a_rebuild_reuses_the_timing_cache(run, fake_trt):
    request = BuildRequest("fp32", opt_batch=64, max_batch=128)
    first = dt.TensorRTEngine.build(run, request)
    cache = Path(first["timing_cache"])
    assert fake_trt.names("create_timing_cache") == [("create_timing_cache", b"")]  # nothing cached yet
    assert json.loads(cache.read_bytes()) == {"builds": 1}
    assert cache.parent == Path(dt.cache_root()) / "tensorrt" and cache.name.startswith("trt10.9.0.34-sm90-")

    fake_trt.calls.clear()
    assert dt.TensorRTEngine.build(run, request)["action"] == "kept"
    assert fake_trt.names("build_serialized_network") == []

    with pytest.raises(DcganError, match="batch profile is opt 64, max 128; asked for opt 32, max 128"):
        dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=32, max_batch=128))

    fake_trt.calls.clear()
    rebuilt = dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=64, max_batch=128, rebuild=True))
    assert rebuilt["action"] == "built"
    # The rebuild started from what the first build learned, and saved what it added.
    assert fake_trt.names("create_timing_cache") == [("create_timing_cache", b'{"builds": 1}')]
    assert json.loads(cache.read_bytes()) == {"builds": 2}


def test_generate_runs_slices_of_the_max_batch_with_the_device_current(built, fake_trt):
    z = seeded_z(0, 300, 100, "normal")
    with torch.inference_mode():
        expected = load_generator(built)(z)
    with dt.TensorRTEngine(built, precision="fp32") as engine:
        fake_trt.calls.clear()
        images = engine.generate(z)
    assert images.shape == (300, 1, 32, 32) and images.dtype == torch.float32
    assert (images - expected).abs().max() <= TOLERANCES["fp32"]  # the bound addresses held z and got the images
    # 300 = 128 + 128 + 44: each slice with its own input shape, run on the engine's stream.
    assert fake_trt.names("set_input_shape") == [("set_input_shape", "z", (n, 100)) for n in (128, 128, 44)]
    assert fake_trt.names("execute_async_v3") == [("execute_async_v3", 7, (n, 100)) for n in (128, 128, 44)]
    # Every TensorRT call ran with the engine's device made current, and the stream was synchronised inside.
    kinds = [c[0] for c in fake_trt.calls]
    assert kinds[0] == "device_current" and kinds[-1] == "device_released" and kinds.count("device_current") == 1
    assert kinds[-2] == "synchronize"
    assert fake_trt.calls[0] == ("device_current", "cuda:0")


def test_a_batch_within_the_profile_is_one_call(built, fake_trt):
    with dt.TensorRTEngine(built, precision="fp32", device="cuda:1") as engine:
        fake_trt.calls.clear()
        assert engine.generate(seeded_z(1, 5, 100, "normal")).shape == (5, 1, 32, 32)
    assert fake_trt.names("execute_async_v3") == [("execute_async_v3", 7, (5, 100))]
    assert fake_trt.calls[0] == ("device_current", "cuda:1")  # the device asked for, not the caller's


def test_a_failed_execute_is_one_clear_error(built, fake_trt):
    with dt.TensorRTEngine(built, precision="fp32") as engine:
        fake_trt.fail_execute = True
        with pytest.raises(DcganError) as err:
            engine.generate(seeded_z(0, 200, 100, "normal"))
    assert "TensorRT failed to run the engine on a batch of 128" in str(err.value)
    assert "--engine onnxruntime" in str(err.value) and err.value.exit_code == 1
    assert len(fake_trt.names("execute_async_v3")) == 1  # stopped at the first failure
    assert fake_trt.calls[-1][0] == "device_released"


def test_a_plan_tensorrt_cannot_deserialize_is_refused_with_the_rebuild_command(built, fake_trt):
    engine_path, record_path = dt.engine_paths(built, "fp32")
    engine_path.write_bytes(b"a plan of another TensorRT")
    record = json.loads(record_path.read_text())
    record["engine_sha256"] = dt.hashlib.sha256(b"a plan of another TensorRT").hexdigest()
    record_path.write_text(json.dumps(record))
    with pytest.raises(DcganError, match="TensorRT could not deserialize it.*--rebuild"):
        dt.TensorRTEngine(built, precision="fp32")


def test_build_failures_say_what_failed(run, fake_trt, tmp_path):
    fake_trt.fail_build = True
    with pytest.raises(DcganError, match="TensorRT could not build an engine from .*generator.onnx"):
        dt.TensorRTEngine.build(run, BuildRequest("fp32", opt_batch=8, max_batch=8))
    assert not dt.engine_paths(run, "fp32")[0].exists()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(DcganError, match="TensorRT cannot parse .*broken.onnx: ModelImporter"):
        dt.build_engine(broken, tmp_path / "x.engine", nz=100, precision="fp32", opt_batch=1, max_batch=1)


# ---------------------------------------------------------------------------- --engine auto and readiness


def reexport(run: Path) -> None:
    """Another ONNX file of the same weights since the engine was built (as a newer `dcgan export --force` makes)."""
    import onnx

    path = onnx_path(run, "fp32")
    model = onnx.load(str(path))
    model.doc_string += " (exported again)"
    onnx.save(model, str(path))


def rewrite_record(run: Path, **changes) -> None:
    record_path = dt.engine_paths(run, "fp32")[1]
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), **changes}))


def test_auto_takes_an_engine_built_here_for_the_current_export(built, fake_trt, tensorrt_registered):
    from dcgan_cli.engines.selection import select_engine

    choice = select_engine("auto", built, device="cuda", batch_size=64)
    assert choice.engine is dt.TensorRTEngine and choice.passed_over == []


@pytest.mark.parametrize(
    "damage, why",
    [
        (
            lambda run: rewrite_record(run, gpu={"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}),
            "it was built for NVIDIA A100-SXM4-80GB (compute capability 8.0), this machine has NVIDIA H100 80GB HBM3 (9.0)",
        ),
        (lambda run: rewrite_record(run, tensorrt="10.3.0"), "built with TensorRT 10.3.0, this machine has 10.9.0.34"),
        (
            lambda run: dt.engine_paths(run, "fp32")[1].unlink(),
            "has no record generator-fp32.engine.json beside it",
        ),
        (lambda run: dt.engine_paths(run, "fp32")[1].write_text("{not json"), "generator-fp32.engine.json"),
        (lambda run: dt.engine_paths(run, "fp32")[0].write_bytes(b"cut short"), "does not match its record"),
        (reexport, "built from another ONNX file than the run's current export"),
    ],
    ids=["another-gpu", "another-tensorrt", "no-record", "broken-record", "damaged-engine", "new-export"],
)
def test_auto_passes_over_an_engine_it_cannot_load_and_says_why(
    built, fake_trt, tensorrt_registered, cli, damage, why, monkeypatch
):
    from dcgan_cli.engines.selection import select_engine

    damage(built)
    choice = select_engine("auto", built, device="cuda", batch_size=64)
    assert choice.engine is not dt.TensorRTEngine
    ((name, reason),) = [p for p in choice.passed_over if p[0] == "tensorrt"]
    assert why in reason and "\n" not in reason
    assert "--rebuild" in reason or "dcgan export" in reason  # and what fixes it
    # Named explicitly, it is refused loudly with the same reason.
    with pytest.raises(DcganError) as err:
        select_engine("tensorrt", built, device="cuda")
    assert why in str(err.value) and str(err.value).startswith(f"engine 'tensorrt' is not ready for {built}")
    # `dcgan sample` draws with the next engine, one line saying why tensorrt was skipped...
    monkeypatch.chdir(built.parent)
    result = cli(["sample", "-r", built, "-n", "4", "--out", "grid.png"])
    assert result.exit_code == 0, result.output
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("Skipped the tensorrt engine")]
    assert why in line
    assert (built.parent / "grid.png").is_file()
    # ...and refuses, exit 3 (bad input) with that reason, when told to use tensorrt.
    result = cli(["sample", "-r", built, "-n", "4", "--engine", "tensorrt", "--out", "other.png"])
    assert result.exit_code == ExitCode.BAD_INPUT and why in result.stderr and "Traceback" not in result.output
    assert not (built.parent / "other.png").exists()
