"""`dcgan bench`: every engine that can run here, side by side, at several batch sizes."""

from typing import Annotated

import typer

from dcgan_cli.commands import DeviceOption, JsonOption, Precision, RunOption, pick_run, print_json
from dcgan_cli.hookspecs import hookimpl


def _int_list(text: str, option: str) -> tuple[int, ...]:
    from dcgan_cli.core.errors import DcganError

    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise DcganError(f"{option} takes comma-separated whole numbers such as 1,16,64,256; got {text!r}") from None
    if not values or min(values) < 1:
        raise DcganError(f"{option} needs batch sizes of at least 1; got {text!r}")
    return values


def bench_command(
    run: RunOption = None,
    batch_sizes: Annotated[str, typer.Option(metavar="N,N,...", help="Comma-separated batch sizes.")] = "1,16,64,256",
    engines: Annotated[
        str | None,
        typer.Option(metavar="ENGINE,...", help="Comma-separated engines (default: every installed one that can run)."),
    ] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            "--precision",
            help="fp32, fp16, bf16 or int8 alone. Default: every precision each engine runs and the run has "
            "(an int8 export, a TensorRT engine...); the others are listed as skipped.",
        ),
    ] = None,
    device: DeviceOption = "auto",
    min_time: Annotated[
        float, typer.Option(metavar="SECONDS", help="Time each engine and batch size this long (at least 3 calls).")
    ] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Time every engine that can run here, at several batch sizes.

    Images per second and latency of each engine at each batch size, written to exports/bench.json.

    `dcgan sample --engine auto` then picks the fastest engine for its batch size from it.
    """
    from rich.table import Table

    from dcgan_cli.core.console import console, note, progress_task
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.engines.base import check_precision_name, get_engines
    from dcgan_cli.engines.bench import bench_cases, run_bench
    from dcgan_cli.engines.selection import bench_path

    precision = precision.value if precision is not None else None  # None: every precision
    sizes = _int_list(batch_sizes, "--batch-sizes")
    if precision is not None:
        check_precision_name(precision)
    if min_time <= 0:
        raise DcganError(f"--min-time must be positive, got {min_time}")
    names = [n.strip() for n in engines.split(",") if n.strip()] if engines else None
    run_dir = pick_run(run)
    total = len(bench_cases(get_engines(), names or list(get_engines()), precision)) * len(sizes)
    with progress_task("benchmarking", total, unit="case") as advance:
        result = run_bench(
            run_dir, names, sizes, precision=precision, device=device, min_time=min_time, advance=advance
        )
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{run_dir} ({precision or 'every precision'}, device {device})")
    for column in ("engine", "precision", "batch", "images/s", "latency (ms)", "runs on"):
        table.add_column(column, justify="right" if column in ("batch", "images/s", "latency (ms)") else "left")
    for row in result["results"]:
        table.add_row(
            row["engine"],
            row["precision"],
            str(row["batch"]),
            f"{row['images_per_s']:,.1f}",
            f"{row['latency_ms']:.2f}",
            row["description"],
        )
    console.print(table)
    for skipped in result["skipped"]:
        note(f"skipped {skipped['engine']} {skipped.get('precision', '')}: {skipped['reason']}")
    console.print(
        f"Written to {bench_path(run_dir)}; `dcgan sample --engine auto` uses it on this machine.",
        markup=False,
        soft_wrap=True,
    )


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
