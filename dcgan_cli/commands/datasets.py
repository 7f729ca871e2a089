"""`dcgan datasets`: every registered dataset and what it expects on disk."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dcgan_cli.hookspecs import hookimpl


def datasets_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the datasets `dcgan train` knows, built in or from plugins."""
    from rich.table import Table

    from dcgan_cli.data import get_datasets
    from dcgan_cli.progress import console

    specs = sorted(get_datasets().values(), key=lambda s: s.name)
    if as_json:
        rows = [
            {"name": s.name, "description": s.description, "expects": s.expects, "size": s.size, "channels": s.channels}
            for s in specs
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "default size", "expects on disk", "description")
    for s in specs:
        table.add_row(s.name, f"{s.size}x{s.size}x{s.channels}", s.expects, s.description)
    console.print(table)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("datasets")(datasets_command)
