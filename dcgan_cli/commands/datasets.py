"""`dcgan datasets`: every registered dataset and what it expects on disk; or one opened and described."""

import json
from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import JsonOption
from dcgan_cli.hookspecs import hookimpl

EXAMPLES_SHOWN = 5  # unreadable files named by --verify


def datasets_command(
    name: Annotated[str | None, typer.Argument(help="Open this dataset and describe it (with --data).")] = None,
    data: Annotated[Path | None, typer.Option(metavar="PATH", help="Where the dataset lies on disk.")] = None,
    category: Annotated[
        str | None, typer.Option(metavar="NAME", help="LSUN database, when --data holds several.")
    ] = None,
    split: Annotated[str | None, typer.Option(metavar="SPLIT", help="train, valid, test or all.")] = None,
    size: Annotated[int | None, typer.Option(help="Image side. Default: the dataset's.")] = None,
    channels: Annotated[int | None, typer.Option(help="1 or 3. Default: the dataset's.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Read every item and report the unreadable ones.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes for --verify.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List the datasets that dcgan train knows, or describe one.

    Built in or from plugins; with a NAME (and --data), the dataset is opened and described."""
    if name is None:
        _list(as_json)
        return
    from dcgan_cli.core.console import console
    from dcgan_cli.data.catalog import DataOptions
    from dcgan_cli.data.loading import describe_dataset, find_unreadable, load_dataset

    dataset, options = load_dataset(
        name, DataOptions(data=data, size=size, channels=channels, category=category, split=split, workers=workers)
    )
    info = describe_dataset(name, dataset, options)
    if verify:
        bad = find_unreadable(dataset, workers)
        source = getattr(dataset, "source", str)
        info["unreadable"] = len(bad)
        info["unreadable_examples"] = [source(i) for i in bad[:EXAMPLES_SHOWN]]
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    c, s = options.channels, options.size
    split_text = f", split {info['split']}" if info["split"] else ""
    console.print(
        f"{name}: {info['items']:,} items of {c}x{s}x{s}{split_text}, from {info['data'] or 'built-in data'}",
        highlight=False,
    )
    if "classes" in info:
        console.print(f"{len(info['classes'])} classes: {', '.join(info['classes'])}", highlight=False)
    if "attr_names" in info:
        console.print(f"{len(info['attr_names'])} attributes: {', '.join(info['attr_names'])}", highlight=False)
    if verify:
        console.print(f"{info['unreadable']:,} unreadable (skipped in training)", highlight=False)
        for example in info["unreadable_examples"]:
            console.print(f"  {example}", highlight=False)


def _list(as_json: bool) -> None:
    from rich.table import Table

    from dcgan_cli.core.console import console
    from dcgan_cli.data.catalog import get_datasets

    specs = sorted(get_datasets().values(), key=lambda s: s.name)
    if as_json:
        rows = [
            {
                "name": s.name,
                "description": s.description,
                "expects": s.expects,
                "size": s.size,
                "channels": s.channels,
                "downloads": s.downloads,
            }
            for s in specs
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "default size", "--download", "expects on disk (--data)", "description")
    for s in specs:
        table.add_row(s.name, f"{s.size}x{s.size}x{s.channels}", "yes" if s.downloads else "", s.expects, s.description)
    console.print(table)
    console.print("Describe one with: dcgan datasets NAME --data PATH [--verify]", highlight=False)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("datasets")(datasets_command)
