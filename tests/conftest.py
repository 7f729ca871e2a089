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
from dcgan_cli.training.checkpoints import latest_checkpoint  # noqa: E402
from dcgan_cli.training.config import TrainConfig, create_run  # noqa: E402
from dcgan_cli.training.reporters import TrainingReporter  # noqa: E402
from dcgan_cli.training.trainer import Trainer, TrainResult  # noqa: E402


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


class CountingReporter(TrainingReporter):
    """Every step the trainer reports, and its notes: what a session actually ran."""

    def __init__(self):
        self.steps, self.notes = [], []

    def step(self, step, epoch, metrics):
        self.steps.append(step)

    def note(self, text):
        self.notes.append(text)


def resume_and_check(root: Path, *, at: int, until: int) -> TrainResult:
    """Resume ``root`` to step ``until`` and check that the session began at its checkpoint of step
    ``at`` and trained steps at+1..until, no more, said so, and recorded it in its checkpoints.

    Every random choice derives from (seed, step), so training again from step 0 would end
    bitwise equal to the straight run too: only this tells a resumption from a restart.
    """
    reporter = CountingReporter()
    result = Trainer(root, max_steps=until).run(reporter)
    assert result.step == until
    assert result.resumed_from_step == at and result.steps_run == until - at
    assert reporter.steps == list(range(at + 1, until + 1))
    assert reporter.notes[0].startswith(f"Resuming from step-{at:07d}.safetensors (step {at}, ")
    assert latest_checkpoint(root)[2]["resumed_from_step"] == at
    return result


@pytest.fixture(name="resume_and_check")
def resume_and_check_fixture():
    """resume_and_check(root, at=STEP, until=STEP) -> TrainResult: resume and prove it resumed."""
    return resume_and_check


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
