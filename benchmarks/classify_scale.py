"""What `dcgan classify` costs at CIFAR-10's size: 28,672 features per image, as in the paper.

CIFAR-10 is not on this machine, and random features would mislead (their Gram matrix is
nearly diagonal, which makes the SVM trivial), so the features have CIFAR-10's shape and
real images' structure: a 64x64 RGB discriminator with the paper's width (ndf=128) and
initialisation, its layers 2-4 (256x16x16, 512x8x8, 1024x4x4) max-pooled to 4x4 and
concatenated (16 x 1,792 = 28,672 features, the paper's count), of real MNIST digits (the
bundled 5,000) at 64x64 in 3 channels, each randomly shifted by up to 8 pixels and contrast
jittered so every image is distinct. Digits separate more easily than CIFAR photos, so the
Newton step counts here are a lower bound.

For each K labels per class it times one draw of one feature set with the new solver: the
Gram matrix X X^T (float32, the one O(n^2 d) step), the Newton path over the 5 C values and
10 classes, and scoring every C on the validation split. With --old-epochs it also times
LinearSVC's dual coordinate descent for a few epochs at C = 100 (it needed hundreds to
2,000 epochs at large C on MNIST features), to extrapolate the old cost.
Then: the full protocol (20 draws x 3 feature sets) at that K, estimated from the figures.

    python benchmarks/classify_scale.py                       # K = 100 and 400
    python benchmarks/classify_scale.py --per-class 100,400,1000 --old-epochs 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from dcgan_analysis import svm
from dcgan_analysis.classify import C_GRID
from dcgan_cli.core.model import DCGANConfig, Discriminator, init_weights
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset

LAYERS = (1, 2, 3)  # 0-based blocks 2-4 of the 64x64 discriminator: 28,672 features with ndf=128


def cifar_shaped_features(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(10 per_class, 28672) float32 features and labels (class by class) of jittered real digits
    through a random ndf=128 D."""
    real, _ = load_dataset("mnist5k", DataOptions(size=48, channels=1))
    base = torch.stack([real[i][0] for i in range(len(real))])  # (5000, 1, 48, 48)
    labels = real.targets.numpy()
    net = Discriminator(DCGANConfig(size=64, channels=3, ndf=128))
    init_weights(net, torch.Generator().manual_seed(seed))
    net.eval()
    g = torch.Generator().manual_seed(seed + 1)
    by_class = [np.flatnonzero(labels == c) for c in range(10)]
    picks = [by_class[c][torch.randint(0, len(by_class[c]), (per_class,), generator=g).numpy()] for c in range(10)]
    rows = torch.from_numpy(np.concatenate(picks))
    n = len(rows)
    out = np.empty((n, 28672), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, n, 200):
            idx = rows[lo : lo + 200]
            canvas = -torch.ones(len(idx), 1, 64, 64)
            shifts = torch.randint(0, 17, (len(idx), 2), generator=g)
            contrast = 0.6 + 0.4 * torch.rand(len(idx), 1, 1, 1, generator=g)
            for j, (dy, dx) in enumerate(shifts.tolist()):
                canvas[j, :, dy : dy + 48, dx : dx + 48] = base[idx[j]]
            images = (canvas * contrast).expand(-1, 3, -1, -1)
            maps = net.features(images)
            out[lo : lo + len(idx)] = torch.cat([F.adaptive_max_pool2d(maps[i], 4).flatten(1) for i in LAYERS], 1)
    return out, labels[rows.numpy()]


class Clock:
    """Wall-clock and this process's CPU seconds of a block: on a shared machine the CPU time is
    what the work costs (single-threaded, it is the wall-clock time of a quiet machine)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def time_draw(x, y, x_val, y_val) -> dict:
    with Clock() as gram:
        K = svm.gram(x)
    with Clock() as path:
        models = svm.fit_path(x, y, C_GRID, K)
    with Clock() as scoring:
        W = np.concatenate([m.coef_ for m in models])
        scores = x_val @ W.T + np.concatenate([m.intercept_ for m in models])
        accuracies = [
            float((svm.predict_from_scores(m.classes_, scores[:, i * 10 : (i + 1) * 10]) == y_val).mean())
            for i, m in enumerate(models)
        ]
    return {
        "gram_s": gram.wall,
        "path_s": path.wall,
        "score_s": scoring.wall,
        "gram_cpu_s": gram.cpu,
        "path_cpu_s": path.cpu,
        "score_cpu_s": scoring.cpu,
        "val_accuracy_by_c": accuracies,
    }


def time_old_epochs(x, y, epochs: int) -> tuple[float, float]:
    """(wall, CPU) seconds per epoch of LinearSVC's dual coordinate descent at C = 100 (its slowest, most used C)."""
    from sklearn.svm import LinearSVC

    with warnings.catch_warnings(), Clock() as clock:
        warnings.simplefilter("ignore")
        LinearSVC(C=100.0, dual=True, max_iter=epochs, tol=1e-12).fit(x, y)
    return clock.wall / epochs, clock.cpu / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", default="100,400")
    parser.add_argument("--validation", type=int, default=2000)
    parser.add_argument("--old-epochs", type=int, default=0, help="also time this many LinearSVC epochs (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (1: CPU time = quiet wall time)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits  # after scipy.linalg (svm imports it): covers its OpenBLAS too

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)

    ks = [int(k) for k in args.per_class.split(",")]
    started = time.perf_counter()
    val_per_class = args.validation // 10
    x, y = cifar_shaped_features(max(ks) + val_per_class)  # class by class: the first max(ks) of each train
    features_s = time.perf_counter() - started
    first = np.concatenate(
        [np.arange(c * (max(ks) + val_per_class), c * (max(ks) + val_per_class) + max(ks)) for c in range(10)]
    )
    is_val = np.ones(len(x), dtype=bool)
    is_val[first] = False
    pool, pool_y = x[first], y[first]
    scale = float(np.linalg.norm(pool, axis=1).mean())  # unit mean norm, as `dcgan classify` scales
    pool, x_val, y_val = pool / scale, x[is_val] / scale, y[is_val]
    report = {
        "features": {"dims": int(x.shape[1]), "images": len(x), "seconds": features_s},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "rows": [],
    }
    rng = np.random.default_rng(0)
    for k in ks:
        chosen = np.concatenate([rng.choice(np.flatnonzero(pool_y == c), k, replace=False) for c in range(10)])
        row = {"per_class": k, "n": len(chosen), **time_draw(pool[chosen], pool_y[chosen], x_val, y_val)}
        row["draw_s"] = row["gram_s"] + row["path_s"] + row["score_s"]
        row["draw_cpu_s"] = row["gram_cpu_s"] + row["path_cpu_s"] + row["score_cpu_s"]
        row["full_protocol_cpu_min"] = 20 * 3 * row["draw_cpu_s"] / 60  # 20 draws x 3 feature sets, a Gram per draw
        if args.old_epochs:
            row["old_epoch_s"], row["old_epoch_cpu_s"] = time_old_epochs(pool[chosen], pool_y[chosen], args.old_epochs)
        report["rows"].append(row)
    report["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['features']['images']} CIFAR-shaped images x {report['features']['dims']} features in "
        f"{features_s:.0f} s; {report['machine']}"
    )
    print(
        f"{'K/class':>7s} {'n':>6s} {'Gram s':>12s} {'Newton path s':>14s} {'val s':>10s} {'one draw s':>12s} "
        f"{'20 draws x 3 sets':>18s}   val accuracy by C      (CPU seconds, wall in brackets)"
    )
    for r in report["rows"]:
        extra = (
            f"   old: {r['old_epoch_cpu_s']:.1f} ({r['old_epoch_s']:.1f}) s per LinearSVC epoch at C=100"
            if "old_epoch_s" in r
            else ""
        )
        print(
            f"{r['per_class']:7d} {r['n']:6d} {r['gram_cpu_s']:5.1f} ({r['gram_s']:4.0f}) {r['path_cpu_s']:6.1f} ({r['path_s']:4.0f}) "
            f"{r['score_cpu_s']:4.1f} ({r['score_s']:3.0f}) {r['draw_cpu_s']:5.1f} ({r['draw_s']:4.0f}) "
            f"{r['full_protocol_cpu_min']:15.0f} min   {' '.join(f'{a:.2f}' for a in r['val_accuracy_by_c'])}{extra}"
        )
    print(f"({report['seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()
