"""Labelers: score generated images on named attributes, to build concepts automatically.

This module holds the contract (Labeler, ConceptRule) and what `dcgan concepts auto` does
with labelers; the built-in ones are in digits.py and celeba.py.

A labeler (registered through the ``dcgan_register_labelers`` hook) scores images on
attributes, each score in [0, 1] ("how much does this image show it"), and proposes
concept rules over those attributes: "thick seven" = class seven, thick, ordinary slant;
"smiling woman" = Smiling and not Male. `dcgan concepts auto` draws many z, scores their
images, and keeps the best-scoring exemplars of each rule.

Built in:
- ``digits``: the digit class (a classifier of the run's real labelled digits: MNIST's,
  or scikit-learn's 8x8 ones for ``digits``) and stroke thickness and slant measured from
  the pixels, as percentiles among digits of the same class.
- ``classes``: the classes of any labelled dataset (CIFAR-10, a folder of class folders),
  from a classifier trained on the run's own labelled images and cached in the run folder.
- ``celeba``: CelebA's 40 attributes, from a small convolutional classifier trained on
  the real labelled images (and cached in the run folder) and applied to generated ones.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.registry import RegistrationError, collect

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dcgan_cli.core.model import DCGANConfig


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
        import numpy as np

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
        (``dcgan_cli.api.progress_task``), for work that takes a while.
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


def _labeler_entry(name, labeler):
    if not (isinstance(labeler, type) and issubclass(labeler, Labeler)):
        raise RegistrationError(f"labeler {name!r}: register the class, a subclass of dcgan_cli.api.Labeler")
    return name, labeler, labeler


def get_labelers() -> dict[str, type[Labeler]]:
    """Every labeler registered by built-in and installed plugins (``register(name, LabelerClass)``), by name."""
    return collect("dcgan_register_labelers", "labeler", _labeler_entry).as_dict()


def choose_labelers(names: list[str] | None, dataset: str) -> list[type[Labeler]]:
    """The labelers named, or every labeler that applies to the run's dataset."""
    labelers = get_labelers()
    if names:
        unknown = [n for n in names if n not in labelers]
        if unknown:
            raise DcganError(
                f"unknown labeler {unknown[0]!r}; installed labelers: {', '.join(sorted(labelers)) or 'none'}"
            )
        return [labelers[n] for n in names]
    chosen = [cls for cls in labelers.values() if cls.applies_to(dataset)]
    if not chosen:
        known = "; ".join(f"{n} ({', '.join(c.DATASETS) or 'any'})" for n, c in sorted(labelers.items()))
        raise DcganError(
            f"no labeler knows the dataset {dataset!r} this run was trained on: labelers learn concepts from a "
            f"dataset's labels (labelers: {known}). If its images carry class labels, pass --labeler classes; "
            "otherwise name concepts by hand with `dcgan concepts add NAME --samples 3,17,42`, "
            "or train on a labelled dataset"
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
    import numpy as np

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
    import numpy as np
    import torch

    from dcgan_cli.engines.sampling import sample_batches

    zs, scores, measured = [], [], {}
    for _, z, images in sample_batches(engine, seed, n, batch_size):
        zs.append(z)
        scores.append(np.asarray(labeler.score(images), dtype=np.float64))
        for key, values in labeler.measure(images).items():
            measured.setdefault(key, []).append(np.asarray(values))
        if advance:
            advance(len(z))
    return LabelledSamples(
        seed,
        torch.cat(zs),
        np.concatenate(scores),
        labeler.attributes(),
        {k: np.concatenate(v) for k, v in measured.items()},
    )


def build_concepts(labeler: Labeler, samples: LabelledSamples, keep: int):
    """Concepts (best exemplars of each of the labeler's rules) and what was found for each rule.

    Returns (concepts, report): report rows name each rule, how many samples fit it and how
    many were kept; a rule no sample fits makes no concept.
    """
    from dcgan_cli.latent.concepts import Concept

    concepts, report = [], []
    for sel in select_exemplars(samples.scores, samples.attributes, labeler.concepts(), keep):
        report.append({"name": sel.rule.name, "fitting": sel.qualifying, "kept": len(sel.indices)})
        if not sel.indices:
            continue
        source = {
            "kind": "labeler",
            "labeler": labeler.NAME,
            "rule": sel.rule.to_json(),
            "seed": samples.seed,
            "indices": sel.indices,
        }
        for key, values in samples.measurements.items():
            source[key] = [round(float(values[i]), 4) for i in sel.indices]
        concepts.append(Concept(sel.rule.name, samples.z[sel.indices].clone(), source, sel.scores))
    return concepts, report
