"""`dcgan arithmetic EXPR`: vector arithmetic on z (paper, section 6.3, fig. 7)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import (
    DeviceOption,
    EngineOption,
    ForceOption,
    JsonOption,
    RunOption,
    pick_run,
    refuse_overwrite,
)
from dcgan_cli.hookspecs import hookimpl


def arithmetic_command(
    expression: Annotated[
        str,
        typer.Argument(
            help='Concepts joined by + and -, with numbers and parentheses: "smiling woman - neutral woman + neutral man".'
        ),
    ],
    run: RunOption = None,
    exemplars: Annotated[int, typer.Option(help="Exemplars averaged per concept (the paper: 3; 10 is steadier).")] = 3,
    rescale: Annotated[
        bool | None,
        typer.Option(
            "--rescale/--no-rescale",
            help="Move the result (and each mean) to the prior's typical norm. Default: on for a normal prior, off for uniform.",
            show_default=False,
        ),
    ] = None,
    noise: Annotated[
        float, typer.Option(help="Scale of the uniform noise added to each variant (the paper: 0.25).")
    ] = 0.25,
    variants: Annotated[int, typer.Option(help="Noisy variants of the result (the paper: 8).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the noise, and of the bases of --sweep.")] = 0,
    sweep: Annotated[
        str | None,
        typer.Option(
            metavar="START:STOP:COUNT",
            help='Rows of random samples moved along the expression as a direction (the paper\'s "turn" vector).',
        ),
    ] = None,
    rows: Annotated[int, typer.Option(help="Rows (random samples) of a --sweep.")] = 4,
    engine: EngineOption = "auto",
    device: DeviceOption = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Figure .png (a .json goes beside it). Default: figures/arithmetic-NNN.png in the run.",
        ),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Vector arithmetic on concepts (the paper's figure 7).

    Each concept is the mean z of its exemplars; the result is drawn with noisy variants."""
    from dcgan_cli.core.console import console, note
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.files import atomic_write_json
    from dcgan_cli.core.images import save_image
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.core.prior import seeded_z
    from dcgan_cli.core.runs import RunPaths, next_numbered, read_run_config
    from dcgan_cli.engines.selection import open_engine
    from dcgan_cli.latent.arithmetic import evaluate, parse_sweep, sweep_vectors
    from dcgan_cli.latent.arithmetic_figures import arithmetic_figure, sweep_figure
    from dcgan_cli.latent.concepts import load_concepts
    from dcgan_cli.latent.expressions import parse_expression

    parse_expression(expression)  # a malformed expression fails before anything is loaded
    span = parse_sweep(sweep) if sweep is not None else None
    if variants < 0 or variants > 63 or noise < 0 or exemplars < 1 or not 1 <= rows <= 64:
        raise DcganError("--variants must be 0..63, --noise >= 0, --exemplars >= 1 and --rows 1..64")
    run_dir = pick_run(run)
    model = DCGANConfig.from_dict(read_run_config(run_dir)["model"])
    bank = load_concepts(run_dir, model.nz)
    result = evaluate(
        expression,
        {name: c.z for name, c in bank.items()},
        exemplars=exemplars,
        prior=model.prior,
        rescale=rescale,
        noise=noise,
        variants=variants,
        seed=seed,
    )
    short = [name for name in result.terms if len(bank[name].z) < exemplars]
    if short:
        note(
            f"{', '.join(repr(s) for s in short)} {'has' if len(short) == 1 else 'have'} fewer than {exemplars} exemplars; all of them are used"
        )
    if out is None:
        stem = next_numbered(RunPaths(run_dir).figures, "arithmetic", (".png", ".json"))
        png, meta_path = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".json")
    else:
        if out.suffix.lower() != ".png":
            raise DcganError(f"--out {out}: name a .png file (a .json with the vectors is written beside it)")
        png, meta_path = out, out.with_suffix(".json")
        for path in (png, meta_path):
            refuse_overwrite(path, force)

    record = {"run": str(run_dir), "exemplars": exemplars, "noise": noise, "seed": seed, **result.to_json()}
    with open_engine(engine, run_dir, device=device) as eng:
        record["engine"] = eng.NAME
        if span is None:
            picture, _, _ = arithmetic_figure(result, eng, noise)
        else:
            start, stop, count = span
            bases = seeded_z(seed, rows, model.nz, model.prior)
            frames_z = sweep_vectors(bases, result.raw, start, stop, count)
            images = eng.generate(frames_z.reshape(-1, model.nz))
            frames = images.view(rows, count, *images.shape[1:])
            coefficients = [start + (stop - start) * i / (count - 1) for i in range(count)]
            title = f"samples 0..{rows - 1} of seed {seed} + t \u00b7 ({expression}), mean of {exemplars} exemplars"
            picture = sweep_figure(frames, coefficients, title)
            record["sweep"] = {
                "start": start,
                "stop": stop,
                "count": count,
                "rows": rows,
                "direction": result.raw.tolist(),
            }
    save_image(picture, png)
    atomic_write_json(meta_path, record)
    terms = "  ".join(f"{coef:+g} {name}" for name, coef in result.terms.items())
    message = f"Wrote {png} and {meta_path.name}: {terms}"
    if result.rescaled:
        message += f" (result norm {float(result.raw.norm()):.2f} rescaled to {result.target_norm:.2f})"
    if as_json:
        note(message)
        typer.echo(json.dumps(record))
    else:
        console.print(message, highlight=False, soft_wrap=True)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("arithmetic")(arithmetic_command)
