"""`dcgan concepts add|list|remove|auto`: the run's concept bank, for vector arithmetic."""

import json
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
)
from dcgan_cli.commands.invert import EncoderOption, LossOption, StepsOption, say_notes
from dcgan_cli.hookspecs import hookimpl

concepts_app = typer.Typer(
    name="concepts",
    help="Named concepts of a run, for arithmetic and walks. A concept is the z of its exemplars; dcgan arithmetic and dcgan walk --through use them.",
    no_args_is_help=True,
)


@concepts_app.command("add")
def add_command(
    name: Annotated[
        str, typer.Argument(help='Concept name; several words allowed (quote them), e.g. "smiling woman".')
    ],
    more_images: Annotated[
        list[Path] | None,
        typer.Argument(help="More image files after --image: --image a.jpg b.jpg c.jpg.", show_default=False),
    ] = None,
    samples: Annotated[
        str | None,
        typer.Option(
            "--samples", "-s", metavar="I,J,...", help="Sample indices of the sheet, e.g. 3,17,42 (best first)."
        ),
    ] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            metavar="IMAGE",
            help="Image files to invert (best first): their z become the exemplars (see `dcgan invert`).",
            show_default=False,
        ),
    ] = None,
    run: RunOption = None,
    sheet: Annotated[
        str | None,
        typer.Option(
            metavar="SHEET", help="Sheet: a number, sheet-NNN, a .png or .z.safetensors path. Default: the newest."
        ),
    ] = None,
    steps: StepsOption = 300,
    loss: LossOption = "both",
    encoder: EncoderOption = None,
    device: DeviceOption = "auto",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Name a concept after samples of a sheet saved by `dcgan sample`, or after your own images."""
    from dcgan_cli.core.console import console
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.latent.concepts import (
        Concept,
        add_concepts,
        bank_path,
        check_name,
        parse_indices,
        resolve_sheet,
        sheet_samples,
    )

    concept_name = check_name(name)
    images = [*(image or []), *(more_images or [])]
    if more_images and not image:
        raise DcganError(
            f"unexpected argument {str(more_images[0])!r}: quote a concept name of several words "
            '(e.g. "thick seven"), and name image files after --image'
        )
    if (samples is None) == (image is None):
        raise DcganError(
            "say where the exemplars come from: --samples 3,17,42 (a sheet of `dcgan sample`) "
            "or --image PATH... (your own images), one of the two"
        )
    if image is not None:
        from dcgan_cli.latent.invert import InvertSettings

        settings = InvertSettings(steps=steps, loss=loss, encoder=encoder).check()
        run_dir = pick_run(run)
        _add_images(
            run_dir, concept_name, images, settings, device=device, nz=_nz(run_dir), force=force, as_json=as_json
        )
        return
    run_dir = pick_run(run)
    nz = _nz(run_dir)
    indices = parse_indices(samples)
    sheet_path = resolve_sheet(run_dir, sheet)
    z, source = sheet_samples(run_dir, sheet_path, indices)
    replaced = add_concepts(bank_path(run_dir), [Concept(concept_name, z, source)], nz=nz, force=force)
    verb = "Replaced" if replaced else "Added"
    if as_json:
        print_json(
            dict(concept=concept_name, replaced=replaced, samples=indices, sheet=sheet_path, bank=bank_path(run_dir))
        )
        return
    console.print(
        f"{verb} concept {concept_name!r}: samples {','.join(map(str, indices))} of {sheet_path.name} -> {bank_path(run_dir)}"
    )


def _add_images(run_dir: Path, name: str, images: list[Path], settings, *, device, nz, force, as_json) -> None:
    """Invert the images (all of them, or the bank is left as it was) and store their z as exemplars."""
    from dcgan_cli.core.console import console, progress_task
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.runs import RunPaths, next_numbered
    from dcgan_cli.engines.sampling import z_path_for
    from dcgan_cli.latent.concepts import Concept, add_concepts, bank_path, image_source, read_bank
    from dcgan_cli.latent.invert_run import invert_files, write_inversion

    if name in read_bank(bank_path(run_dir)) and not force:  # before minutes of inverting
        raise DcganError(f"the bank already has {name!r}; pass --force to replace, or `dcgan concepts remove` first")
    prepared, inversion = invert_files(run_dir, images, settings, device=device, progress=progress_task)
    stem = next_numbered(RunPaths(run_dir).figures, "invert", (".png", ".z.safetensors", ".json"))
    png = stem.with_name(stem.name + ".png")
    record = write_inversion(run_dir, prepared, inversion, png, z_path_for(png), png.with_suffix(".json"))
    say_notes(prepared, inversion)
    concept = Concept(name, inversion.z, image_source(run_dir, record, png))
    replaced = add_concepts(bank_path(run_dir), [concept], nz=nz, force=force)
    if as_json:
        print_json(dict(concept=name, replaced=replaced, images=record["images"], figure=png, bank=bank_path(run_dir)))
        return
    errors = ", ".join(f"{row['error']:.3f}" for row in record["images"])
    console.print(
        f"{'Replaced' if replaced else 'Added'} concept {name!r}: {len(images)} image(s) inverted "
        f"(error {errors}; see {png}) -> {bank_path(run_dir)}",
        highlight=False,
        soft_wrap=True,
    )


def _nz(run_dir: Path) -> int:
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.core.runs import read_run_config

    return DCGANConfig.from_dict(read_run_config(run_dir)["model"]).nz


@concepts_app.command("list")
def list_command(
    run: RunOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the run's concepts with their exemplars' origin."""
    from rich.table import Table

    from dcgan_cli.core.console import console, note
    from dcgan_cli.latent.concepts import bank_path, describe_source, read_bank

    run_dir = pick_run(run)
    path = bank_path(run_dir)
    bank = read_bank(path)
    if as_json:
        rows = [
            {"name": c.name, "exemplars": len(c.z), "source": c.source, "scores": c.scores, "created": c.created}
            for c in bank.values()
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not bank:
        note(
            f"No concepts in {path} yet: `dcgan concepts auto` builds them from labelled samples, "
            "`dcgan concepts add NAME --samples 3,17,42` from a sheet."
        )
        return
    table = Table("name", "exemplars", "from", title=str(path))
    for concept in sorted(bank.values(), key=lambda c: c.name):
        table.add_row(concept.name, str(len(concept.z)), describe_source(concept))
    console.print(table)


@concepts_app.command("remove")
def remove_command(
    names: Annotated[list[str], typer.Argument(help="Concept names to remove (quote names of several words).")],
    run: RunOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove concepts from the run's bank."""
    from dcgan_cli.core.console import console
    from dcgan_cli.latent.concepts import bank_path, remove_concepts
    from dcgan_cli.latent.expressions import normalize_name

    run_dir = pick_run(run)
    wanted = [normalize_name(n) for n in names]
    remove_concepts(bank_path(run_dir), wanted)
    if as_json:
        print_json(dict(removed=wanted, bank=bank_path(run_dir)))
        return
    console.print(f"Removed {', '.join(repr(n) for n in wanted)} from {bank_path(run_dir)}")


@concepts_app.command("auto")
def auto_command(
    run: RunOption = None,
    labeler: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Labeler to use (repeatable). Default: those that know the run's dataset."),
    ] = None,
    n: Annotated[
        int,
        typer.Option(
            "-n", "--num-samples", metavar="N", help="How many samples to draw and score (more find purer exemplars)."
        ),
    ] = 10000,
    keep: Annotated[
        int, typer.Option(help="Exemplars kept per concept, best first (`arithmetic --exemplars` uses the first ones).")
    ] = 10,
    seed: Annotated[
        int, typer.Option(help="Seed of the samples: exemplar i is sample i of `dcgan sample --seed`.")
    ] = 0,
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Where the labelled real images are, for labelers that train a classifier. Default: the run's --data.",
        ),
    ] = None,
    refit: Annotated[bool, typer.Option("--refit", help="Train a cached labeler classifier again.")] = False,
    workers: Annotated[
        int, typer.Option(help="Processes decoding real images while a labeler's classifier trains.")
    ] = 0,
    engine: EngineOption = "auto",
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 256,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Build concepts from samples that labelers score.

    Draws samples, scores them with labelers and keeps the best exemplars of each concept
    (e.g. "thick seven", "smiling woman")."""
    from rich.table import Table

    from dcgan_cli.core.console import console, note, progress_task
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.core.runs import read_run_config
    from dcgan_cli.engines.selection import LazyEngine
    from dcgan_cli.latent.concepts import add_concepts, bank_path, read_bank
    from dcgan_cli.latent.labelers.base import (
        LabelerContext,
        build_concepts,
        choose_labelers,
        label_samples,
    )

    if n < 1 or keep < 1 or batch_size < 1:
        raise DcganError("-n, --keep and --batch-size must be at least 1")
    run_dir = pick_run(run)
    config = read_run_config(run_dir)
    train = config.get("train", {})
    dataset = train.get("dataset") or config.get("dataset", {}).get("name", "")
    classes = choose_labelers(labeler, dataset)
    path = bank_path(run_dir)
    existing = read_bank(path)
    model = DCGANConfig.from_dict(config["model"])
    context = LabelerContext(
        run_dir=run_dir,
        model=model,
        dataset=dataset,
        data=data or (Path(train["data"]) if train.get("data") else None),
        device=device,
        refit=refit,
        options={"workers": workers, "split": train.get("split"), "category": train.get("category")},
    )
    made, rows = [], []
    # The engine opens when first used, after a labeler that cannot learn this run's labels has failed.
    with LazyEngine(engine, run_dir, device=device, batch_size=batch_size) as generator_engine:
        context.generate = lambda z: generator_engine.get().generate(z)
        for cls in classes:
            lab = cls(context)
            lab.prepare(progress=progress_task)
            eng = generator_engine.get()
            with progress_task(f"labelling samples ({lab.NAME})", n) as advance:
                samples = label_samples(eng, lab, seed, n, batch_size, advance)
            concepts, report = build_concepts(lab, samples, keep)
            made += concepts
            rows += [(lab.NAME, r) for r in report]
            facts = ", ".join(f"{k} {v}" for k, v in lab.describe().items() if not isinstance(v, dict))
            if facts:
                note(f"labeler {lab.NAME}: {facts}")
    clash = [c.name for c in made if c.name in existing]
    if clash and not force:
        raise DcganError(
            f"the bank {path} already has {len(clash)} of these concepts ({', '.join(repr(x) for x in clash[:5])}"
            f"{' ...' if len(clash) > 5 else ''}); pass --force to replace them"
        )
    add_concepts(path, made, nz=model.nz, force=force)
    if as_json:
        print_json(dict(bank=path, samples=n, seed=seed, concepts=[{"labeler": name, **row} for name, row in rows]))
        return
    table = Table(
        "concept", "labeler", "samples fitting", "kept", title=f"{len(made)} concepts from {n} samples (seed {seed})"
    )
    for name, row in rows:
        table.add_row(row["name"], name, str(row["fitting"]), str(row["kept"]) if row["kept"] else "[red]none[/]")
    console.print(table)
    missing = [row["name"] for _, row in rows if not row["kept"]]
    if missing:
        note(f"No sample fits {', '.join(repr(m) for m in missing)}; draw more with -n to find some.")
    console.print(f'Wrote {len(made)} concepts to {path}; try `dcgan arithmetic "{_example(made)}"`')


def _example(concepts) -> str:
    names = {c.name for c in concepts}
    for a, b, c in (("thick seven", "seven", "one"), ("smiling woman", "neutral woman", "neutral man")):
        if {a, b, c} <= names:
            return f"{a} - {b} + {c}"
    listed = [c.name for c in concepts][:3]
    return " + ".join(listed) if listed else "NAME"


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.add_typer(concepts_app, name="concepts")
