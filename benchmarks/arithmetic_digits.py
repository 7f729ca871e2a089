"""Vector arithmetic on digits: does "thick seven - seven + one" draw thick ones?

Builds concepts with the digits labeler (as `dcgan concepts auto` does) on a trained digits
run (scikit-learn's 8x8 digits, or real MNIST: then the labeler's classifier is trained on
the run's own labelled digits, and it is also the one that names the results), evaluates expressions in the paper's setting (mean of 3 exemplars, no rescaling) and
in the steadier one (10 exemplars, result rescaled to the prior's typical norm), draws
each result with many noisy variants (uniform, scale 0.25), and measures them: the share
the digit classifier gives the target class, and their stroke thickness against the
target concept's exemplars and against the image of the target concept's mean z.
Repeated over several sample seeds (each builds its own concepts).

    python benchmarks/arithmetic_digits.py                          # the committed fixture run
    python benchmarks/arithmetic_digits.py --run tests/fixtures/mnist5k-run   # real MNIST
    python benchmarks/arithmetic_digits.py --run runs/digits-XYZ --seeds 0,1,2,3 --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.core.runs import read_run_config
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.latent.arithmetic import evaluate
from dcgan_cli.latent.labelers.base import LabelerContext, build_concepts, label_samples
from dcgan_cli.latent.labelers.digits import DIGIT_NAMES, DigitLabeler
from dcgan_cli.latent.labelers.strokes import stroke_thickness

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"paper": {"exemplars": 3, "rescale": False}, "rescaled-10": {"exemplars": 10, "rescale": True}}
EXPRESSIONS = (
    "thick seven - seven + one",
    "thick seven - seven + zero",
    "thin seven - seven + one",
    "slanted seven - seven + one",
)


def _names(expression: str) -> list[str]:
    return [part.strip() for part in expression.replace("+", "-").split("-") if part.strip()]


def target_of(expression: str) -> tuple[str, int]:
    name = expression.rsplit("+", 1)[1].strip()
    return name, DIGIT_NAMES.index(name)


def measure(engine, expression, concepts, setting, noise_seeds, classifier, prior):
    name, digit = target_of(expression)
    images, exemplar_images, mean_images = [], None, None
    for noise_seed in noise_seeds:
        result = evaluate(expression, concepts, prior=prior, seed=noise_seed, **setting)
        images.append(engine.generate(result.variants))
        if exemplar_images is None:
            exemplar_images = engine.generate(result.exemplars[name])
            mean_images = engine.generate(result.means[name][None])
    images = torch.cat(images)
    classes = classifier.predict_proba(images).argmax(axis=1)
    thickness = stroke_thickness(images).numpy()
    exemplar_thickness = float(stroke_thickness(exemplar_images).mean())
    mean_thickness = float(stroke_thickness(mean_images)[0])
    return {
        "share_target": float((classes == digit).mean()),
        "thickness": float(thickness.mean()),
        "target_exemplar_thickness": exemplar_thickness,
        "target_mean_image_thickness": mean_thickness,
        "ratio_to_exemplars": float(thickness.mean() / exemplar_thickness),
        "ratio_to_mean_image": float(thickness.mean() / mean_thickness),
        "images": len(images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "tests" / "fixtures" / "digits-run")
    parser.add_argument("--n", type=int, default=10000, help="samples labelled per seed (as concepts auto -n)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="sample seeds; each builds its own concepts")
    parser.add_argument("--noise-seeds", type=int, default=25, help="noise draws of 8 variants each, per expression")
    parser.add_argument("--expressions", default=";".join(EXPRESSIONS), help="';'-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    config = read_run_config(args.run)
    model = DCGANConfig.from_dict(config["model"])
    train = config.get("train", {})
    dataset = train.get("dataset", "digits")
    expressions = [e.strip() for e in args.expressions.split(";") if e.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / args.run.name  # a copy: the labeler caches its classifier in the run folder
        run.mkdir()
        for name in ("config.json", "generator.safetensors"):
            shutil.copy(args.run / name, run / name)
        with TorchEngine(run, device="cpu") as engine:
            data = Path(train["data"]) if train.get("data") else None
            context = LabelerContext(run, model, dataset, data=data, device="cpu", generate=engine.generate)
            labeler = DigitLabeler(context)
            labeler.prepare()
            classifier = labeler.classifier  # the 8x8 digits' for digits, the run's own for MNIST
            for seed in (int(s) for s in args.seeds.split(",")):
                samples = label_samples(engine, labeler, seed, args.n)
                concepts = {c.name: c.z for c in build_concepts(labeler, samples, keep=10)[0]}
                missing = sorted({n for e in expressions for n in _names(e)} - set(concepts))
                if missing:
                    raise SystemExit(f"seed {seed}: no sample fits {missing}; raise --n")
                for expression in expressions:
                    for setting_name, setting in SETTINGS.items():
                        m = measure(
                            engine, expression, concepts, setting, range(args.noise_seeds), classifier, model.prior
                        )
                        rows.append({"seed": seed, "expression": expression, "setting": setting_name, **m})
    summary = []
    for expression in expressions:
        for setting_name in SETTINGS:
            sel = [r for r in rows if r["expression"] == expression and r["setting"] == setting_name]
            summary.append(
                {
                    "expression": expression,
                    "setting": setting_name,
                    "share_target": float(np.mean([r["share_target"] for r in sel])),
                    "thickness": float(np.mean([r["thickness"] for r in sel])),
                    "ratio_to_exemplars": float(np.mean([r["ratio_to_exemplars"] for r in sel])),
                    "ratio_to_mean_image": float(np.mean([r["ratio_to_mean_image"] for r in sel])),
                    "seeds_with_majority": sum(r["share_target"] > 0.5 for r in sel),
                    "seeds_thicker_than_exemplars": sum(r["ratio_to_exemplars"] > 1 for r in sel),
                    "seeds_thicker_than_mean_image": sum(r["ratio_to_mean_image"] > 1 for r in sel),
                    "seeds": len(sel),
                }
            )
    report = {
        "run": str(args.run),
        "dataset": dataset,
        "classifier_held_out_accuracy": round(classifier.held_out_accuracy, 4),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"run {args.run} ({dataset}); digit classifier held-out accuracy {classifier.held_out_accuracy:.3f}; "
        f"{args.n} samples per seed, seeds {args.seeds}, {args.noise_seeds * 8} variants per expression and seed"
    )
    print(
        f"{'expression':32s} {'setting':12s} {'target share':>12s} {'thickness / exemplars':>22s} {'/ mean image':>13s}  per seed (share, ratio)"
    )
    for s in summary:
        per = "  ".join(
            f"{r['share_target']:.0%},{r['ratio_to_exemplars']:.2f}x"
            for r in rows
            if r["expression"] == s["expression"] and r["setting"] == s["setting"]
        )
        print(
            f"{s['expression']:32s} {s['setting']:12s} {s['share_target']:12.0%} {s['ratio_to_exemplars']:21.3f}x {s['ratio_to_mean_image']:12.3f}x  {per}"
        )
    by = {(s["expression"], s["setting"]): s for s in summary}
    for setting_name in SETTINGS:
        thick, thin = (
            by.get(("thick seven - seven + one", setting_name)),
            by.get(("thin seven - seven + one", setting_name)),
        )
        if thick and thin:
            print(
                f"{setting_name}: ones from 'thick seven - seven + one' have {thick['thickness'] / thin['thickness']:.2f}x "
                "the stroke thickness of ones from 'thin seven - seven + one'"
            )
    claim = by.get(("thick seven - seven + one", "paper")), by.get(("thick seven - seven + one", "rescaled-10"))
    if all(claim):
        held = all(c["seeds_with_majority"] == c["seeds_thicker_than_mean_image"] == c["seeds"] for c in claim)
        print(
            "claim (most results are ones, thicker than the image of the mean 'one' exemplars, in both settings):",
            "PASS" if held else "FAIL",
        )
    print(f"({report['seconds']} s)")


if __name__ == "__main__":
    main()
