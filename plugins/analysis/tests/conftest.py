import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("DCGAN_QUIET", "1")  # no progress bars in test output

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
# dcgan-cli's committed trained digits model (32x32, ngf=ndf=32): inside the dcgan-cli
# repository it lies two folders up; elsewhere a small run is trained instead.
COMMITTED_RUN = PLUGIN_ROOT.parents[1] / "tests" / "fixtures" / "digits-run"


@pytest.fixture(scope="session")
def source_run(tmp_path_factory) -> Path:
    if (COMMITTED_RUN / "discriminator.safetensors").is_file():
        return COMMITTED_RUN
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.training.config import TrainConfig, create_run
    from dcgan_cli.training.trainer import Trainer

    root = tmp_path_factory.mktemp("trained") / "digits-run"
    create_run(
        root,
        DCGANConfig(size=32, channels=1, ngf=16, ndf=16),
        TrainConfig(dataset="digits", max_steps=60, batch_size=64, device="cpu"),
    )
    Trainer(root).run()
    return root


@pytest.fixture
def run_dir(source_run, tmp_path, monkeypatch) -> Path:
    """A private copy of a trained digits run at ./runs/digits-run, with cwd in a temp folder."""
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "runs" / "digits-run"
    dest.parent.mkdir()
    for name in ("config.json", "generator.safetensors", "discriminator.safetensors"):
        dest.mkdir(exist_ok=True)
        shutil.copy(source_run / name, dest / name)
    return Path("runs") / "digits-run"


@pytest.fixture
def cli():
    """Invoke the dcgan app in-process with this plugin loaded: cli([...]) -> Result."""
    from typer.testing import CliRunner

    import dcgan_analysis.commands
    from dcgan_cli import plugins
    from dcgan_cli.cli import build_app

    pm = plugins.get_plugin_manager()
    # Installed, the entry point has loaded it already; otherwise register it for the test.
    added = not pm.is_registered(dcgan_analysis.commands)
    if added:
        pm.register(dcgan_analysis.commands, name="analysis-under-test")
    runner = CliRunner()

    def invoke(args, **kwargs):
        return runner.invoke(build_app(), [str(a) for a in args], **kwargs)

    yield invoke
    if added:
        pm.unregister(name="analysis-under-test")


@pytest.fixture
def registered():
    """Register plugin objects on dcgan's plugin manager for one test, then unregister them."""
    from dcgan_cli import plugins

    pm = plugins.get_plugin_manager()
    names = []

    def register(plugin, name):
        pm.register(plugin, name=name)
        names.append(name)

    yield register
    for name in names:
        pm.unregister(name=name)
