"""`dcgan plugins`: installed plugins, their versions and the hooks they implement."""

import json

import typer

from dcgan_cli.commands import JsonOption
from dcgan_cli.hookspecs import hookimpl


def plugins_command(as_json: JsonOption = False) -> None:
    """List the plugins, built-in and installed, with their hooks."""
    from rich.table import Table

    from dcgan_cli.core.console import console
    from dcgan_cli.plugins import list_plugins

    rows = list_plugins()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("plugin", "version", "distribution", "hooks")
    table.columns[0].no_wrap = True
    for row in rows:
        name = row["name"] + (" (built-in)" if row["builtin"] else "")
        hooks = ", ".join(h.removeprefix("dcgan_register_").removeprefix("dcgan_") for h in row["hooks"])
        table.add_row(name, row["version"], row["distribution"], hooks)
    console.print(table)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("plugins")(plugins_command)
