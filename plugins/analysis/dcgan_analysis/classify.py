"""Few-label classification on fixed features: the paper's L2-SVM protocol (section 5.1).

The labelled images are split once (stratified, seeded) into a training pool, a validation
split and a test split. Each of R draws takes K labelled images per class from the pool,
trains a linear L2-SVM (squared hinge loss, L2 penalty: scikit-learn's LinearSVC problem)
for each C of a grid, keeps the C that scores best on the validation split, and scores it
on the test split. Every feature set sees the same draws, so differences are paired. The
result is the mean test accuracy +- 1.96 standard deviations over the draws.

Few labels in many dimensions (n < d, the protocol's regime) are solved exactly in the span
of the training rows (svm.py: one Gram matrix per feature set, sliced for every draw, a
Newton path warm-started along the C grid); where samples outnumber features, LinearSVC
solves it in the primal. Both give LinearSVC's classifier (tests/test_svm.py).
"""

from __future__ import annotations

import time
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


SOLVERS = ("auto", "kernel", "liblinear")


def fit_l2svm(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    c_grid=C_GRID,
    *,
    solver: str = "auto",
    K: np.ndarray | None = None,
):
    """The L2-SVM whose C scores best on the validation split: (model, C, accuracy); ties go to the first C.

    ``solver``: "kernel" (svm.py, exact, for n < d), "liblinear" (LinearSVC, the reference),
    or "auto": kernel when there are fewer samples than features. ``K`` is X X^T + 1 if known.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, not {solver!r}")
    if solver == "liblinear" or (solver == "auto" and len(x) >= x.shape[1]):
        return fit_l2svm_liblinear(x, y, x_val, y_val, c_grid)
    from dcgan_analysis.svm import fit_path, predict_from_scores

    models = fit_path(x, y, c_grid, K)
    # Every C's validation scores in one product (x_val can be the largest matrix here).
    W = np.concatenate([m.coef_ for m in models])
    scores = np.asarray(x_val, dtype=np.float32) @ W.T + np.concatenate([m.intercept_ for m in models])
    k = len(models[0].intercept_)
    best = None
    for i, (c, model) in enumerate(zip(c_grid, models)):
        predicted = predict_from_scores(model.classes_, scores[:, i * k : (i + 1) * k])
        accuracy = float((predicted == np.asarray(y_val)).mean())
        if best is None or accuracy > best[2]:
            best = (model, float(c), accuracy)
    return best


def fit_l2svm_liblinear(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, c_grid=C_GRID):
    """The same choice with scikit-learn's LinearSVC for each C (dual or primal as it picks): the reference."""
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
    svm_seconds: float = 0.0  # fitting and choosing C, over every draw (with the Gram matrix)

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
    solver: str = "auto"

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
            "classifier": (
                "L2-SVM (LinearSVC's problem: squared hinge, L2 penalty), C chosen on the validation split; "
                "solved exactly in the span of the samples when they are fewer than the features, "
                "by sklearn.svm.LinearSVC otherwise"
                if self.solver == "auto"
                else f"L2-SVM (LinearSVC's problem), solver {self.solver}, C chosen on the validation split"
            ),
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
    solver: str = "auto",
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
    n_draw = labels_per_class * len(np.unique(labels))
    grams = PoolGrams(scaled, split.pool, n_draw, draws, solver)
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        chosen = draw_labelled(labels, split.pool, labels_per_class, rng)
        for result in results:
            x = scaled[result.name]
            started = time.perf_counter()
            model, c, _ = fit_l2svm(
                x[chosen],
                labels[chosen],
                x[split.validation],
                labels[split.validation],
                c_grid,
                solver=solver,
                K=grams.of(result.name, chosen),
            )
            result.svm_seconds += time.perf_counter() - started
            result.accuracies.append(float(model.score(x[split.test], labels[split.test])))
            result.chosen_c.append(c)
        if advance:
            advance(1)
    for result in results:
        result.svm_seconds = round(result.svm_seconds + grams.seconds.get(result.name, 0.0), 3)
    return ClassifyResult(
        results,
        labels_per_class,
        draws,
        seed,
        classes or [str(c) for c in np.unique(labels)],
        {"pool": len(split.pool), "validation": len(split.validation), "test": len(split.test)},
        [float(c) for c in c_grid],
        solver,
    )


class PoolGrams:
    """The Gram matrix of the whole labelled pool, per feature set, when slicing it beats one per draw.

    A pool Gram costs pool^2 d once, per-draw Grams draws n^2 d; it is kept in float32
    (half the memory) and sliced for each draw. Computed lazily, timed per feature set.
    """

    MAX_POOL = 20_000  # 1.6 GB of float32 at most

    def __init__(self, scaled: dict[str, np.ndarray], pool: np.ndarray, n_draw: int, draws: int, solver: str):
        self.scaled, self.pool = scaled, pool
        self.position = np.full(max(int(pool.max()) + 1, 1) if len(pool) else 1, -1)
        self.position[pool] = np.arange(len(pool))
        self.enabled = {
            name: solver != "liblinear"
            and n_draw < x.shape[1]
            and len(pool) <= self.MAX_POOL
            and len(pool) ** 2 < draws * n_draw**2
            for name, x in scaled.items()
        }
        self.grams: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {}

    def of(self, name: str, rows: np.ndarray) -> np.ndarray | None:
        """X X^T + 1 of the feature set's ``rows`` (pool rows), float64; None when not kept."""
        if not self.enabled[name]:
            return None
        if name not in self.grams:
            import torch

            started = time.perf_counter()
            x = torch.from_numpy(np.ascontiguousarray(self.scaled[name][self.pool]))
            self.grams[name] = (x @ x.T).numpy()
            self.seconds[name] = time.perf_counter() - started
        at = self.position[rows]
        return self.grams[name][np.ix_(at, at)].astype(np.float64) + 1.0
