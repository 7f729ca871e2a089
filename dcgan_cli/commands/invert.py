"""`dcgan invert IMAGE...`: a z for each of your images, whose generated image matches it."""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import DeviceOption, ForceOption, JsonOption, RunOption, pick_run, print_json, refuse_overwrite
from dcgan_cli.hookspecs import hookimpl

StepsOption = Annotated[int, typer.Option(help="Adam steps refining each z.")]
CandidatesOption = Annotated[int, typer.Option(help="Seeded draws of the prior scored as starting points.")]
LossOption = Annotated[
    str,
    typer.Option(help="What to match: pixels, features (the discriminator's) or both (README, 'Your own images')."),
]
EncoderOption = Annotated[
    bool | None,
    typer.Option(
        "--encoder/--no-encoder",
        help="Also start from a start encoder's guess (trained on the generator's samples once, kept in the run). "
        "Default: when the run has one, or on a GPU (training it on a CPU takes minutes).",
        show_default=False,
    ),
]


def invert_command(
    images: Annotated[
        list[Path] | None,
        typer.Argument(help="Image files (PNG, JPEG, WebP, ...), inverted in this order.", metavar="IMAGE..."),
    ] = None,
    run: RunOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="FIG.png (FIG.z.safetensors and FIG.json go beside it). Default: figures/invert-NNN.png in the run.",
        ),
    ] = None,
    steps: StepsOption = 300,
    candidates: CandidatesOption = 512,
    loss: LossOption = "both",
    encoder: EncoderOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the candidate draws.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images inverted at once.")] = 64,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
    force: ForceOption = False,
) -> None:
    """Invert the generator on your images: prepared as the run's training images were, each gets
    the z whose image matches it best, ready for `dcgan concepts add --image`, arithmetic and walks."""
    from dcgan_cli.core.console import console, note, progress_task
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.runs import RunPaths, next_numbered
    from dcgan_cli.latent.invert import InvertSettings
    from dcgan_cli.latent.invert_run import invert_files, write_inversion

    settings = InvertSettings(
        steps=steps, candidates=candidates, loss=loss, encoder=encoder, seed=seed, batch_size=batch_size
    ).check()
    if not images:
        raise DcganError("no image given; name one or more image files, e.g. `dcgan invert seven.png`")
    run_dir = pick_run(run)
    if out is None:
        stem = next_numbered(RunPaths(run_dir).figures, "invert", (".png", ".z.safetensors", ".json"))
        png = stem.with_name(stem.name + ".png")
    else:
        if out.suffix.lower() != ".png":
            raise DcganError(f"--out {out}: name a .png file (FIG.z.safetensors and FIG.json are written beside it)")
        png = out
    from dcgan_cli.engines.sampling import z_path_for

    z_file, meta_path = z_path_for(png), png.with_suffix(".json")
    if out is not None:
        for path in (png, z_file, meta_path):
            refuse_overwrite(path, force)

    prepared, inversion = invert_files(run_dir, images, settings, device=device, progress=progress_task)
    record = write_inversion(run_dir, prepared, inversion, png, z_file, meta_path)
    say_notes(prepared, inversion)
    message = (
        f"Inverted {len(inversion.z)} image(s) in {inversion.seconds:.1f} s: mean error {float(inversion.error.mean()):.4f} "
        f"(start {float(inversion.start_error.mean()):.4f}); wrote {png}, {z_file.name} and {meta_path.name}"
    )
    if as_json:
        note(message)
        print_json(record)
        return
    console.print(message, highlight=False, soft_wrap=True)
    for row in record["images"]:
        console.print(f"  {row['path']}: error {row['error']:.4f} (start {row['start_error']:.4f})", highlight=False)
    console.print(
        f"Name them with `dcgan concepts add NAME --samples 0 --sheet {z_file}`, or `dcgan concepts add NAME --image ...`",
        highlight=False,
        soft_wrap=True,
    )


def say_notes(prepared, inversion) -> None:
    """What was done to the images (conversions) and to the loss, one note a line."""
    from dcgan_cli.core.console import note

    for path, said in zip(prepared.paths, prepared.notes):
        for line in said:
            note(f"{path}: {line}")
    for line in inversion.notes:
        note(line)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("invert")(invert_command)
