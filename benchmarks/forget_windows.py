"""Forgetting windows, end to end (paper, section 6.3.1), on the `scenes` dataset.

Trains a DCGAN on `scenes` (32x32 bedrooms) on the CPU for --steps steps (a few minutes on
2 idle cores), lets the `windows` detector annotate 150 samples, runs the forget protocol
(logistic regression on the last hidden block, drop every map with a weight > 0) into a
new run, then draws 500 other samples with the same z from both runs and prints:

- the detected window area before and after (target: down by 70% or more);
- the mean pixel change outside the detected windows (should stay small), and inside;
- how much the pixels in each window box found before differ from the wall around it,
  before and after (a window still drawn, in another colour, keeps its contrast);
- the same figures for a plain reference: as many maps dropped, chosen at random, and for
  `--max-maps` 1, 2, 4 and 8 (only the largest weights).

    python benchmarks/forget_windows.py                         # about 4 minutes on 2 idle cores
    python benchmarks/forget_windows.py --keep runs/bench       # keep both runs
    python benchmarks/forget_windows.py --save-run tests/fixtures/scenes-run   # the tests' fixture
    python benchmarks/forget_windows.py --run runs/bench/scenes  # skip training, reuse a run
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
from dcgan_cli.core.networks import load_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.latent.detectors import boxes_mask
from dcgan_cli.latent.forget import drop_maps, find_object_maps, write_forget_run
from dcgan_cli.latent.forget_boxes import detect_annotations
from dcgan_cli.latent.window_detector import WindowDetector
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.reporters import RichReporter
from dcgan_cli.training.trainer import Trainer

ANNOTATION_SEED, EVAL_SEED, REFERENCE_SEED = 1, 2, 3
MAX_MAPS = (1, 2, 4, 8)  # --max-maps settings measured beside the paper's rule


def window_masks(images: torch.Tensor, detector: WindowDetector) -> np.ndarray:
    """(N, H, W) bool: pixels inside a detected window."""
    size = images.shape[-1]
    return np.stack([boxes_mask(boxes, size, size) for boxes in detector.detect(images)])


def window_contrast(images: torch.Tensor, boxes: list[list[tuple]], ring: int = 2) -> float:
    """How much the pixels inside each box differ from the mean colour of a ring just around it
    (0..1 scale), averaged over boxes. Unlike the colour detector it also sees a window that is
    still drawn, in another colour; a window filled with wall scores like wall."""
    size = images.shape[-1]
    scores = []
    for image, per_image in zip(images.add(1).div(2), boxes):
        for x0, y0, x1, y1 in per_image:
            inner = torch.as_tensor(boxes_mask([(x0, y0, x1, y1)], size, size))
            outer = torch.as_tensor(boxes_mask([(x0 - ring, y0 - ring, x1 + ring, y1 + ring)], size, size)) & ~inner
            if outer.any():
                surround = image[:, outer].mean(dim=1, keepdim=True)
                scores.append(float((image[:, inner] - surround).abs().mean()))
    return float(np.mean(scores)) if scores else 0.0


def compare(before: torch.Tensor, after: torch.Tensor, detector: WindowDetector) -> dict:
    """Window area before and after, and the mean pixel change (0..1 scale) outside and inside windows."""
    boxes_before = detector.detect(before)
    contrast_before, contrast_after = window_contrast(before, boxes_before), window_contrast(after, boxes_before)
    mask_before, mask_after = window_masks(before, detector), window_masks(after, detector)
    windows = mask_before | mask_after
    change = (after - before).abs().mean(dim=1).div(2).numpy()  # (N, H, W), 0..1 per pixel
    area_before, area_after = int(mask_before.sum()), int(mask_after.sum())
    return {
        "window_area_before": area_before,
        "window_area_after": area_after,
        "window_area_reduction": round(1 - area_after / max(area_before, 1), 4),
        "mean_change_outside_windows": round(float(change[~windows].mean()), 4),
        "mean_change_inside_windows": round(float(change[windows].mean()), 4) if windows.any() else None,
        "window_contrast_before": round(contrast_before, 4),
        "window_contrast_after": round(contrast_after, 4),
    }


def train(root: Path, steps: int, ngf: int, seed: int) -> float:
    epochs = -(-steps // 32)  # 4,096 scenes: 32 steps of 128 per epoch
    create_run(
        root,
        DCGANConfig(size=32, channels=3, ngf=ngf, ndf=ngf),
        TrainConfig(dataset="scenes", epochs=epochs, max_steps=steps, seed=seed, device="cpu", checkpoint_every=10**6),
        {"name": "scenes"},
    )
    started = time.perf_counter()
    Trainer(root).run(RichReporter())
    return time.perf_counter() - started


def save_fixture(run: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("config.json", "generator.safetensors", "discriminator.safetensors", "metrics.jsonl"):
        shutil.copy(run / name, dest / name)
    last = sorted((run / "samples").iterdir())[-1]
    (dest / "samples").mkdir()
    shutil.copy(last, dest / "samples" / last.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="training steps of 128 scenes")
    parser.add_argument("--ngf", type=int, default=32, help="generator (and discriminator) width")
    parser.add_argument("--samples", type=int, default=150, help="samples the detector annotates (paper: 150)")
    parser.add_argument("--eval", type=int, default=500, help="samples compared before and after")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--run", type=Path, help="use this trained scenes run instead of training one")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder instead of a temporary one")
    parser.add_argument("--save-run", type=Path, help="also copy the trained run here (config, weights, metrics)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        train_seconds = None
        if args.run is not None:
            run = args.run
        else:
            run = base / "scenes"
            train_seconds = train(run, args.steps, args.ngf, args.seed)
            if args.save_run:
                save_fixture(run, args.save_run)

        detector = WindowDetector()
        netG = load_generator(run)
        started = time.perf_counter()
        annotations = detect_annotations(netG, detector, "windows", ANNOTATION_SEED, args.samples)
        result = find_object_maps(netG, annotations, threshold=0.0, seed=args.seed)
        baked = drop_maps(netG, result.layer, result.dropped)
        new_run = base / "scenes-forgot-windows"
        outcome = write_forget_run(run, new_run, netG, baked, result, annotations, force=True)
        forget_seconds = time.perf_counter() - started

        # 500 held-out samples with the same z through both runs, as any user would draw them.
        z = seeded_z(EVAL_SEED, args.eval, netG.config.nz, netG.config.prior)
        with TorchEngine(run, device="cpu") as engine:
            before = engine.generate(z)
        with TorchEngine(new_run, device="cpu") as engine:
            after = engine.generate(z)
        forgot = compare(before, after, detector)

        # The paper's rule, then the --max-maps K variants (the K largest weights), each against
        # a plain reference: as many maps of the same layer dropped at random.
        rng = np.random.default_rng(REFERENCE_SEED)
        ranked = result.dropped  # largest weight first
        rows = []
        for k in [len(ranked)] + [k for k in MAX_MAPS if k < len(ranked)]:
            random_maps = [int(i) for i in rng.choice(result.maps, k, replace=False)]
            with torch.no_grad():
                chosen = (
                    forgot
                    if k == len(ranked)
                    else compare(before, drop_maps(netG, result.layer, ranked[:k])(z), detector)
                )
                reference = compare(before, drop_maps(netG, result.layer, random_maps)(z), detector)
            rows.append(
                {"max_maps": None if k == len(ranked) else k, "dropped": k, "forget": chosen, "random_drop": reference}
            )
        # Scale for the pixel change: how much two unrelated samples differ outside their windows.
        unrelated = compare(before, before.roll(1, dims=0), detector)["mean_change_outside_windows"]
        windows_per_sample = np.mean([len(b) for b in annotations.boxes])

    summary = {
        "train_steps": args.steps if args.run is None else None,
        "train_seconds": round(train_seconds, 1) if train_seconds is not None else None,
        "forget_seconds": round(forget_seconds, 1),
        "annotated_samples": args.samples,
        "annotated_boxes": annotations.n_boxes,
        "layer": result.layer,
        "maps": result.maps,
        "dropped": len(result.dropped),
        "regression_accuracy": result.accuracy,
        "eval_samples": args.eval,
        "forget": forgot,
        "rows": rows,
        "unrelated_samples_change_outside_windows": unrelated,
        "figure": str(outcome.figure) if args.keep else None,
        "pass": forgot["window_area_reduction"] >= 0.7,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if train_seconds is not None:
            print(f"trained {args.steps} steps on scenes (32x32, ngf={args.ngf}) in {train_seconds:.0f} s")
        print(
            f"detector annotated {args.samples} samples: {annotations.n_boxes} window boxes ({windows_per_sample:.2f} per sample)"
        )
        print(
            f"logistic regression on block {result.layer} ({result.resolution}x{result.resolution}x{result.maps}), "
            f"accuracy {result.accuracy:.3f}: {len(result.dropped)} of {result.maps} maps have a weight > 0 ({forget_seconds:.1f} s)"
        )
        print(f"{args.eval} held-out samples, same z before and after; pixel change on a 0..1 scale:")
        print(
            f"  {'maps dropped':28s} {'window area (px)':>18s} {'down':>7s} {'change outside':>15s} {'inside':>7s}   | random maps: {'down':>6s} {'outside':>8s}"
        )
        for row in rows:
            name = (
                f"weight > 0 ({row['dropped']}, paper)" if row["max_maps"] is None else f"--max-maps {row['max_maps']}"
            )
            f, r = row["forget"], row["random_drop"]
            inside = f["mean_change_inside_windows"]
            print(
                f"  {name:28s} {f['window_area_before']:>8d} -> {f['window_area_after']:<6d} {f['window_area_reduction']:>7.1%} "
                f"{f['mean_change_outside_windows']:>15.3f} {inside if inside is None else f'{inside:7.3f}'}   | "
                f"{'':13s}{r['window_area_reduction']:>6.1%} {r['mean_change_outside_windows']:>8.3f}"
            )
        print(f"  (two unrelated samples differ by {unrelated:.3f} outside their windows)")
        print("window contrast with the wall around it, in the boxes found before (a recoloured window still counts):")
        for row in rows:
            name = (
                f"weight > 0 ({row['dropped']}, paper)" if row["max_maps"] is None else f"--max-maps {row['max_maps']}"
            )
            f, r = row["forget"], row["random_drop"]
            print(
                f"  {name:28s} {f['window_contrast_before']:.3f} -> {f['window_contrast_after']:.3f}"
                f"   | random maps: -> {r['window_contrast_after']:.3f}"
            )
        print(
            "target: window area down by 70% or more with the paper's rule -> "
            + ("PASS" if summary["pass"] else "FAIL")
        )
        if args.keep:
            print(f"figure: {outcome.figure}")
    raise SystemExit(0 if summary["pass"] else 1)


if __name__ == "__main__":
    main()
