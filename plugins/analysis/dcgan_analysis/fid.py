"""Frechet distance and KID between generated and real images, with a pluggable feature extractor.

FID (Heusel et al. 2017) fits a Gaussian to each set's features and measures
    ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
KID (Binkowski et al. 2018) is the unbiased squared MMD with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets; unlike FID it has no bias that
depends on the number of images.

Both numbers mean something only together with the features they were computed on, so
every result names its extractor, and numbers from different extractors are never comparable:
- ``fid-inception``: the standard FID network (the TF Inception of 2015-12-05 that pytorch-fid
  and torchmetrics use) with the weights file the user provides: the only one whose numbers
  compare with published FIDs (inception.py);
- ``inception``: torchvision's InceptionV3 with its ImageNet weights from the user's file;
- ``classifier``: a small convolutional classifier trained on the real dataset's labels
  (its 128-d penultimate layer), cached in the run;
- ``discriminator``: the run's own discriminator (its last conv layer, averaged over space).
Other packages add extractors through the ``dcgan_analysis.extractors`` entry-point group.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan_analysis.data import (
    RealImages,
    dataset_targets,
    iterate_batches,
    run_model_config,
    seeded_subset,
)
from dcgan_analysis.features import (
    DiscriminatorFeatures,
    FeatureExtractor,
    NetworkFeatures,
)
from dcgan_analysis.inception import FidInceptionFeatures, InceptionFeatures, weights_kind
from dcgan_cli.api import (
    DCGANConfig,
    DcganError,
    Discriminator,
    derive_seed,
    note,
    progress_task,
    read_safetensors,
    read_state_dict,
    resolve_device,
    write_safetensors,
)

EXTRACTOR_ENTRY_POINTS = "dcgan_analysis.extractors"


# ---------------------------------------------------------------------------- the distances


def _moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DcganError(f"a Frechet distance needs at least 2 feature vectors per set, got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of features (n_a, d) and (n_b, d)."""
    from scipy.linalg import eigh

    mu1, s1 = _moments(a)
    mu2, s2 = _moments(b)
    # Tr((S1 S2)^(1/2)) = sum of sqrt(eigenvalues of S1^(1/2) S2 S1^(1/2)), a symmetric PSD
    # matrix: eigh stays real and exact where sqrtm of the non-symmetric S1 S2 may not.
    w, v = eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    trace_root = np.sqrt(np.clip(eigh(middle, eigvals_only=True), 0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_root)
    return max(value, 0.0)


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: (mean, std) over ``subsets`` random subsets of the unbiased MMD^2, cubic polynomial kernel."""
    x_all = np.asarray(a, dtype=np.float64)
    y_all = np.asarray(b, dtype=np.float64)
    m = min(subset_size, len(x_all), len(y_all))
    if m < 2:
        raise DcganError("KID needs at least 2 images in each set")
    d = x_all.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(within - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


# ---------------------------------------------------------------------------- extractors


@dataclass
class ExtractorContext:
    """What an extractor factory may use to build itself."""

    run_dir: Path
    real: RealImages
    device: str = "auto"
    inception_weights: Path | None = None
    cache_dir: Path | None = None  # where trained helper models may be kept (None: do not keep)
    seed: int = 0
    inception_state: dict[str, torch.Tensor] | None = None  # the weights file, once read (auto reads it)


class DatasetClassifier(nn.Module):
    """A small classifier for the real dataset: the paper's strided conv stack, then 128 hidden units.

    (N, C, S, S) -> conv blocks -> (N, 8*width, 4, 4) -> flatten -> 128 (the features) -> classes.
    """

    def __init__(self, size: int, channels: int, classes: int, width: int = 32, hidden: int = 128):
        super().__init__()
        self.trunk = Discriminator(DCGANConfig(size=size, channels=channels, ndf=width))
        last = width * 2 ** (self.trunk.config.n_layers - 1)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(last * 16, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk.features(x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class ClassifierSetup:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    width: int = 32
    heldout_fraction: float = 0.1


def train_classifier(
    real: RealImages, setup: ClassifierSetup, seed: int, device: torch.device
) -> tuple[DatasetClassifier, float, int]:
    """Train a DatasetClassifier on the labelled real images: (model, held-out accuracy, classes)."""
    targets = dataset_targets(real.dataset)
    if targets is None:
        # Labels only come with the items: read them once.
        labels = [b.labels for b in iterate_batches(real.dataset, None, 512, real.options.workers)]
        if any(lab is None for lab in labels):
            raise DcganError(
                f"dataset {real.name!r} has no labels, so no classifier can be trained on it; use --extractor discriminator or inception"
            )
        targets = torch.cat(labels).numpy()
    classes = int(targets.max()) + 1
    n = len(real)
    order = np.random.default_rng(derive_seed(seed, "classifier", "split") % 2**32).permutation(n)
    n_held = max(1, int(round(n * setup.heldout_fraction)))
    held, train = np.sort(order[:n_held]), order[n_held:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "classifier", "init") % 2**63)
        model = DatasetClassifier(real.options.size, real.options.channels, classes, setup.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    with progress_task("training the FID classifier", setup.epochs * len(train)) as advance:
        for epoch in range(setup.epochs):
            model.train()
            epoch_order = np.random.default_rng(derive_seed(seed, "classifier", epoch) % 2**32).permutation(train)
            for batch in iterate_batches(real.dataset, epoch_order, setup.batch_size, real.options.workers):
                if len(batch.indices) < 2:  # BatchNorm needs two images
                    continue
                logits = model(batch.images.to(device))
                loss = F.cross_entropy(logits, batch.labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                advance(len(batch.indices))
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for batch in iterate_batches(real.dataset, held, 512, real.options.workers):
            correct += int((model(batch.images.to(device)).argmax(1).cpu() == batch.labels).sum())
            total += len(batch.indices)
    return model, correct / max(total, 1), classes


class ClassifierFeatures(NetworkFeatures):
    """The 128-d penultimate layer of a classifier trained on the real dataset's labels."""

    NAME = "classifier"
    DESCRIPTION = "a small CNN classifier trained on the real dataset, 128-d penultimate features"

    def __init__(self, model: DatasetClassifier, key: dict, accuracy: float, dataset: str):
        self.net = model.eval()
        self.key = key
        self.accuracy = accuracy
        self.dataset = dataset

    @classmethod
    def create(cls, context: ExtractorContext, setup: ClassifierSetup | None = None) -> ClassifierFeatures:
        setup = setup or ClassifierSetup()
        device = resolve_device(context.device)
        key = {"extractor": cls.NAME, "data": context.real.identity(), "setup": setup.__dict__, "seed": context.seed}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = context.cache_dir / f"classifier-{context.real.name}-{digest}.safetensors" if context.cache_dir else None
        if path is not None and path.is_file():
            try:
                tensors, meta = read_safetensors(path, "cached classifier")
                if json.loads(meta["key"]) == json.loads(json.dumps(key)):
                    model = DatasetClassifier(
                        context.real.options.size, context.real.options.channels, int(meta["classes"]), setup.width
                    )
                    model.load_state_dict(tensors)
                    return cls(model.to(device), key, float(meta["accuracy"]), context.real.name)
            except (DcganError, KeyError, ValueError, RuntimeError):
                pass  # a stale or damaged cache entry: train again
        model, accuracy, classes = train_classifier(context.real, setup, context.seed, device)
        if path is not None:
            meta = {"key": json.dumps(key), "accuracy": str(accuracy), "classes": str(classes)}
            write_safetensors(path, model.state_dict(), meta)
        note(f"FID classifier: held-out accuracy {accuracy:.3f} on {context.real.name}")
        return cls(model, key, accuracy, context.real.name)

    def describe(self) -> str:
        return f"CNN classifier trained on {self.dataset} (held-out accuracy {self.accuracy:.3f}), 128-d penultimate features"

    def cache_key(self) -> dict:
        return self.key

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images.to(self.device, torch.float32)).float().cpu()


def discriminator_fid_features(context: ExtractorContext) -> DiscriminatorFeatures:
    """The run's discriminator: its last conv layer averaged over space (ndf * 2^(layers-1) dims)."""
    last = run_model_config(context.run_dir).n_layers - 1
    return DiscriminatorFeatures.trained(context.run_dir, grid=1, pool="avg", layers=(last,))


BUILTIN_EXTRACTORS: dict[str, Callable[[ExtractorContext], FeatureExtractor]] = {
    "fid-inception": FidInceptionFeatures.create,
    "inception": InceptionFeatures.create,
    "classifier": ClassifierFeatures.create,
    "discriminator": discriminator_fid_features,
}


def get_extractors() -> tuple[dict[str, Callable[[ExtractorContext], FeatureExtractor]], list[str]]:
    """Built-in extractor factories plus those of installed packages; and warnings for broken ones.

    A package adds one with ``[project.entry-points."dcgan_analysis.extractors"]
    name = "module:factory"``, where ``factory(context: ExtractorContext)`` returns a FeatureExtractor.
    """
    found = dict(BUILTIN_EXTRACTORS)
    warnings = []
    for ep in importlib.metadata.entry_points(group=EXTRACTOR_ENTRY_POINTS):
        if ep.name in found:
            continue  # built-ins and the first package to claim a name win
        try:
            factory = ep.load()
        except Exception as exc:
            warnings.append(
                f"feature extractor {ep.name!r} failed to import and is skipped ({type(exc).__name__}: {exc})"
            )
            continue
        found[ep.name] = getattr(factory, "create", factory)
    return found, warnings


def choose_extractor(name: str, context: ExtractorContext) -> FeatureExtractor:
    """The extractor ``name``; 'auto' is the Inception the --inception-weights file is for
    (fid-inception or inception), else a classifier when the real images are labelled, else the
    run's discriminator."""
    factories, warnings = get_extractors()
    for warning in warnings:
        note(f"[yellow]Warning:[/] {warning}")
    if name == "auto":
        if context.inception_weights is not None:
            context.inception_state = read_state_dict(context.inception_weights, "an Inception weights file")
            name = weights_kind(context.inception_state) or "inception"  # not an Inception: inception says why
        elif dataset_targets(context.real.dataset) is not None:
            name = "classifier"
        else:
            name = "discriminator"
    if name not in factories:
        raise DcganError(f"unknown feature extractor {name!r}; known: auto, {', '.join(sorted(factories))}")
    extractor = factories[name](context)
    if not isinstance(extractor, FeatureExtractor):
        raise DcganError(f"feature extractor {name!r} did not build a dcgan_analysis.features.FeatureExtractor")
    return extractor


# ---------------------------------------------------------------------------- the measurement


@dataclass
class FidResult:
    extractor: str  # the extractor's name
    extractor_description: str  # exactly what produced the features
    dims: int
    samples: int
    real: int
    fid: float
    kid_mean: float
    kid_std: float
    real_split_fid: float  # FID between two halves of the real images: the floor at this size

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def sample_features(
    engine, extractor: FeatureExtractor, n: int, seed: int, batch_size: int = 256, device: str = "auto"
) -> torch.Tensor:
    """Features of samples 0..n-1 of ``seed`` drawn by ``engine``: (n, d)."""
    from dcgan_cli.api import sample_batches

    extractor.to(resolve_device(device))
    out = []
    with progress_task(f"samples through {extractor.NAME}", n) as advance:
        for _, _, images in sample_batches(engine, seed, n, batch_size):
            out.append(extractor(images))
            advance(len(images))
    return torch.cat(out)


def real_subset(real: RealImages, max_real: int | None, seed: int) -> np.ndarray | None:
    """Which real images to use: all, or ``max_real`` of them chosen by the seed."""
    if max_real is not None and max_real < len(real):
        return seeded_subset(len(real), max_real, derive_seed(seed, "fid", "real") % 2**32)
    return None


def compare(
    extractor: FeatureExtractor, fake: np.ndarray, real: np.ndarray, kid_subsets: int, kid_subset_size: int, seed: int
) -> FidResult:
    """FID, KID and the real split-half floor for two feature sets."""
    kid_mean, kid_std = kernel_inception_distance(fake, real, kid_subsets, kid_subset_size, seed)
    order = np.random.default_rng(derive_seed(seed, "fid", "split") % 2**32).permutation(len(real))
    half = len(real) // 2
    floor = frechet_distance(real[order[:half]], real[order[half:]]) if half >= 2 else float("nan")
    return FidResult(
        extractor.NAME,
        extractor.describe(),
        int(fake.shape[1]),
        len(fake),
        len(real),
        frechet_distance(fake, real),
        kid_mean,
        kid_std,
        floor,
    )
