"""`dcgan walk`: walks through Z (paper, section 6.1) as an animated GIF and a PNG grid."""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import (
    BatchSizeOption,
    DeviceOption,
    EngineOption,
    ForceOption,
    JsonOption,
    RunOption,
    pick_run,
    print_json,
    refuse_overwrite,
)
from dcgan_cli.hookspecs import hookimpl


def walk_command(
    run: RunOption = None,
    points: Annotated[int, typer.Option(help="Random points of Z each walk passes through (the paper: 9).")] = 9,
    steps: Annotated[int, typer.Option(help="Frames from one point to the next.")] = 8,
    mode: Annotated[
        str, typer.Option(metavar="slerp|linear", help="slerp (along the prior's shell) or a straight line.")
    ] = "slerp",
    walks: Annotated[int, typer.Option(help="How many random walks (one row each in the PNG).")] = 4,
    through: Annotated[
        list[str] | None,
        typer.Option(
            metavar="POINTS",
            help="A walk through given points instead of random ones: comma-separated sample indices of a sheet "
            'and concept names, e.g. "3,17,thick seven". Repeat for more walks.',
        ),
    ] = None,
    sheet: Annotated[
        str | None, typer.Option(metavar="SHEET", help="Sheet the sample indices refer to. Default: the run's newest.")
    ] = None,
    exemplars: Annotated[int, typer.Option(help="Exemplars averaged for a concept named in --through.")] = 3,
    loop: Annotated[
        bool, typer.Option("--loop", help="Walk back to the first point, so the GIF loops without a jump.")
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seed of the random points: walk w passes through samples w*P..w*P+P-1 of it.")
    ] = 0,
    fps: Annotated[float, typer.Option(help="GIF frames per second.")] = 12.0,
    engine: EngineOption = "auto",
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 256,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="walk.gif (a .png grid and a .json go beside it). Default: figures/walk-NNN.gif in the run.",
        ),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Walk through the latent space: an animated GIF and a grid.

    Smooth changes between random points show that the generator learned a space of
    meaning rather than memorising images (paper, section 6.1)."""
    import torch

    from dcgan_cli.core.console import console, progress_task
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.files import atomic_write_json
    from dcgan_cli.core.images import save_grid
    from dcgan_cli.core.runs import RunPaths, next_numbered
    from dcgan_cli.engines.selection import open_engine
    from dcgan_cli.latent.concepts import points_from_specs
    from dcgan_cli.latent.walk import (
        WALK_MODES,
        render_frames,
        save_walk_gif,
        walk_path,
        walk_points,
        walk_smoothness,
    )

    if mode not in WALK_MODES:
        raise DcganError(f"--mode {mode!r}: use slerp or linear")
    if steps < 1 or steps > 256:
        raise DcganError(f"--steps must be between 1 and 256, got {steps}")
    if through is None and (points < 2 or walks < 1 or points * walks > 4096):
        raise DcganError("a walk needs --points of at least 2 and --walks of at least 1 (at most 4096 points in all)")
    if fps <= 0 or batch_size < 1:
        raise DcganError("--fps and --batch-size must be positive")
    run_dir = pick_run(run)
    if out is None:
        stem = next_numbered(RunPaths(run_dir).figures, "walk", (".gif", ".png", ".json"))
        gif, png, meta_path = (stem.with_name(stem.name + s) for s in (".gif", ".png", ".json"))
    else:
        if out.suffix.lower() != ".gif":
            raise DcganError(f"--out {out}: name a .gif file (the .png grid and .json are written beside it)")
        gif, png, meta_path = out, out.with_suffix(".png"), out.with_suffix(".json")
        for path in (gif, png, meta_path):
            refuse_overwrite(path, force)

    with open_engine(engine, run_dir, device=device) as eng:
        c = eng.config
        if through:
            stops, described = points_from_specs(run_dir, through, sheet, exemplars, c.nz, c.prior)
        else:
            stops = walk_points(seed, walks, points, c.nz, c.prior)
            described = [[f"seed {seed} sample {w * points + p}" for p in range(points)] for w in range(walks)]
        paths = torch.stack([walk_path(s, steps, mode, closed=loop) for s in stops])
        with progress_task(f"walking ({eng.NAME})", paths.shape[0] * paths.shape[1]) as advance:
            frames = render_frames(eng, paths, batch_size, advance)
        save_walk_gif(frames, gif, fps)
        save_grid(frames.flatten(0, 1), png, nrow=frames.shape[1])
        smooth = walk_smoothness(frames, steps)
        record = {
            "run": str(run_dir),
            "engine": eng.NAME,
            "mode": mode,
            "steps": steps,
            "loop": loop,
            "seed": None if through else seed,
            "walks": [{"through": d} for d in described],
            "frames_per_walk": frames.shape[1],
            "smoothness": smooth,
            "gif": gif.name,
            "png": png.name,
        }
        atomic_write_json(meta_path, record)
    if as_json:
        print_json({**record, "gif": gif, "png": png, "json": meta_path})
        return
    console.print(f"Wrote {gif} ({frames.shape[0]} walk(s), {frames.shape[1]} frames each) and {png}")
    console.print(
        f"largest frame-to-frame change {smooth['max_frame_change']:.4f}, "
        f"mean change between stops {smooth['mean_stop_change']:.4f} (details in {meta_path.name})"
    )


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("walk")(walk_command)
