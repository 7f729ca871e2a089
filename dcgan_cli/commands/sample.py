"""`dcgan sample`: draw images from a trained generator with any engine."""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import (
    BatchSizeOption,
    DeviceOption,
    EngineOption,
    ForceOption,
    JsonOption,
    Precision,
    PrecisionOption,
    RunOption,
    SamplesOption,
    SeedOption,
    pick_run,
    print_json,
    refuse_overwrite,
)
from dcgan_cli.hookspecs import hookimpl


def sample_command(
    run: RunOption = None,
    n: SamplesOption = 64,
    seed: SeedOption = 0,
    engine: EngineOption = "auto",
    precision: PrecisionOption = Precision.fp32,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="grid.png (one picture) or images.npz (arrays).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Write one PNG per image (or --tar shards) into this folder; resumable."),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            metavar="P", help="Processes for --out-dir/.npz, each pinned to its share of the CPUs or to one GPU."
        ),
    ] = 1,
    tar: Annotated[
        bool, typer.Option("--tar", help="With --out-dir: WebDataset tar shards (shard-NNNNNN.tar) instead of PNGs.")
    ] = False,
    shard_size: Annotated[
        int,
        typer.Option(metavar="N", help="Images per shard (the unit of work and of resuming) for --out-dir and .npz."),
    ] = 1024,
    save_z: Annotated[
        bool, typer.Option("--save-z", help="Keep z beside the output, to refer to samples by index.")
    ] = False,
    batch_size: BatchSizeOption = 256,
    nrow: Annotated[int | None, typer.Option(help="Images per grid row. Default: a square.")] = None,
    device: DeviceOption = "auto",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Sample images. Without --out or --out-dir, writes a numbered sheet (picture + z) into the run."""
    precision = precision.value
    from dcgan_cli.core.console import console, note, progress_task
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.engines.base import check_precision_name
    from dcgan_cli.engines.sampling import next_sheet_path, sheet_metadata, write_grid, write_sheet, z_path_for
    from dcgan_cli.engines.selection import select_engine

    if n < 1:
        raise DcganError(f"-n must be at least 1, got {n}")
    if batch_size < 1:
        raise DcganError(f"--batch-size must be at least 1, got {batch_size}")
    if nproc < 1:
        raise DcganError(f"--nproc must be at least 1, got {nproc}")
    if out is not None and out_dir is not None:
        raise DcganError("give either --out or --out-dir, not both")
    check_precision_name(precision)
    run_dir = pick_run(run)
    in_run = out is None and out_dir is None
    if in_run:
        out, save_z = next_sheet_path(run_dir), True
    grid = out is not None and out.suffix.lower() != ".npz"
    if out is not None and out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".npz"):
        raise DcganError(f"--out {out}: use a .png (grid picture) or .npz (arrays) file name")
    if grid and (nproc > 1 or tar):
        raise DcganError("--nproc and --tar are for --out-dir DIR and --out FILE.npz, not for one grid picture")
    if tar and out_dir is None:
        raise DcganError("--tar writes shards into a folder: give --out-dir DIR")
    z_file = None
    if out is not None:
        refuse_overwrite(out, force)
        if save_z and grid:
            z_file = z_path_for(out)
            refuse_overwrite(z_file, force)
    elif save_z:
        z_file = out_dir / "z.safetensors"

    choice = select_engine(engine, run_dir, precision=precision, device=device, batch_size=min(n, batch_size))
    if choice.reason:
        note(f"Engine {choice.engine.NAME}: {choice.reason}")
    for line in choice.notes():
        note(line)
    engine_name = choice.engine.NAME
    if grid:
        with choice.engine(run_dir, device=device, precision=precision) as eng:
            with progress_task(f"sampling ({eng.NAME})", n) as advance:
                z = write_grid(eng, seed, n, out, batch_size, nrow, advance=advance)
    else:
        z = None
        engine_name = _write_shards(
            run_dir, out if out is not None else out_dir, "tar" if tar else ("npz" if out is not None else "png"),
            n=n, seed=seed, shard_size=shard_size, batch_size=batch_size, engine=engine_name,
            auto=engine == "auto", precision=precision, device=device, nproc=nproc, force=force, save_z=save_z,
        )  # fmt: skip
    if z_file is not None:
        if z is None:
            from dcgan_cli.core.prior import seeded_z
            from dcgan_cli.core.runs import read_run_config

            model = read_run_config(run_dir)["model"]
            z = seeded_z(seed, n, model["nz"], model["prior"])
        image_name = out.name if out is not None else out_dir.name
        write_sheet(z_file, z, sheet_metadata(run_dir, seed, n, image_name, engine_name))
    target = out if out is not None else out_dir
    if as_json:
        print_json(dict(images=n, seed=seed, engine=engine_name, precision=precision, out=target, z=z_file))
        return
    console.print(f"Wrote {n} images ({engine_name} engine, seed {seed}) to {target}", soft_wrap=True)
    if z_file is not None:
        console.print(f"z of each image: {z_file} (sample indices 0..{n - 1})", soft_wrap=True)


def _write_shards(run_dir, target, kind, *, auto: bool, nproc: int, force: bool, save_z: bool, **plan) -> str:
    """Draw into ``target`` shard by shard, continuing an interrupted job; returns the engine used."""
    import dataclasses

    from dcgan_cli.core.console import note, progress_task
    from dcgan_cli.engines.shards import ShardJob, assemble_npz, make_plan, run_job

    job = ShardJob(make_plan(run_dir, kind, **plan), target)
    with job.lock():
        previous = job.previous_plan()
        if auto and not force and previous is not None and previous.engine != job.plan.engine:
            # --engine auto continues with the engine the job started with: every image from one engine.
            same = dataclasses.replace(job.plan, engine=previous.engine)
            if not same.differences(previous):
                job.plan = same
        state = job.open(force)
        if state == "resumed":
            note(
                f"Continuing the sampling in {job.folder}: {len(job.done)} of {job.plan.shards} shards were done"
                if len(job.done) < job.plan.shards
                else f"All {job.plan.n} images were already in {job.folder}"
            )
        with progress_task(
            f"sampling ({job.plan.engine}, {nproc} process{'es' if nproc > 1 else ''})", job.plan.n
        ) as advance:
            advance(job.images_done())
            run_job(job, run_dir, nproc=nproc, device=plan["device"], advance=advance)
        if kind == "npz":
            assemble_npz(job, save_z, job.plan.engine)
    return job.plan.engine


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
