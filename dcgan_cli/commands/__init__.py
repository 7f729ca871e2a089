"""Built-in commands, one module each; every module is an ordinary plugin.

Helpers here are shared by commands (built-in or from plugins): the options that mean the
same in every command (``--run/-r`` and how it resolves, ``--device``, ``--engine``,
``--precision``, ``--json`` ...), and the rule that nothing is overwritten without ``--force``.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.core.console import note
from dcgan_cli.core.errors import DcganError
from dcgan_cli.engines.base import PRECISIONS

# --precision is a choice (Typer makes one of an Enum: listed in the help, completed by the
# shell, refused by the parser); commands pass on its .value.
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)


# The options every command spells the same way (docs/cli.md, "Command-line conventions"):
# the same idea has the same name, short letter, placeholder and help in every command.
RunOption = Annotated[
    Path | None,
    typer.Option(
        "--run",
        "-r",
        metavar="RUN",
        help="Run folder (or any folder with generator.safetensors + config.json). Default: the newest under ./runs.",
        show_default=False,
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite outputs that already exist.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (notes and progress go to stderr).")
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", metavar="DEVICE", help="auto (CUDA, else Apple MPS, else the CPU), cpu, cuda, cuda:N or mps."
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="ENGINE",
        help="auto (the fastest that can run here), torch, onnxruntime, tensorrt, or a plugin's (dcgan plugins).",
    ),
]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="Generation precision: fp16 on GPUs or from a half ONNX export, bf16 on GPUs and CPUs that have it, "
        "int8 from an int8 export (dcgan export --precision int8).",
    ),
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Images per engine call.")]
SamplesOption = Annotated[int, typer.Option("-n", "--num-samples", metavar="N", help="How many samples to draw.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of z: sample i of a seed is the same with every engine.")]


def print_json(value) -> None:
    """A command's result as JSON on stdout: what --json prints."""
    import json

    typer.echo(json.dumps(value, indent=2, default=str))


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
