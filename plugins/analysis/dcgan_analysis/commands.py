"""The plugin module named by the ``dcgan`` entry point: `dcgan classify`, `inspect`, `neighbours`, `fid`.

Commands parse arguments, call ``dcgan_analysis.analyses`` and print. Everything heavy is
imported inside the commands, so loading the plugin (on every ``dcgan`` call) stays cheap.
"""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.api import (
    DeviceOption,
    EngineOption,
    ForceOption,
    JsonOption,
    RunOption,
    hookimpl,
    pick_run,
    print_json,
    refuse_overwrite,
)

DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        metavar="DATASET",
        help="Real images to use (see dcgan datasets). Default: the run's training dataset.",
        show_default=False,
    ),
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data", metavar="PATH", help="Where the dataset lies on disk, for datasets that need it.", show_default=False
    ),
]
CategoryOption = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="Dataset category, for datasets that have them.", show_default=False),
]
DownloadOption = Annotated[bool, typer.Option("--download", help="Let the dataset download itself if it can.")]
WorkersOption = Annotated[int, typer.Option(help="DataLoader worker processes for reading images.")]
SeedOption = Annotated[int, typer.Option(help="Seed of every random choice (splits, draws, samples).")]
BatchOption = Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Extract features again instead of using (and filling) the run's cache.")
]


def _out_file(run_dir: Path, out: Path | None, stem: str, suffix: str, force: bool) -> Path:
    from dcgan_analysis.analyses import default_output

    path = out if out is not None else default_output(run_dir, stem, (suffix,)).with_suffix(suffix)
    refuse_overwrite(path, force)
    return path


def _out_pair(run_dir: Path, out: Path | None, stem: str, force: bool) -> Path:
    """STEM for STEM.png + STEM.json; --out names the .png."""
    from dcgan_analysis.analyses import default_output
    from dcgan_cli.api import DcganError

    if out is not None and out.suffix.lower() != ".png":
        raise DcganError(f"--out {out}: name a .png file (its .json is written beside it)")
    base = out.with_suffix("") if out is not None else default_output(run_dir, stem, (".png", ".json"))
    for suffix in (".png", ".json"):
        refuse_overwrite(base.with_suffix(suffix), force)
    return base


def _load_real(run_dir: Path, dataset, data, category, download, workers):
    from dcgan_analysis.data import load_real_images

    return load_real_images(run_dir, dataset, data, category, download, workers)


def _parse_layers(text: str | None) -> tuple[int, ...] | None:
    from dcgan_cli.api import DcganError

    if text is None or text.strip().lower() == "all":
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise DcganError(f"--layers {text!r}: give comma-separated layer numbers such as 1,2,3, or 'all'") from None


def classify_command(
    run: RunOption = None,
    dataset: DatasetOption = None,
    labels_per_class: Annotated[
        int, typer.Option("--labels-per-class", "-k", help="Labelled images per class in each draw.")
    ] = 10,
    draws: Annotated[int, typer.Option("--draws", help="Random draws of the labelled images.")] = 20,
    layers: Annotated[
        str | None,
        typer.Option(
            metavar="L,L,...", help="Discriminator conv layers to use, e.g. 2,3 (default: all, as the paper)."
        ),
    ] = None,
    test_fraction: Annotated[float, typer.Option(help="Share of the labelled images kept for the test split.")] = 0.5,
    val_fraction: Annotated[float, typer.Option(help="Share kept for the validation split that chooses C.")] = 0.2,
    max_images: Annotated[
        int | None, typer.Option(help="Use at most this many images of the dataset (a seeded subset).")
    ] = None,
    seed: SeedOption = 0,
    data: DataOption = None,
    category: CategoryOption = None,
    download: DownloadOption = False,
    workers: WorkersOption = 0,
    batch_size: BatchOption = 256,
    device: DeviceOption = "auto",
    no_cache: NoCacheOption = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Result JSON. Default: RUN/analysis/classify-NNN.json."),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Classify real images with the discriminator's features.

    The paper's section 5.1, against two baselines.

    Every discriminator conv layer is max-pooled to 4x4, flattened and concatenated; a linear
    L2-SVM (LinearSVC, C chosen on a validation split) learns from K labelled images per class;
    accuracy is the mean +- 1.96 std over R random draws. Raw pixels and a randomly
    initialised discriminator of the same shape go through the same draws.
    """
    from dcgan_analysis.analyses import classify_run
    from dcgan_analysis.data import run_model_config
    from dcgan_analysis.features import check_layers

    run_dir = pick_run(run)
    path = _out_file(run_dir, out, "classify", ".json", force)
    real = _load_real(run_dir, dataset, data, category, download, workers)
    chosen_layers = check_layers(run_model_config(run_dir), _parse_layers(layers))
    report = classify_run(
        run_dir,
        real,
        path,
        labels_per_class=labels_per_class,
        draws=draws,
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        max_images=max_images,
        layers=chosen_layers,
        batch_size=batch_size,
        device=device,
        cache=not no_cache,
    )
    if as_json:
        print_json(report)
        return
    _print_classify(report, path)


def _print_classify(report: dict, path: Path) -> None:
    from rich.table import Table

    from dcgan_cli.api import console

    split = report["split"]
    title = (
        f"{report['dataset']['dataset']}: {report['labels_per_class']} labels per class, {report['draws']} draws; "
        f"linear L2-SVM, C on {split['validation']} validation images, tested on {split['test']}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("features")
    table.add_column("dims", justify="right")
    table.add_column("accuracy (mean +- 1.96 std)", justify="right")
    table.add_column("min .. max", justify="right")
    for row in report["rows"]:
        table.add_row(
            row["name"],
            str(row["dims"]),
            f"{row['mean']:.4f} +- {row['ci95']:.4f}",
            f"{min(row['accuracies']):.3f} .. {max(row['accuracies']):.3f}",
        )
    console.print(table)
    for c in report["comparisons"]:
        verdict = "intervals separate" if c["intervals_separate"] else "intervals overlap"
        console.print(
            f"{c['features']} - {c['baseline']}: {c['mean_difference']:+.4f} +- {c['ci95_difference']:.4f} "
            f"(paired over draws; better in {c['wins']}/{c['draws']}; {verdict})",
            highlight=False,
        )
    for row in report["rows"]:
        console.print(f"  {row['description']}", highlight=False)
    console.print(f"Wrote {path}", highlight=False)


def inspect_command(
    run: RunOption = None,
    dataset: DatasetOption = None,
    features: Annotated[int, typer.Option(help="Strongest feature maps to show (rows).")] = 6,
    per_feature: Annotated[int, typer.Option(help="Real images per feature: those it responds to most (columns).")] = 8,
    layer: Annotated[
        int, typer.Option(help="Discriminator conv layer, 1-based; -1 is the last (the paper's choice).")
    ] = -1,
    images: Annotated[int, typer.Option(help="Real images searched for the strongest responses.")] = 512,
    seed: SeedOption = 0,
    data: DataOption = None,
    category: CategoryOption = None,
    download: DownloadOption = False,
    workers: WorkersOption = 0,
    device: DeviceOption = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Figure .png (a .json lands beside it). Default: RUN/analysis/inspect-NNN.png.",
        ),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show what the discriminator's strongest features respond to.

    Guided backpropagation on real images (paper, fig. 5).

    Left: a randomly initialised discriminator of the same shape; right: the trained one.
    One row per feature map, one column per real image that excites it most.
    """
    from dcgan_analysis.analyses import inspect_run
    from dcgan_cli.api import console

    run_dir = pick_run(run)
    stem = _out_pair(run_dir, out, "inspect", force)
    real = _load_real(run_dir, dataset, data, category, download, workers)
    report = inspect_run(
        run_dir,
        real,
        stem,
        features=features,
        per_feature=per_feature,
        layer=layer,
        images=images,
        seed=seed,
        device=device,
    )
    if as_json:
        print_json({**report, "png": stem.with_suffix(".png"), "json": stem.with_suffix(".json")})
        return
    for name in ("trained", "random"):
        info = report[name]
        console.print(
            f"{name}: layer {info['layer']}, features {info['channels']}  ({info['description']})", highlight=False
        )
    console.print(f"Wrote {stem.with_suffix('.png')} and {stem.with_suffix('.json').name}", highlight=False)


def neighbours_command(
    run: RunOption = None,
    dataset: DatasetOption = None,
    samples: Annotated[
        int, typer.Option("-n", "--num-samples", metavar="N", help="Samples shown in the figure (rows).")
    ] = 8,
    neighbours: Annotated[int, typer.Option(help="Nearest training images shown per sample and space.")] = 5,
    heldout_fraction: Annotated[
        float, typer.Option(help="Share of real images held out of the reference set for the score.")
    ] = 0.1,
    score_samples: Annotated[
        int | None, typer.Option(help="Samples for the memorisation score. Default: as many as held-out images.")
    ] = None,
    seed: SeedOption = 0,
    engine: EngineOption = "auto",
    data: DataOption = None,
    category: CategoryOption = None,
    download: DownloadOption = False,
    workers: WorkersOption = 0,
    batch_size: BatchOption = 256,
    device: DeviceOption = "auto",
    no_cache: NoCacheOption = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Figure .png (a .json lands beside it). Default: RUN/analysis/neighbours-NNN.png.",
        ),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Nearest training images of samples, and a memorisation score.

    Neighbours in pixel space and in the discriminator's feature space.

    The score compares each sample's distance to its nearest training image with the same
    distance for held-out real images: a generator that copies its training set draws
    samples that sit much closer than new real images do.
    """
    from dcgan_analysis.analyses import neighbours_run
    from dcgan_cli.api import console

    run_dir = pick_run(run)
    stem = _out_pair(run_dir, out, "neighbours", force)
    real = _load_real(run_dir, dataset, data, category, download, workers)
    report = neighbours_run(
        run_dir,
        real,
        stem,
        samples=samples,
        neighbours=neighbours,
        heldout_fraction=heldout_fraction,
        score_samples=score_samples,
        seed=seed,
        engine=engine,
        batch_size=batch_size,
        device=device,
        cache=not no_cache,
    )
    if as_json:
        print_json(report)
        return
    for score in report["memorisation"]:
        q = "sample_quantiles", "heldout_quantiles"
        console.print(
            f"{score['space']}: median nearest distance {score[q[0]]['0.5']:.3f} (samples) vs {score[q[1]]['0.5']:.3f} "
            f"(held-out real); {score['close_fraction']:.1%} of samples closer than the held-out 5th percentile "
            f"(expected about {score['close_fraction_expected']:.0%}) -> {score['verdict']}",
            highlight=False,
        )
    console.print(f"Wrote {stem.with_suffix('.png')} and {stem.with_suffix('.json').name}", highlight=False)


def fid_command(
    run: RunOption = None,
    dataset: DatasetOption = None,
    extractor: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="Features: fid-inception (the standard FID network: numbers comparable with published FIDs), "
            "inception (torchvision's), classifier, discriminator, one from a package, or auto.",
        ),
    ] = "auto",
    inception_weights: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Inception weights, .pth (read with weights_only: no code runs) or .safetensors: "
            "pt_inception-2015-12-05-6726825d.pth for fid-inception, torchvision's for inception.",
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", "--num-samples", metavar="N", help="Samples to draw.")] = 10000,
    max_real: Annotated[int | None, typer.Option(help="Use at most this many real images (a seeded subset).")] = 10000,
    kid_subsets: Annotated[int, typer.Option(help="Random subsets KID averages over.")] = 100,
    kid_subset_size: Annotated[int, typer.Option(help="Images per KID subset.")] = 1000,
    seed: SeedOption = 0,
    engine: EngineOption = "auto",
    data: DataOption = None,
    category: CategoryOption = None,
    download: DownloadOption = False,
    workers: WorkersOption = 0,
    batch_size: BatchOption = 256,
    device: DeviceOption = "auto",
    no_cache: NoCacheOption = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Result JSON. Default: RUN/analysis/fid-NNN.json."),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """FID and KID of samples against real images.

    Frechet distance and kernel inception distance; every result names the feature extractor.

    auto picks the Inception the --inception-weights file holds (fid-inception for
    pt_inception-2015-12-05, inception for torchvision's), else a classifier trained on the
    real dataset when it is labelled, else the run's discriminator. FIDs of different
    extractors are on different scales: compare only numbers of the same extractor.
    """
    from dcgan_analysis.analyses import fid_run
    from dcgan_cli.api import console

    run_dir = pick_run(run)
    path = _out_file(run_dir, out, "fid", ".json", force)
    real_images = _load_real(run_dir, dataset, data, category, download, workers)
    report = fid_run(
        run_dir,
        real_images,
        path,
        extractor=extractor,
        inception_weights=inception_weights,
        n=n,
        max_real=max_real,
        seed=seed,
        engine=engine,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        batch_size=batch_size,
        device=device,
        cache=not no_cache,
    )
    if as_json:
        print_json(report)
        return
    console.print(f"extractor: {report['extractor_description']}", highlight=False)
    console.print(
        f"FID ({report['extractor']}) {report['fid']:.3f}  KID {report['kid_mean']:.5f} +- {report['kid_std']:.5f}  "
        f"({report['samples']} samples vs {report['real']} real images of {report['dataset']['dataset']}; "
        f"real half vs half: FID ({report['extractor']}) {report['real_split_fid']:.3f})",
        highlight=False,
    )
    console.print(f"Wrote {path}", highlight=False)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("classify")(classify_command)
    app.command("inspect")(inspect_command)
    app.command("neighbours")(neighbours_command)
    app.command("fid")(fid_command)
