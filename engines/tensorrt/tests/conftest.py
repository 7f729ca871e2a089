import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("DCGAN_QUIET", "1")

# scripts/install.py installs dcgan-tensorrt only where NVIDIA's driver is present. Its
# metadata, cache-key and refusal logic needs neither TensorRT nor a GPU, so it is tested
# everywhere: without the distribution installed, import the package from its source folder.
if importlib.util.find_spec("dcgan_tensorrt") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "digits-run"
MACHINE = ("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0")  # what the fake reports: fake_tensorrt.__version__


def load_fake_tensorrt():
    """A fresh copy of tests/fake_tensorrt.py (an empty call log), under the name ``tensorrt``."""
    path = Path(__file__).with_name("fake_tensorrt.py")
    spec = importlib.util.spec_from_file_location("tensorrt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_trt(monkeypatch):
    """The fake ``tensorrt`` module importable as tensorrt, and the engine's CUDA seam on the CPU,
    reporting ``MACHINE``; yields the module (its ``calls`` log, its failure switches)."""
    import dcgan_tensorrt

    fake = load_fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(dcgan_tensorrt, "CUDA", fake.CpuDevices(MACHINE))
    return fake


@pytest.fixture
def tensorrt_registered():
    """The TensorRT engine registered like an installed plugin (it is installed only where
    NVIDIA's driver is), for selection through get_engines()."""
    import dcgan_tensorrt
    from dcgan_cli import plugins

    pm = plugins.get_plugin_manager()
    added = not pm.is_registered(dcgan_tensorrt) and pm.get_plugin("tensorrt") is None
    if added:
        pm.register(dcgan_tensorrt, name="tensorrt")
    yield
    if added:
        pm.unregister(name="tensorrt")


@pytest.fixture
def cli():
    """Invoke the dcgan app in-process: cli(["sample", ...]) -> Result."""
    from typer.testing import CliRunner

    from dcgan_cli.cli import build_app

    runner = CliRunner()
    return lambda args: runner.invoke(build_app(), [str(a) for a in args])


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    """The committed digits fixture run (32x32, ngf 32) with exports/generator.onnx."""
    from dcgan_cli.engines.export import export_generator

    run = tmp_path_factory.mktemp("trt") / "digits-run"
    shutil.copytree(FIXTURE, run)
    export_generator(run, "fp32", verify=False)
    return run
