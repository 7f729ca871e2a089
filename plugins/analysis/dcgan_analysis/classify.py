"""Few-label classification on fixed features: the paper's L2-SVM protocol (section 5.1).

The labelled images are split once (stratified, seeded) into a training pool, a validation
split and a test split. Each of R draws takes K labelled images per class from the pool,
trains a linear L2-SVM (scikit-learn's LinearSVC: squared hinge loss, L2 penalty) for
each C of a grid, keeps the C that scores best on the validation split, and scores it on
the test split. Every feature set sees the same draws, so differences are paired. The
result is the mean test accuracy +- 1.96 standard deviations over the draws.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from dcgan_cli.api import DcganError

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # for features scaled to unit mean norm (see unit_scale)
Z95 = 1.96


@dataclass
class Split:
    """Row positions (into the feature matrices) of each part."""

    pool: np.ndarray  # labelled draws come from here
    validation: np.ndarray  # chooses C
    test: np.ndarray  # scores the chosen model


def split_rows(labels: np.ndarray, test_fraction: float, val_fraction: float, seed: int) -> Split:
    """A stratified split into pool, validation and test, the same for every feature set."""
    from sklearn.model_selection import train_test_split

    for name, value in (("--test-fraction", test_fraction), ("--val-fraction", val_fraction)):
        if not 0 < value < 1:
            raise DcganError(f"{name} must be between 0 and 1, got {value}")
    if test_fraction + val_fraction >= 0.9:
        raise DcganError(
            "--test-fraction plus --val-fraction leave under 10% of the images for the labelled draws; lower them"
        )
    rows = np.arange(len(labels))
    counts = np.bincount(labels)
    if (counts[counts > 0] < 3).any():
        rare = int(np.flatnonzero((counts > 0) & (counts < 3))[0])
        raise DcganError(f"class {rare} has only {counts[rare]} labelled images; every class needs at least 3 to split")
    try:
        rest, test = train_test_split(rows, test_size=test_fraction, random_state=seed % 2**32, stratify=labels)
        pool, validation = train_test_split(
            rest, test_size=val_fraction / (1 - test_fraction), random_state=(seed + 1) % 2**32, stratify=labels[rest]
        )
    except ValueError as exc:  # too few images of some class for the fractions asked for
        raise DcganError(f"cannot split the labelled images ({exc}); use a larger dataset or other fractions") from None
    return Split(np.sort(pool), np.sort(validation), np.sort(test))


def draw_labelled(labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` rows of each class, drawn from the pool without replacement."""
    rows = []
    for c in np.unique(labels):
        candidates = pool[labels[pool] == c]
        if len(candidates) < per_class:
            raise DcganError(
                f"class {c} has only {len(candidates)} images in the training pool, fewer than "
                f"--labels-per-class {per_class}; ask for fewer labels or lower --test-fraction/--val-fraction"
            )
        rows.append(rng.choice(candidates, per_class, replace=False))
    return np.concatenate(rows)


def fit_l2svm(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, c_grid=C_GRID):
    """The LinearSVC (squared hinge, L2) whose C scores best on the validation split: (model, C, accuracy)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    best = None
    for c in c_grid:
        with warnings.catch_warnings():
            # A few labels in thousands of dimensions are separable; a C that has not
            # fully converged is still a valid candidate and the validation split judges it.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LinearSVC(C=c, loss="squared_hinge", penalty="l2", dual="auto", max_iter=2000, random_state=0).fit(
                x, y
            )
        accuracy = float(model.score(x_val, y_val))
        if best is None or accuracy > best[2]:
            best = (model, float(c), accuracy)
    return best


def unit_scale(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Features divided by their mean vector length over ``rows`` (unlabelled pool images).

    One number per feature set, so one C grid suits features of any magnitude and length
    (a random discriminator's activations are far smaller than a trained one's)."""
    scale = float(np.linalg.norm(features[rows], axis=1).mean())
    return features / scale if scale > 0 else features


@dataclass
class FeatureResult:
    name: str  # "trained discriminator", "random discriminator", "raw pixels"
    description: str  # exactly which features: weights, layers, pooling
    dims: int
    accuracies: list[float] = field(default_factory=list)  # one test accuracy per draw
    chosen_c: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))

    @property
    def ci95(self) -> float:
        return Z95 * self.std

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": self.mean, "std": self.std, "ci95": self.ci95}


@dataclass
class ClassifyResult:
    rows: list[FeatureResult]
    labels_per_class: int
    draws: int
    seed: int
    classes: list[str]
    split: dict[str, int]
    c_grid: list[float]

    def row(self, name: str) -> FeatureResult:
        return next(r for r in self.rows if r.name == name)

    def comparison(self, better: str, baseline: str) -> dict:
        """How ``better`` compares with ``baseline``: paired differences and whether the 1.96-std intervals separate."""
        a, b = self.row(better), self.row(baseline)
        diff = np.asarray(a.accuracies) - np.asarray(b.accuracies)
        return {
            "features": better,
            "baseline": baseline,
            "mean_difference": float(diff.mean()),
            "ci95_difference": float(Z95 * diff.std()),
            "wins": int((diff > 0).sum()),
            "draws": len(diff),
            "intervals_separate": bool(a.mean - a.ci95 > b.mean + b.ci95),
        }

    def to_dict(self) -> dict:
        return {
            "labels_per_class": self.labels_per_class,
            "draws": self.draws,
            "seed": self.seed,
            "classes": self.classes,
            "split": self.split,
            "c_grid": self.c_grid,
            "classifier": "sklearn.svm.LinearSVC(loss='squared_hinge', penalty='l2'), C chosen on the validation split",
            "rows": [r.to_dict() for r in self.rows],
        }


def run_protocol(
    feature_sets: dict[str, tuple[str, np.ndarray]],
    labels: np.ndarray,
    *,
    labels_per_class: int,
    draws: int,
    seed: int = 0,
    test_fraction: float = 0.5,
    val_fraction: float = 0.2,
    c_grid=C_GRID,
    classes: list[str] | None = None,
    advance: Callable[[int], None] | None = None,
) -> ClassifyResult:
    """Run the protocol on each feature set ({name: (description, (N, d) features)}), same draws for all."""
    if labels_per_class < 1:
        raise DcganError(f"--labels-per-class must be at least 1, got {labels_per_class}")
    if draws < 1:
        raise DcganError(f"--draws must be at least 1, got {draws}")
    labels = np.asarray(labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise DcganError("the labelled images hold fewer than 2 classes; classification needs at least 2")
    split = split_rows(labels, test_fraction, val_fraction, seed)
    scaled = {name: unit_scale(np.asarray(x, dtype=np.float32), split.pool) for name, (_, x) in feature_sets.items()}
    results = [FeatureResult(name, description, int(x.shape[1])) for name, (description, x) in feature_sets.items()]
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        chosen = draw_labelled(labels, split.pool, labels_per_class, rng)
        for result in results:
            x = scaled[result.name]
            model, c, _ = fit_l2svm(x[chosen], labels[chosen], x[split.validation], labels[split.validation], c_grid)
            result.accuracies.append(float(model.score(x[split.test], labels[split.test])))
            result.chosen_c.append(c)
        if advance:
            advance(1)
    return ClassifyResult(
        results,
        labels_per_class,
        draws,
        seed,
        classes or [str(c) for c in np.unique(labels)],
        {"pool": len(split.pool), "validation": len(split.validation), "test": len(split.test)},
        [float(c) for c in c_grid],
    )
