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
        Path | None, typer.Option(metavar="DIR", help="Write one PNG per image into this folder.")
    ] = None,
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
    from dcgan_cli.engines.sampling import (
        next_sheet_path,
        sheet_metadata,
        write_folder,
        write_grid,
        write_npz,
        write_sheet,
        z_path_for,
    )
    from dcgan_cli.engines.selection import select_engine

    if n < 1:
        raise DcganError(f"-n must be at least 1, got {n}")
    if batch_size < 1:
        raise DcganError(f"--batch-size must be at least 1, got {batch_size}")
    if out is not None and out_dir is not None:
        raise DcganError("give either --out or --out-dir, not both")
    check_precision_name(precision)
    run_dir = pick_run(run)
    in_run = out is None and out_dir is None
    if in_run:
        out, save_z = next_sheet_path(run_dir), True
    z_file = None
    if out is not None:
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".npz"):
            raise DcganError(f"--out {out}: use a .png (grid picture) or .npz (arrays) file name")
        refuse_overwrite(out, force)
        if save_z and out.suffix.lower() != ".npz":
            z_file = z_path_for(out)
            refuse_overwrite(z_file, force)
    else:
        if out_dir.exists() and any(out_dir.iterdir()) and not force:
            raise DcganError(f"{out_dir} is not empty; pass --force to write into it or choose another folder")
        if save_z:
            z_file = out_dir / "z.safetensors"

    choice = select_engine(engine, run_dir, precision=precision, device=device, batch_size=min(n, batch_size))
    if choice.reason:
        note(f"Engine {choice.engine.NAME}: {choice.reason}")
    for line in choice.notes():
        note(line)

    with choice.engine(run_dir, device=device, precision=precision) as eng:
        with progress_task(f"sampling ({eng.NAME})", n) as advance:
            if out is not None and out.suffix.lower() == ".npz":
                write_npz(eng, seed, n, out, batch_size, with_z=save_z, advance=advance)
                z = None
            elif out is not None:
                z = write_grid(eng, seed, n, out, batch_size, nrow, advance=advance)
            else:
                write_folder(eng, seed, n, out_dir, batch_size, advance=advance)
                z = None
        if z_file is not None:
            if z is None:
                from dcgan_cli.core.prior import seeded_z

                z = seeded_z(seed, n, eng.config.nz, eng.config.prior)
            image_name = out.name if out is not None else out_dir.name
            write_sheet(z_file, z, sheet_metadata(run_dir, seed, n, image_name, eng.NAME))
        target = out if out is not None else out_dir
        if as_json:
            print_json(dict(images=n, seed=seed, engine=eng.NAME, precision=precision, out=target, z=z_file))
            return
        console.print(f"Wrote {n} images ({eng.NAME} engine, seed {seed}) to {target}", soft_wrap=True)
        if z_file is not None:
            console.print(f"z of each image: {z_file} (sample indices 0..{n - 1})", soft_wrap=True)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
