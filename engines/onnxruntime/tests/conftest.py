import os

import pytest

os.environ.setdefault("DCGAN_QUIET", "1")  # no progress bars in test output


@pytest.fixture
def cli():
    """Invoke the dcgan app in-process: cli(["plugins", "--json"]) -> Result."""
    from typer.testing import CliRunner

    from dcgan_cli.cli import build_app

    runner = CliRunner()
    return lambda args: runner.invoke(build_app(), [str(a) for a in args])
