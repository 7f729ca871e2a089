import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("DCGAN_QUIET", "1")  # no progress bars in test output
# One cache for the session and its subprocesses (the CPU step's timing, LSUN key lists), not ~/.cache.
if "DCGAN_CACHE_DIR" not in os.environ:
    os.environ["DCGAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="dcgan-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DCGAN_CACHE_DIR"], True)

# CI (.ci/run sets HYPOTHESIS_PROFILE=ci) draws the same examples on every run, so a red CI
# is reproducible and a green one does not depend on luck; local runs search afresh and
# keep what they find in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

from dcgan_cli.core.model import DCGANConfig  # noqa: E402  (after the settings above)
from dcgan_cli.training.config import TrainConfig, create_run  # noqa: E402
from dcgan_cli.training.trainer import Trainer  # noqa: E402


def make_run(
    root: Path, *, steps: int = 28, ngf: int = 16, ndf: int = 16, batch_size: int = 64, seed: int = 0, **train
) -> Path:
    """A small digits run trained for ``steps`` steps (a few seconds on the CPU)."""
    model = DCGANConfig(size=32, channels=1, ngf=ngf, ndf=ndf)
    cfg = TrainConfig(
        dataset="digits", epochs=100, max_steps=steps, batch_size=batch_size, seed=seed, device="cpu", **train
    )
    create_run(root, model, cfg, {"name": "digits"})
    Trainer(root).run()
    return root


@pytest.fixture(name="make_run")
def make_run_fixture():
    """make_run(root, steps=..., ...) -> root: train a small digits run."""
    return make_run


@pytest.fixture(scope="session")
def trained_run_session(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("session") / "runs" / "digits-small")


@pytest.fixture
def trained_run(trained_run_session, tmp_path, monkeypatch) -> Path:
    """A private copy of a small trained run at ./runs/digits-small, with cwd in a temp folder."""
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "runs" / "digits-small"
    shutil.copytree(trained_run_session, dest)
    return Path("runs") / "digits-small"


@pytest.fixture
def cli():
    """Invoke the dcgan app in-process: cli(["sample", ...]) -> Result."""
    from typer.testing import CliRunner

    from dcgan_cli.cli import build_app

    runner = CliRunner()

    def invoke(args, **kwargs):
        return runner.invoke(build_app(), [str(a) for a in args], **kwargs)

    return invoke


@pytest.fixture
def registered():
    """register(plugin_object, name): a plugin on the real plugin manager for one test, unregistered after."""
    from dcgan_cli import plugins

    pm = plugins.get_plugin_manager()
    names = []

    def register(plugin, name):
        pm.register(plugin, name=name)
        names.append(name)

    yield register
    for name in names:
        pm.unregister(name=name)
