"""`dcgan classify` on real MNIST: the paper's protocol, and the new L2-SVM solver against LinearSVC.

Features of the 5,000 real MNIST digits (mnist5k) from a run trained on them: the trained
discriminator (every conv layer max-pooled to 4x4), a randomly initialised one of the same
shape, and the raw pixels. Then the protocol (`dcgan classify`): a stratified split into a
labelled pool, a validation split (chooses C) and a test split, R draws of K labels per
class. On every draw and feature set both solvers run, in alternating order:

  old  scikit-learn's LinearSVC for each C (what `dcgan classify` ran before),
  new  the exact kernel-space Newton solver (dcgan_analysis/svm.py), one pool Gram matrix
       per feature set sliced for each draw, warm starts along the C grid.

Printed: each feature set's test accuracy (mean +- 1.96 std over draws) with old and new,
the share of test predictions on which they agree, how often they chose the same C, the
seconds per draw of each and the ratio old / new. Nothing is tuned here: the protocol's
defaults (C grid 0.01..100, test 50%, validation 20%) as `dcgan classify` has them.

    python benchmarks/classify_mnist.py                                  # K = 10 and 100
    python benchmarks/classify_mnist.py --labels-per-class 100 --draws 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from dcgan_analysis.analyses import PIXELS, RANDOM, TRAINED, _run_seed
from dcgan_analysis.classify import C_GRID, PoolGrams, draw_labelled, fit_l2svm, split_rows, unit_scale
from dcgan_analysis.data import load_real_images
from dcgan_analysis.features import (
    DiscriminatorFeatures,
    FeatureCache,
    PixelFeatures,
    cached_features,
    random_init_seed,
)

ROOT = Path(__file__).resolve().parents[1]
Z95 = 1.96


def features(run: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, str]]:
    real = load_real_images(run)
    trained = DiscriminatorFeatures.trained(run)
    random = DiscriminatorFeatures.random(trained.net.config, random_init_seed(_run_seed(run)))
    extractors = {TRAINED: trained, RANDOM: random, PIXELS: PixelFeatures()}
    extracted = cached_features(FeatureCache(None), real, extractors, device="cpu")
    sets = {name: extracted.features[name].numpy() for name in extractors}
    return sets, extracted.labels.numpy(), {name: e.describe() for name, e in extractors.items()}


def compare(sets, labels, k: int, draws: int, seed: int) -> dict:
    split = split_rows(labels, 0.5, 0.2, seed)
    scaled = {name: unit_scale(np.asarray(x, np.float32), split.pool) for name, x in sets.items()}
    n_draw = k * len(np.unique(labels))
    started = time.perf_counter()
    grams = PoolGrams(scaled, split.pool, n_draw, draws, "auto")
    rows = {
        name: {"old": [], "new": [], "old_c": [], "new_c": [], "old_s": [], "new_s": [], "agree": []} for name in sets
    }
    rng = np.random.default_rng(seed)
    for draw in range(draws):
        chosen = draw_labelled(labels, split.pool, k, rng)
        for name, x in scaled.items():
            args = (x[chosen], labels[chosen], x[split.validation], labels[split.validation], C_GRID)
            fitted = {}
            for solver in ("old", "new") if draw % 2 == 0 else ("new", "old"):  # alternate: load hits both alike
                t0 = time.perf_counter()
                if solver == "old":
                    fitted[solver] = fit_l2svm(*args, solver="liblinear")
                else:
                    fitted[solver] = fit_l2svm(*args, solver="auto", K=grams.of(name, chosen))
                rows[name][f"{solver}_s"].append(time.perf_counter() - t0)
            test_x, test_y = x[split.test], labels[split.test]
            for solver, (model, c, _) in fitted.items():
                rows[name][solver].append(float(model.score(test_x, test_y)))
                rows[name][f"{solver}_c"].append(c)
            rows[name]["agree"].append(
                float((fitted["old"][0].predict(test_x) == fitted["new"][0].predict(test_x)).mean())
            )
    out = {}
    for name, r in rows.items():
        gram_s = grams.seconds.get(name, 0.0)
        old_s, new_s = float(np.mean(r["old_s"])), float(np.mean(r["new_s"])) + gram_s / draws
        out[name] = {
            "dims": int(sets[name].shape[1]),
            "old_accuracy": r["old"],
            "new_accuracy": r["new"],
            "old_mean": float(np.mean(r["old"])),
            "old_ci95": Z95 * float(np.std(r["old"])),
            "new_mean": float(np.mean(r["new"])),
            "new_ci95": Z95 * float(np.std(r["new"])),
            "same_c": int(sum(a == b for a, b in zip(r["old_c"], r["new_c"]))),
            "chosen_c_new": r["new_c"],
            "test_agreement": float(np.mean(r["agree"])),
            "old_seconds_per_draw": old_s,
            "new_seconds_per_draw": new_s,
            "pool_gram_seconds": gram_s,
            "speedup": old_s / new_s,
        }
    return {
        "labels_per_class": k,
        "draws": draws,
        "split": {"pool": len(split.pool), "validation": len(split.validation), "test": len(split.test)},
        "seconds": time.perf_counter() - started,
        "rows": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "tests" / "fixtures" / "mnist5k-run")
    parser.add_argument("--labels-per-class", default="10,100", help="comma-separated K")
    parser.add_argument("--draws", default="10,5", help="draws for each K (old LinearSVC is slow at K = 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    ks = [int(k) for k in args.labels_per_class.split(",")]
    draws = [int(d) for d in args.draws.split(",")]
    draws += [draws[-1]] * (len(ks) - len(draws))
    t0 = time.perf_counter()
    sets, labels, described = features(args.run)
    extract_s = time.perf_counter() - t0
    report = {
        "run": str(args.run),
        "images": len(labels),
        "features": described,
        "extract_seconds": extract_s,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "results": [compare(sets, labels, k, d, args.seed) for k, d in zip(ks, draws)],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"run {args.run}; {len(labels)} real MNIST digits; features in {extract_s:.0f} s; {report['machine']}")
    for name, text in described.items():
        print(f"  {name}: {text}")
    for result in report["results"]:
        print(
            f"\n{result['labels_per_class']} labels per class, {result['draws']} draws "
            f"(pool {result['split']['pool']}, validation {result['split']['validation']}, test {result['split']['test']})"
        )
        print(
            f"{'features':22s} {'dims':>5s} {'old (LinearSVC)':>17s} {'new (kernel)':>17s} {'same C':>7s} "
            f"{'agree':>6s} {'old s/draw':>10s} {'new s/draw':>10s} {'speed-up':>8s}"
        )
        for name, r in result["rows"].items():
            print(
                f"{name:22s} {r['dims']:5d} {r['old_mean']:8.4f} +-{r['old_ci95']:6.4f} "
                f"{r['new_mean']:8.4f} +-{r['new_ci95']:6.4f} {r['same_c']:4d}/{result['draws']:<2d} "
                f"{r['test_agreement']:6.1%} {r['old_seconds_per_draw']:10.2f} {r['new_seconds_per_draw']:10.3f} "
                f"{r['speedup']:7.1f}x"
            )
        total_old = sum(r["old_seconds_per_draw"] for r in result["rows"].values())
        total_new = sum(r["new_seconds_per_draw"] for r in result["rows"].values())
        print(
            f"a whole draw (all three feature sets): old {total_old:.1f} s, new {total_new:.2f} s, "
            f"{total_old / total_new:.1f}x faster"
        )
    print(f"({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
