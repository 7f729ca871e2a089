"""`dcgan forget`: drop the feature maps that draw an object, into a new run (paper, 6.3.1)."""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import DeviceOption, ForceOption, JsonOption, RunOption, pick_run, print_json
from dcgan_cli.hookspecs import hookimpl


def forget_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="RUN", help="The new run folder to write (the source run is left as it is)."
        ),
    ],
    run: RunOption = None,
    boxes: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="boxes.json: boxes drawn on samples of a sheet or a seed (see docs/boxes.md)."
        ),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Let this detector draw the boxes (built in: windows), instead of --boxes."),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            "-n", "--num-samples", metavar="N", help="With --detector: how many samples to annotate (paper: 150)."
        ),
    ] = 150,
    seed: Annotated[
        int, typer.Option(help="With --detector: seed of the annotated samples; also seeds the negatives.")
    ] = 0,
    layer: Annotated[
        int | None,
        typer.Option(
            help="Hidden block whose maps are studied, 0 = the 4x4 projection. Default: the last one (the paper's)."
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Drop every map whose regression weight is above this (paper: 0).")
    ] = 0.0,
    max_maps: Annotated[
        int | None,
        typer.Option(help="Drop at most this many maps, the largest weights first. Default: all above the threshold."),
    ] = None,
    negatives: Annotated[float, typer.Option(help="Negative positions drawn per positive one.")] = 1.0,
    device: DeviceOption = "auto",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Forget an object: a new run without the maps that draw it.

    Which maps draw it is learned from boxes on samples (paper, section 6.3.1)."""
    from dcgan_cli.core.console import console, err_console, note
    from dcgan_cli.core.devices import resolve_device
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.networks import load_generator
    from dcgan_cli.latent.detectors import get_detector
    from dcgan_cli.latent.forget import (
        check_new_run,
        drop_maps,
        find_object_maps,
        write_forget_run,
    )
    from dcgan_cli.latent.forget_boxes import detect_annotations, read_boxes

    if as_json:
        console = err_console  # stdout holds the JSON alone; the report goes to stderr
    if (boxes is None) == (detector is None):
        raise DcganError("give either --boxes boxes.json (boxes you drew) or --detector NAME (boxes a detector draws)")
    run_dir = pick_run(run)
    check_new_run(out, run_dir, force)  # before any work: a taken --out is refused at once
    netG = load_generator(run_dir, device=resolve_device(device))
    c = netG.config
    if boxes is not None:
        annotations = read_boxes(boxes, run_dir, c.size, c.nz, c.prior)
    else:
        found = get_detector(detector)
        note(f"Annotating {samples} samples of seed {seed} with the {detector!r} detector")
        annotations = detect_annotations(netG, found, detector, seed, samples)
    result = find_object_maps(netG, annotations, layer, threshold, negatives, seed, max_maps)
    r = result.resolution
    console.print(
        f"Logistic regression on block {result.layer} ({r}x{r}x{result.maps}): {result.samples} samples, "
        f"{result.boxes} boxes, {result.positives} positive and {result.negatives} negative positions, "
        f"training accuracy {result.accuracy:.3f}"
    )
    ranked = sorted(range(result.maps), key=lambda i: -result.weights[i])[:8]
    console.print("Largest weights (map: weight): " + ", ".join(f"{i}: {result.weights[i]:.2f}" for i in ranked))
    if not result.dropped:
        raise DcganError(
            f"no feature map has a weight above {threshold}, so nothing would be dropped; lower --threshold"
        )
    baked = drop_maps(netG, result.layer, result.dropped)
    outcome = write_forget_run(run_dir, out, netG, baked, result, annotations, force=force)
    shown = ", ".join(map(str, result.dropped[:24])) + (", ..." if len(result.dropped) > 24 else "")
    console.print(f"Dropped {len(result.dropped)} of {result.maps} feature maps of block {result.layer}: {shown}")
    if max_maps is None and len(result.dropped) > result.maps // 3:
        note(
            f"Dropping {len(result.dropped)} maps also changes what is not the object; "
            "--max-maps K keeps to the K largest weights (see the figure)"
        )
    console.print(f"New run: {outcome.run} (sample, export and every engine use it like any run)")
    console.print(f"Before/after figure: {outcome.figure} (details in {outcome.figure_json.name})")
    if as_json:
        print_json(
            dict(
                run=outcome.run,
                figure=outcome.figure,
                figure_json=outcome.figure_json,
                layer=result.layer,
                maps=result.maps,
                dropped=result.dropped,
                accuracy=result.accuracy,
                samples=result.samples,
                boxes=result.boxes,
            )
        )


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("forget")(forget_command)
