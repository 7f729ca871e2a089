"""Labelers: score generated images on named attributes, to build concepts automatically.

A labeler (registered through the ``dcgan_register_labelers`` hook) scores images on
attributes, each score in [0, 1] ("how much does this image show it"), and proposes
concept rules over those attributes: "thick seven" = class seven, thick, ordinary slant;
"smiling woman" = Smiling and not Male. `dcgan concepts auto` draws many z, scores their
images, and keeps the best-scoring exemplars of each rule.

Built in:
- ``digits``: the digit class (a logistic regression on the real labelled digits) and
  stroke thickness and slant measured from the pixels, as percentiles among real digits
  of the same class.
- ``celeba``: CelebA's 40 attributes, from a small convolutional classifier trained on
  the real labelled images (and cached in the run folder) and applied to generated ones.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from dcgan_cli.errors import DcganError
from dcgan_cli.hookspecs import hookimpl
from dcgan_cli.model import DCGANConfig


@dataclass(frozen=True)
class ConceptRule:
    """A concept defined over a labeler's attributes.

    An exemplar must show every ``present`` attribute (score >= 0.5), none of the ``absent``
    ones (score < 0.5) and an ordinary amount of each ``typical`` one (a score in the middle
    half, [0.25, 0.75], for attributes scored as percentiles). Exemplars are ranked by the
    product of p (present) and 1 - p (absent). ``typical`` keeps the plain concepts plain:
    with "seven" drawn from sevens of ordinary thickness, "thick seven - seven" is
    thickness alone.
    """

    name: str
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    typical: tuple[str, ...] = ()

    def attributes(self) -> tuple[str, ...]:
        return (*self.present, *self.absent, *self.typical)

    def evaluate(self, scores: np.ndarray, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """(N, A) attribute scores -> (N,) rank scores and (N,) whether each image fits."""
        score = np.ones(len(scores))
        fits = np.ones(len(scores), dtype=bool)
        for a in self.present:
            score *= scores[:, index[a]]
            fits &= scores[:, index[a]] >= 0.5
        for a in self.absent:
            score *= 1.0 - scores[:, index[a]]
            fits &= scores[:, index[a]] < 0.5
        for a in self.typical:
            fits &= np.abs(scores[:, index[a]] - 0.5) <= 0.25
        return score, fits

    def to_json(self) -> dict:
        return {"present": list(self.present), "absent": list(self.absent), "typical": list(self.typical)}


@dataclass
class LabelerContext:
    """What a labeler may need about the run it labels samples of."""

    run_dir: Path
    model: DCGANConfig
    dataset: str  # the dataset the run was trained on
    data: Path | None = None  # where that dataset's real (labelled) images are
    device: str = "auto"
    refit: bool = False  # retrain a cached classifier
    generate: Callable[[torch.Tensor], torch.Tensor] | None = None  # the run's generator (an engine's generate)
    options: dict = field(default_factory=dict)


class Labeler(abc.ABC):
    """Scores images on named attributes and proposes concept rules over them."""

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    DATASETS: ClassVar[tuple[str, ...]] = ()  # datasets whose samples it understands

    @classmethod
    def applies_to(cls, dataset: str) -> bool:
        """True when `dcgan concepts auto` should pick this labeler for a run on ``dataset``."""
        return dataset in cls.DATASETS

    def __init__(self, context: LabelerContext):
        self.context = context

    def prepare(self, progress: Callable | None = None) -> None:
        """Fit or load what scoring needs (a classifier); called once before scoring.

        ``progress(description, total)`` is a context manager yielding ``advance(n)``
        (``dcgan_cli.progress.progress_task``), for work that takes a while.
        """

    @abc.abstractmethod
    def attributes(self) -> list[str]:
        """The attribute names, in the order of ``score``'s columns (valid after ``prepare``)."""

    @abc.abstractmethod
    def score(self, images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) images in [-1, 1] -> (N, A) scores in [0, 1]."""

    @abc.abstractmethod
    def concepts(self) -> list[ConceptRule]:
        """The concept rules `dcgan concepts auto` builds (valid after ``prepare``)."""

    def measure(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """Raw measurements worth keeping beside the scores (pixels, degrees); optional."""
        return {}

    def describe(self) -> dict:
        """Facts about the labeler for the record (classifier accuracy, say)."""
        return {}


def get_labelers() -> dict[str, type[Labeler]]:
    """Every labeler registered by built-in and installed plugins, by name."""
    from dcgan_cli import plugins

    found: dict[str, type[Labeler]] = {}

    def register(name: str, labeler: type[Labeler]) -> None:
        if not name or not isinstance(name, str):
            raise ValueError("a labeler needs a non-empty name")
        if name in found and found[name] is not labeler:
            raise ValueError(f"labeler name {name!r} is already taken by {found[name].__module__}")
        found[name] = labeler

    plugins.call_each("dcgan_register_labelers", register=register)
    return found


def choose_labelers(names: list[str] | None, dataset: str) -> list[type[Labeler]]:
    """The labelers named, or every labeler that applies to the run's dataset."""
    labelers = get_labelers()
    if names:
        unknown = [n for n in names if n not in labelers]
        if unknown:
            raise DcganError(f"unknown labeler {unknown[0]!r}; installed labelers: {', '.join(sorted(labelers)) or 'none'}")
        return [labelers[n] for n in names]
    chosen = [cls for cls in labelers.values() if cls.applies_to(dataset)]
    if not chosen:
        known = "; ".join(f"{n} ({', '.join(c.DATASETS) or 'any'})" for n, c in sorted(labelers.items()))
        raise DcganError(
            f"no labeler knows the dataset {dataset!r} this run was trained on; labelers: {known}. "
            "Pass --labeler NAME to use one anyway, or add concepts by hand with `dcgan concepts add`"
        )
    return chosen


# ---------------------------------------------------------------------------- choosing exemplars


@dataclass
class Selection:
    rule: ConceptRule
    indices: list[int]  # best first
    scores: list[float]
    qualifying: int  # how many samples fit the rule at all


def select_exemplars(scores: np.ndarray, attributes: list[str], rules: list[ConceptRule], keep: int) -> list[Selection]:
    """For each rule, the ``keep`` best-scoring samples among those that fit it."""
    index = {a: i for i, a in enumerate(attributes)}
    selections = []
    for rule in rules:
        missing = [a for a in rule.attributes() if a not in index]
        if missing:
            raise ValueError(f"concept rule {rule.name!r} uses unknown attribute {missing[0]!r}")
        total, fits = rule.evaluate(scores, index)
        order = np.argsort(-np.where(fits, total, -1.0), kind="stable")
        chosen = [int(i) for i in order[: int(fits.sum())][:keep]]
        selections.append(Selection(rule, chosen, [float(total[i]) for i in chosen], int(fits.sum())))
    return selections


# ---------------------------------------------------------------------------- digits

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class DigitLabeler(Labeler):
    """Digit class from a classifier fitted on the real digits; stroke thickness and slant."""

    NAME = "digits"
    DESCRIPTION = "digit class (logistic regression on the real digits), stroke thickness and slant"
    DATASETS = ("digits", "mnist")

    CALIBRATION_SAMPLES = 2000

    def prepare(self, progress=None) -> None:
        """Fit the classifier; measure strokes of real digits and, given the generator, of its samples.

        Thick and slanted are percentiles among digits of the same class drawn by the
        generator itself (real digits for a class it rarely draws): a generator may draw
        every stroke thicker than the real scans, and "thick seven" should still mean
        thicker than its usual seven.
        """
        from dcgan_cli.digits import StrokeCalibration, fitted_classifier, stroke_calibration, stroke_slant, stroke_thickness
        from dcgan_cli.latent import derive_seed, seeded_z

        self.classifier = fitted_classifier(32)
        self.calibration = stroke_calibration()
        generate = self.context.generate
        if generate is None:
            return
        m = self.context.model
        seed = derive_seed(0, "digits-labeler-calibration")
        thickness, slant, labels = [], [], []
        for start in range(0, self.CALIBRATION_SAMPLES, 256):
            images = generate(seeded_z(seed, min(256, self.CALIBRATION_SAMPLES - start), m.nz, m.prior, start=start))
            labels.append(self.classifier.predict_proba(images).argmax(axis=1))
            thickness.append(stroke_thickness(images).numpy())
            slant.append(stroke_slant(images).numpy())
        drawn = StrokeCalibration.measure(np.concatenate(thickness), np.concatenate(slant), np.concatenate(labels))
        self.calibration = self.calibration.replaced_where_enough(drawn)

    def attributes(self) -> list[str]:
        return [*DIGIT_NAMES, "thick", "slanted"]

    def measure(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        from dcgan_cli.digits import stroke_slant, stroke_thickness

        return {"thickness_px": stroke_thickness(images).numpy(), "slant_deg": stroke_slant(images).numpy()}

    def score(self, images: torch.Tensor) -> np.ndarray:
        proba = self.classifier.predict_proba(images)
        strokes = self.measure(images)
        thick = self.calibration.thickness_percentile(strokes["thickness_px"], proba)
        slanted = self.calibration.slant_percentile(strokes["slant_deg"], proba)
        return np.concatenate([proba, thick[:, None], slanted[:, None]], axis=1)

    def concepts(self) -> list[ConceptRule]:
        rules = [ConceptRule(d, present=(d,), typical=("thick", "slanted")) for d in DIGIT_NAMES]
        rules += [
            ConceptRule("thick", present=("thick",), typical=("slanted",)),
            ConceptRule("thin", absent=("thick",), typical=("slanted",)),
            ConceptRule("slanted", present=("slanted",), typical=("thick",)),
        ]
        for d in DIGIT_NAMES:
            rules += [
                ConceptRule(f"thick {d}", present=(d, "thick"), typical=("slanted",)),
                ConceptRule(f"thin {d}", present=(d,), absent=("thick",), typical=("slanted",)),
                ConceptRule(f"slanted {d}", present=(d, "slanted"), typical=("thick",)),
            ]
        return rules

    def describe(self) -> dict:
        return {"classifier_held_out_accuracy": round(self.classifier.held_out_accuracy, 4)}


# ---------------------------------------------------------------------------- CelebA

CELEBA_CACHE_FORMAT = "dcgan-cli/attribute-classifier"

# The paper's fig. 7 concepts, over CelebA's attribute names.
CELEBA_COMBINATIONS = (
    ConceptRule("man", present=("Male",)),
    ConceptRule("woman", absent=("Male",)),
    ConceptRule("smiling woman", present=("Smiling",), absent=("Male",)),
    ConceptRule("neutral woman", absent=("Smiling", "Male")),
    ConceptRule("smiling man", present=("Smiling", "Male")),
    ConceptRule("neutral man", present=("Male",), absent=("Smiling",)),
    ConceptRule("man with glasses", present=("Male", "Eyeglasses")),
    ConceptRule("man without glasses", present=("Male",), absent=("Eyeglasses",)),
    ConceptRule("woman with glasses", present=("Eyeglasses",), absent=("Male",)),
    ConceptRule("woman without glasses", absent=("Male", "Eyeglasses")),
)


def concept_name_for(label: str) -> str:
    """"Wearing_Hat" -> "wearing hat"; a name expressions could not read keeps its underscores."""
    from dcgan_cli.arithmetic import is_valid_name, normalize_name

    spaced = normalize_name(label.replace("_", " "))
    return spaced if is_valid_name(spaced) else normalize_name(label)


class AttributeNet(nn.Module):
    """A small all-convolutional multi-label classifier, shaped like the DCGAN discriminator.

    (N, C, S, S) -> stride-2 convs (C -> w -> 2w -> ...) down to 4x4 -> 4x4 conv -> (N, A) logits.
    """

    def __init__(self, size: int, channels: int, n_attributes: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c_out, s = channels, width, size
        while s > 4:
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)]
            c_in, c_out, s = c_out, min(c_out * 2, 256), s // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, n_attributes, 4, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten(1)


def _collate_labelled(items):
    """Stack (image, attrs) items, dropping unreadable (None) ones."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    return torch.stack([it[0] for it in items]).float(), torch.stack([torch.as_tensor(it[1]) for it in items]).float()


def _attribute_batches(dataset, indices: np.ndarray, batch_size: int, workers: int = 0):
    """(images, attrs) batches of the items at ``indices``, in that order, decoded by ``workers`` processes."""
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, [int(i) for i in indices]),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate_labelled,
    )
    for batch in loader:
        if batch is not None:
            yield batch


class CelebALabeler(Labeler):
    """CelebA's attributes from a classifier trained on the real labelled images.

    The dataset's items are ``(image, attrs)``: attrs a float tensor of 0/1 values, named by
    the dataset's ``attr_names``. The trained classifier is cached in the run folder
    (``labelers/celeba.safetensors``, with its held-out accuracy per attribute).
    """

    NAME = "celeba"
    DESCRIPTION = "CelebA's 40 attributes, from a classifier trained on the real labelled images"
    DATASETS = ("celeba",)
    TRAIN_STEPS = 1500
    BATCH_SIZE = 64
    HELD_OUT = 2000

    def __init__(self, context: LabelerContext, dataset=None):
        super().__init__(context)
        self._dataset = dataset  # an in-memory dataset with the same interface, for tests
        self.net: AttributeNet | None = None
        self.names: list[str] = []
        self.held_out_accuracy: dict[str, float] = {}

    @property
    def cache_path(self) -> Path:
        return Path(self.context.run_dir) / "labelers" / "celeba.safetensors"

    def _load_dataset(self):
        if self._dataset is not None:
            return self._dataset
        from dcgan_cli.data import DataOptions, load_dataset

        m = self.context.model
        dataset, _ = load_dataset("celeba", DataOptions(data=self.context.data, size=m.size, channels=m.channels))
        return dataset

    def prepare(self, progress=None) -> None:
        if not self.context.refit and self._load_cached():
            return
        dataset = self._load_dataset()
        names = list(getattr(dataset, "attr_names", []))
        if not names:
            raise DcganError("the celeba dataset has no attr_names; the CelebA labeler needs the attribute labels (list_attr_celeba.txt)")
        self.train(dataset, names, progress=progress)
        self._save_cache()

    def train(self, dataset, names: list[str], steps: int | None = None, seed: int = 0, progress=None) -> None:
        """Fit the classifier with BCE on the labelled images; hold out some to measure accuracy."""
        from dcgan_cli.engines import resolve_device

        steps = steps or self.context.options.get("steps", self.TRAIN_STEPS)
        workers = int(self.context.options.get("workers", 0))
        device = resolve_device(self.context.device)
        m = self.context.model
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(dataset), generator=g).numpy()
        held = order[: min(self.HELD_OUT, len(order) // 5)]
        train = order[len(held) :]
        net = AttributeNet(m.size, m.channels, len(names)).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
        loss_fn = nn.BCEWithLogitsLoss()
        net.train()
        progress = progress or (lambda description, total: contextlib.nullcontext(lambda n=1: None))
        with progress("training the CelebA attribute classifier", steps) as advance:
            step = 0
            while step < steps:
                perm = train[torch.randperm(len(train), generator=g).numpy()]
                for images, attrs in _attribute_batches(dataset, perm, self.BATCH_SIZE, workers):
                    loss = loss_fn(net(images.to(device)), attrs.to(device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    advance(1)
                    if step >= steps:
                        break
        net.eval()
        self.net, self.names = net, names
        correct, total = torch.zeros(len(names)), 0
        with torch.inference_mode():
            for images, attrs in _attribute_batches(dataset, held, 256, workers):
                predicted = (net(images.to(device)) > 0).float().cpu()
                correct += (predicted == attrs).float().sum(dim=0)
                total += len(attrs)
        self.held_out_accuracy = {n: round(float(c) / max(total, 1), 4) for n, c in zip(names, correct)}

    def _cache_meta(self) -> dict:
        m = self.context.model
        return {"size": m.size, "channels": m.channels, "data": str(self.context.data) if self.context.data else None}

    def _save_cache(self) -> None:
        from dcgan_cli.checkpoint import write_safetensors

        meta = {
            "format": CELEBA_CACHE_FORMAT,
            "inputs": json.dumps(self._cache_meta()),
            "attr_names": json.dumps(self.names),
            "held_out_accuracy": json.dumps(self.held_out_accuracy),
        }
        write_safetensors(self.cache_path, self.net.state_dict(), meta)

    def _load_cached(self) -> bool:
        from dcgan_cli.checkpoint import check_state_dict, read_safetensors
        from dcgan_cli.engines import resolve_device

        if not self.cache_path.is_file():
            return False
        tensors, meta = read_safetensors(self.cache_path, "attribute classifier")
        try:
            if meta.get("format") != CELEBA_CACHE_FORMAT or json.loads(meta["inputs"]) != self._cache_meta():
                return False  # made for other images: train again
            names = json.loads(meta["attr_names"])
            accuracy = json.loads(meta.get("held_out_accuracy", "{}"))
        except (KeyError, json.JSONDecodeError):
            return False
        m = self.context.model
        net = AttributeNet(m.size, m.channels, len(names))
        check_state_dict(net, tensors, str(self.cache_path))
        net.load_state_dict(tensors)
        self.net = net.to(resolve_device(self.context.device)).eval()
        self.names, self.held_out_accuracy = names, accuracy
        return True

    def attributes(self) -> list[str]:
        return list(self.names)

    @torch.inference_mode()
    def score(self, images: torch.Tensor) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("call prepare() before score()")
        device = next(self.net.parameters()).device
        return torch.sigmoid(self.net(images.to(device).float())).cpu().numpy()

    def concepts(self) -> list[ConceptRule]:
        rules = [ConceptRule(concept_name_for(n), present=(n,)) for n in self.names]
        taken = {r.name for r in rules}
        rules += [r for r in CELEBA_COMBINATIONS if set(r.attributes()) <= set(self.names) and r.name not in taken]
        return rules

    def describe(self) -> dict:
        acc = self.held_out_accuracy
        mean = sum(acc.values()) / len(acc) if acc else math.nan
        return {"held_out_accuracy": acc, "mean_held_out_accuracy": round(mean, 4)}


@hookimpl
def dcgan_register_labelers(register):
    register(DigitLabeler.NAME, DigitLabeler)
    register(CelebALabeler.NAME, CelebALabeler)


# ---------------------------------------------------------------------------- building concepts


@dataclass
class LabelledSamples:
    """Samples of seed ``seed`` (z i is `dcgan sample --seed` sample i) with their scores."""

    seed: int
    z: torch.Tensor  # (N, nz)
    scores: np.ndarray  # (N, A)
    attributes: list[str]
    measurements: dict[str, np.ndarray]


def label_samples(engine, labeler: Labeler, seed: int, n: int, batch_size: int = 256, advance=None) -> LabelledSamples:
    """Draw ``n`` samples of ``seed`` through ``engine`` and score them with a prepared labeler."""
    from dcgan_cli.sampling import sample_batches

    zs, scores, measured = [], [], {}
    for _, z, images in sample_batches(engine, seed, n, batch_size):
        zs.append(z)
        scores.append(np.asarray(labeler.score(images), dtype=np.float64))
        for key, values in labeler.measure(images).items():
            measured.setdefault(key, []).append(np.asarray(values))
        if advance:
            advance(len(z))
    return LabelledSamples(seed, torch.cat(zs), np.concatenate(scores), labeler.attributes(), {k: np.concatenate(v) for k, v in measured.items()})


def build_concepts(labeler: Labeler, samples: LabelledSamples, keep: int):
    """Concepts (best exemplars of each of the labeler's rules) and what was found for each rule.

    Returns (concepts, report): report rows name each rule, how many samples fit it and how
    many were kept; a rule no sample fits makes no concept.
    """
    from dcgan_cli.concepts import Concept

    concepts, report = [], []
    for sel in select_exemplars(samples.scores, samples.attributes, labeler.concepts(), keep):
        report.append({"name": sel.rule.name, "fitting": sel.qualifying, "kept": len(sel.indices)})
        if not sel.indices:
            continue
        source = {"kind": "labeler", "labeler": labeler.NAME, "rule": sel.rule.to_json(), "seed": samples.seed, "indices": sel.indices}
        for key, values in samples.measurements.items():
            source[key] = [round(float(values[i]), 4) for i in sel.indices]
        concepts.append(Concept(sel.rule.name, samples.z[sel.indices].clone(), source, sel.scores))
    return concepts, report
