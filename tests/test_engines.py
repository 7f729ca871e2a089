import importlib.util
import json

import pytest
import torch

from dcgan_cli import plugins
from dcgan_cli.core.errors import DcganError, ExitCode
from dcgan_cli.core.files import sha256_file
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.engines.base import get_engines
from dcgan_cli.engines.selection import bench_path, machine_fingerprint, select_engine
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.hookspecs import hookimpl


class TorchCopyEngine(TorchEngine):
    """A second engine for these tests, registered through the hook like a plugin's."""

    NAME = "torch-copy"
    AUTO_PRIORITY = 0


class TorchCopyPlugin:
    @hookimpl
    def dcgan_register_engines(self, register):
        register(TorchCopyEngine)


@pytest.fixture
def torch_copy():
    pm = plugins.get_plugin_manager()
    pm.register(TorchCopyPlugin(), name="torch-copy-plugin")
    yield TorchCopyEngine
    pm.unregister(name="torch-copy-plugin")


def test_bench_measures_every_engine_at_every_batch_size_and_records_it(cli, trained_run, torch_copy):
    result = cli(["bench", "--json", "--batch-sizes", "1,4", "--min-time", "0.02", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    measured = {(r["engine"], r["batch"]) for r in table["results"]}
    assert {("torch", 1), ("torch", 4), ("torch-copy", 1), ("torch-copy", 4)} <= measured
    for row in table["results"]:
        assert row["images_per_s"] > 0 and row["latency_ms"] > 0 and row["calls"] >= 3
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["latency_ms"] * 1000)
    # Every precision each engine runs is measured or skipped with its reason.
    assert ("torch", "fp32") in {(r["engine"], r["precision"]) for r in table["results"]}
    if importlib.util.find_spec("dcgan_onnxruntime") is not None:  # installed, but the run is not exported
        skipped = {s["precision"]: s["reason"] for s in table["skipped"] if s["engine"] == "onnxruntime"}
        assert set(skipped) == {"fp32", "fp16", "int8"} and all("dcgan export" in r for r in skipped.values())
        assert "--precision int8" in skipped["int8"]
    assert json.loads(bench_path(trained_run).read_text()) == table
    shown = cli(["bench", "--batch-sizes", "2", "--min-time", "0.02", "--engines", "torch", "--device", "cpu"])
    assert shown.exit_code == 0 and "images/s" in shown.stdout and "latency (ms)" in shown.stdout


def _bench_file(run, rows, machine=None):
    bench_path(run).parent.mkdir(parents=True, exist_ok=True)
    bench_path(run).write_text(
        json.dumps(
            {
                "machine": machine or machine_fingerprint(),
                "generator_sha256": sha256_file(RunPaths(run).generator),
                "results": [
                    {"engine": e, "batch": b, "images_per_s": ips, "precision": "fp32", "device": "cpu"}
                    for e, b, ips in rows
                ],
            }
        )
    )


def test_auto_picks_the_fastest_engine_measured_here_for_the_batch_size(trained_run, torch_copy):
    # torch wins small batches, torch-copy large ones, in this machine's benchmark of the run
    _bench_file(
        trained_run,
        [("torch", 1, 900.0), ("torch-copy", 1, 500.0), ("torch", 256, 2000.0), ("torch-copy", 256, 3000.0)],
    )
    small = select_engine("auto", trained_run, device="cpu", batch_size=2)
    large = select_engine("auto", trained_run, device="cpu", batch_size=200)
    assert (small.engine, large.engine) == (TorchEngine, TorchCopyEngine)
    assert "fastest at batch 256" in large.reason and "bench.json" in large.reason
    # a benchmark of another machine says nothing about this one: the measured rule decides
    _bench_file(trained_run, [("torch-copy", 256, 1e9)], machine={**machine_fingerprint(), "cpu": "another CPU"})
    choice = select_engine("auto", trained_run, device="cpu", batch_size=256)
    assert choice.engine is not TorchCopyEngine and "no `dcgan bench`" in choice.reason


def test_sample_with_auto_names_the_engine_and_why(cli, trained_run):
    result = cli(["sample", "-n", "4", "--out", "grid.png", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Engine " in result.stderr and "fastest" in result.stderr
    if importlib.util.find_spec("dcgan_onnxruntime") is not None:
        (line,) = [text for text in result.stderr.splitlines() if text.startswith("Skipped the onnxruntime engine")]
        assert "(likely faster)" in line and "has no exports/generator.onnx" in line and "dcgan export" in line


@pytest.mark.skipif(
    torch.cuda.is_available() and importlib.util.find_spec("tensorrt") is not None,
    reason="TensorRT and CUDA are present here",
)
def test_engine_tensorrt_without_tensorrt_or_cuda_says_what_is_missing_and_how_to_install(cli, trained_run):
    result = cli(["sample", "-n", "4", "--engine", "tensorrt", "--out", "grid.png"])
    assert result.exit_code == ExitCode.BAD_INPUT and "Traceback" not in result.output
    message = result.stderr
    assert "tensorrt" in message.lower() and "pip install" in message
    if "tensorrt" in get_engines() and not torch.cuda.is_available():  # the plugin is installed: name the device too
        assert "no CUDA device" in message
    assert not (trained_run.parent.parent / "grid.png").exists()


def test_unknown_engines_and_precisions_the_engine_cannot_run_are_refused(cli, trained_run):
    result = cli(["sample", "-n", "2", "--engine", "warp-drive", "--out", "g.png"])
    assert (
        result.exit_code == ExitCode.BAD_INPUT
        and "unknown engine 'warp-drive'" in result.stderr
        and "torch" in result.stderr
    )
    if not torch.cuda.is_available():
        result = cli(
            ["sample", "-n", "2", "--engine", "torch", "--precision", "fp16", "--out", "g.png", "--device", "cpu"]
        )
        assert result.exit_code == ExitCode.BAD_INPUT and "on a GPU only" in result.stderr
    with pytest.raises(DcganError, match="unknown precision"):
        select_engine("torch", trained_run, precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the torch CUDA fast path needs a CUDA device; none here")
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("fp16", 1e-2), ("bf16", 6e-2)])
def test_cuda_fast_path_matches_fp32_on_the_cpu_and_reuses_its_graph(trained_run, precision, tolerance):
    z = seeded_z(2, 64, 100, "normal")
    with TorchEngine(trained_run, device="cpu") as cpu:
        expected = cpu.generate(z)
    with TorchEngine(trained_run, device="cuda", precision=precision) as gpu:
        first, second = gpu.generate(z), gpu.generate(z)
        assert list(gpu._graphs) == [64]  # one graph for the batch size, replayed
        assert torch.equal(first, second)
        assert (first - expected).abs().max() <= tolerance


def test_a_lazy_engine_opens_on_first_use_only_and_closes_on_leaving(trained_run, monkeypatch):
    from dcgan_cli.engines.selection import LazyEngine

    opened, closed = [], []
    monkeypatch.setattr(TorchEngine, "__init__", _recording(TorchEngine.__init__, opened))
    monkeypatch.setattr(TorchEngine, "close", lambda self: closed.append(self))
    with LazyEngine("torch", trained_run, device="cpu"):
        pass  # never asked for: nothing loaded, nothing to close
    assert opened == [] and closed == []
    with LazyEngine("torch", trained_run, device="cpu") as later:
        first = later.get()
        assert later.get() is first and len(opened) == 1
        assert first.generate(seeded_z(0, 2, first.config.nz, first.config.prior)).shape[0] == 2
    assert closed == [first]


def _recording(init, calls):
    def wrapped(self, *args, **kwargs):
        calls.append(self)
        init(self, *args, **kwargs)

    return wrapped
