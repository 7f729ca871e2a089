"""Built-in commands, one module each; every module is an ordinary plugin.

Helpers here are shared by commands (built-in or from plugins): the ``--run/-r`` option
and how it resolves, and the rule that nothing is overwritten without ``--force``.
"""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.core.console import note
from dcgan_cli.core.errors import DcganError

RunOption = Annotated[
    Path | None,
    typer.Option(
        "--run",
        "-r",
        help="Run folder (or any folder with generator.safetensors + config.json). Default: the newest under ./runs.",
        show_default=False,
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite outputs that already exist.")]


def pick_run(run: Path | None) -> Path:
    """Resolve --run; when it was left out, say which run is used."""
    from dcgan_cli.core.runs import resolve_run

    path = resolve_run(run)
    if run is None:
        note(f"Using run {path} (the newest under ./runs; pass -r RUN to choose another)")
    return path


def refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise DcganError(f"{path} already exists; pass --force to overwrite it or choose another path")
