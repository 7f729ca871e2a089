"""`dcgan concepts add|list|remove|auto`: the run's concept bank, for vector arithmetic."""

import json
from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import ForceOption, RunOption, pick_run
from dcgan_cli.hookspecs import hookimpl

concepts_app = typer.Typer(
    name="concepts",
    help="Named concepts (exemplar z) of a run, for `dcgan arithmetic` and `dcgan walk --through`.",
    no_args_is_help=True,
)


@concepts_app.command("add")
def add_command(
    name: Annotated[
        str, typer.Argument(help='Concept name; several words allowed (quote them), e.g. "smiling woman".')
    ],
    samples: Annotated[
        str, typer.Option("--samples", "-s", help="Sample indices of the sheet, e.g. 3,17,42 (best first).")
    ],
    run: RunOption = None,
    sheet: Annotated[
        str | None, typer.Option(help="Sheet: a number, sheet-NNN, a .png or .z.safetensors path. Default: the newest.")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Name a concept after samples of a sheet saved by `dcgan sample`."""
    from dcgan_cli.core.console import console
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
    indices = parse_indices(samples)
    run_dir = pick_run(run)
    sheet_path = resolve_sheet(run_dir, sheet)
    z, source = sheet_samples(run_dir, sheet_path, indices)
    nz = _nz(run_dir)
    replaced = add_concepts(bank_path(run_dir), [Concept(concept_name, z, source)], nz=nz, force=force)
    verb = "Replaced" if replaced else "Added"
    console.print(
        f"{verb} concept {concept_name!r}: samples {','.join(map(str, indices))} of {sheet_path.name} -> {bank_path(run_dir)}"
    )


def _nz(run_dir: Path) -> int:
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.core.runs import read_run_config

    return DCGANConfig.from_dict(read_run_config(run_dir)["model"]).nz


@concepts_app.command("list")
def list_command(
    run: RunOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (without the vectors).")] = False,
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
) -> None:
    """Remove concepts from the run's bank."""
    from dcgan_cli.core.console import console
    from dcgan_cli.latent.concepts import bank_path, remove_concepts
    from dcgan_cli.latent.expressions import normalize_name

    run_dir = pick_run(run)
    wanted = [normalize_name(n) for n in names]
    remove_concepts(bank_path(run_dir), wanted)
    console.print(f"Removed {', '.join(repr(n) for n in wanted)} from {bank_path(run_dir)}")


@concepts_app.command("auto")
def auto_command(
    run: RunOption = None,
    labeler: Annotated[
        list[str] | None, typer.Option(help="Labeler to use (repeatable). Default: those that know the run's dataset.")
    ] = None,
    n: Annotated[
        int, typer.Option("-n", "--n", help="How many samples to draw and score (more find purer exemplars).")
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
            help="Where the labelled real images are, for labelers that train a classifier. Default: the run's --data."
        ),
    ] = None,
    refit: Annotated[bool, typer.Option("--refit", help="Train a cached labeler classifier again.")] = False,
    workers: Annotated[
        int, typer.Option(help="Processes decoding real images while a labeler's classifier trains.")
    ] = 0,
    engine: Annotated[str, typer.Option(help="Engine: auto, torch, or one from a plugin.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per engine call.")] = 256,
    force: ForceOption = False,
) -> None:
    """Build concepts automatically: draw samples, score them with labelers, keep the best
    exemplars of each concept (e.g. "thick seven", "smiling woman")."""
    from rich.table import Table

    from dcgan_cli.core.console import console, note, progress_task
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.core.runs import read_run_config
    from dcgan_cli.engines.selection import open_engine
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
    with open_engine(engine, run_dir, device=device) as eng:
        context.generate = eng.generate
        for cls in classes:
            lab = cls(context)
            lab.prepare(progress=progress_task)
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
