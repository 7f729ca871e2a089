"""The ``classes`` labeler, and the class classifier it shares with ``digits``: learned from the run's own labels.

A labelled dataset (MNIST, Fashion-MNIST, the bundled mnist5k, CIFAR-10, a folder with one
subfolder per class, or a plugin's dataset whose items are ``(image, label)`` with a
``targets`` tensor) already says what each real image shows. A small convolutional
classifier learns those labels from the run's own data, at the run's size and channels,
and then names the class of each generated image. It is cached in the run folder
(labelers/classes.safetensors, with its held-out accuracy), so it is trained once per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.latent.labelers.base import ConceptRule, Labeler, LabelerContext

if TYPE_CHECKING:
    import numpy as np
    import torch

CLASSIFIER_FORMAT = "dcgan-cli/class-classifier"
LABELLED_DATASETS = "mnist, mnist5k, cifar10, celeba (attributes), or a folder with one subfolder per class"


def _no_labels(context: LabelerContext) -> DcganError:
    where = f" ({context.data})" if context.data else ""
    if context.dataset == "folder":
        what = (
            f"the run's folder{where} has no class subfolders; put each class's images in a subfolder of its own "
            "(e.g. cats/*.jpg, dogs/*.jpg) and pass that folder as --data"
        )
    else:
        what = f"the run's dataset {context.dataset!r}{where} carries no class labels to learn from"
    return DcganError(
        f"{what}. Concepts can be learned from a labelled dataset ({LABELLED_DATASETS}); without labels, "
        "name concepts by hand with `dcgan concepts add NAME --samples 3,17,42` (indices into a `dcgan sample` sheet)"
    )


def labelled_targets(dataset, context: LabelerContext) -> tuple[torch.Tensor, list[str]]:
    """(labels (N,) int64, class names) of a labelled dataset; a clear error for one without labels or with one class."""
    import torch

    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise _no_labels(context)
    targets = torch.as_tensor(targets).long().reshape(-1)
    if len(targets) != len(dataset) or (len(targets) and targets.min() < 0):
        raise DcganError(
            f"dataset {context.dataset!r}: its targets are not one class number per image; fix the dataset plugin"
        )
    n_classes = int(targets.max()) + 1 if len(targets) else 0
    names = list(getattr(dataset, "classes", None) or [f"class {i}" for i in range(n_classes)])
    present = torch.unique(targets)
    if len(present) < 2:
        only = names[int(present[0])] if len(present) else "none"
        raise DcganError(
            f"dataset {context.dataset!r} holds one class only ({only!r}); a class labeler needs at least two "
            "(for a folder: one subfolder per class), or name concepts by hand with `dcgan concepts add NAME --samples 3,17,42`"
        )
    if len(names) < n_classes:
        raise DcganError(f"dataset {context.dataset!r} has labels up to {n_classes - 1} but {len(names)} class names")
    return targets, names


def load_run_dataset(context: LabelerContext):
    """The run's dataset at the run's size and channels, as it was trained (same --data, --split, --category)."""
    from dcgan_cli.data.catalog import DataOptions
    from dcgan_cli.data.loading import load_dataset

    m = context.model
    options = DataOptions(
        data=context.data,
        size=m.size,
        channels=m.channels,
        split=context.options.get("split"),
        category=context.options.get("category"),
    )
    return load_dataset(context.dataset, options)[0]


@dataclass
class ClassClassifier:
    """A network trained on a dataset's labelled images: class probabilities and features of new images."""

    net: torch.nn.Module
    names: list[str]
    held_out_accuracy: float

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            return self.net(images.to(self.device).float()).float().cpu()

    def predict_proba(self, images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) in [-1, 1] at the run's size -> (N, classes) probabilities."""
        return self.logits(images).softmax(dim=1).numpy()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, channels) last conv block's activations averaged over space (as Inception's pool3 for FID)."""
        import torch

        with torch.inference_mode():
            return self.net.features(images.to(self.device).float()).mean(dim=(2, 3)).float().cpu()


def train_class_classifier(
    dataset, names: list[str], context: LabelerContext, steps: int, seed: int = 0, progress=None
) -> ClassClassifier:
    """Cross-entropy on the labelled images (a share held out to measure accuracy); the run's size and channels."""
    import torch
    from torch import nn

    from dcgan_cli.core.devices import resolve_device
    from dcgan_cli.latent.labelers.attribute_net import AttributeNet, attribute_batches, fit_network, held_out_split

    device = resolve_device(context.device)
    workers = int(context.options.get("workers", 0))
    m = context.model
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the network's initial weights
    train, held = held_out_split(len(dataset), min(ClassLabeler.HELD_OUT, len(dataset) // 10), g)
    net = AttributeNet(m.size, m.channels, len(names)).to(device)
    fit_network(
        net,
        lambda logits, labels: nn.functional.cross_entropy(logits, labels.long()),
        dataset,
        train,
        steps=steps,
        batch_size=ClassLabeler.BATCH_SIZE,
        generator=g,
        device=device,
        workers=workers,
        progress=progress,
        description=f"training a classifier of the {len(names)} classes of {context.dataset}",
    )
    correct = total = 0
    with torch.inference_mode():
        for images, labels in attribute_batches(dataset, held, 256, workers):
            correct += int((net(images.to(device)).argmax(dim=1).cpu() == labels.long()).sum())
            total += len(labels)
    return ClassClassifier(net, list(names), round(correct / max(total, 1), 4))


class ClassifierCache:
    """labelers/classes.safetensors of a run: the weights, the class names and what they were trained on."""

    def __init__(self, context: LabelerContext):
        self.context = context
        self.path = RunPaths(Path(context.run_dir)).labelers / "classes.safetensors"

    def inputs(self) -> dict:
        c, m = self.context, self.context.model
        return {
            "dataset": c.dataset,
            "data": str(c.data) if c.data else None,
            "split": c.options.get("split"),
            "size": m.size,
            "channels": m.channels,
        }

    def load(self) -> ClassClassifier | None:
        from dcgan_cli.core.devices import resolve_device
        from dcgan_cli.core.files import read_safetensors
        from dcgan_cli.core.networks import check_state_dict
        from dcgan_cli.latent.labelers.attribute_net import AttributeNet

        if not self.path.is_file():
            return None
        tensors, meta = read_safetensors(self.path, "class classifier")
        try:
            if meta.get("format") != CLASSIFIER_FORMAT or json.loads(meta["inputs"]) != self.inputs():
                return None  # made for other images: train again
            names = json.loads(meta["classes"])
            accuracy = float(json.loads(meta["held_out_accuracy"]))
        except (KeyError, TypeError, ValueError):
            return None
        m = self.context.model
        net = AttributeNet(m.size, m.channels, len(names))
        check_state_dict(net, tensors, str(self.path))
        net.load_state_dict(tensors)
        return ClassClassifier(net.to(resolve_device(self.context.device)).eval(), names, accuracy)

    def save(self, classifier: ClassClassifier) -> None:
        from dcgan_cli.core.files import write_safetensors

        meta = {
            "format": CLASSIFIER_FORMAT,
            "inputs": json.dumps(self.inputs()),
            "classes": json.dumps(classifier.names),
            "held_out_accuracy": json.dumps(classifier.held_out_accuracy),
        }
        write_safetensors(self.path, classifier.net.state_dict(), meta)


def run_class_classifier(context: LabelerContext, progress=None, dataset=None) -> ClassClassifier:
    """The run's class classifier: from the cache, or trained on the run's labelled data (``dataset``
    when given, else loaded) and cached. A dataset without labels, or with one class, is a clear error."""
    cache = ClassifierCache(context)
    if not context.refit:
        cached = cache.load()
        if cached is not None:
            return cached
    if dataset is None:
        dataset = load_run_dataset(context)
    _, names = labelled_targets(dataset, context)
    steps = int(context.options.get("steps") or training_steps(len(dataset)))
    classifier = train_class_classifier(dataset, names, context, steps, progress=progress)
    cache.save(classifier)
    return classifier


def training_steps(n_images: int) -> int:
    """About 20 epochs of the labelled images, at least 200 steps and at most 3,000 (CPU minutes, not hours)."""
    epochs = ClassLabeler.TRAIN_EPOCHS * -(-n_images // ClassLabeler.BATCH_SIZE)
    return int(min(ClassLabeler.MAX_STEPS, max(ClassLabeler.MIN_STEPS, epochs)))


def class_concept_names(names: list[str]) -> list[str]:
    """Concept names for class names: "airplane" stays, "0 - zero" -> "zero", "001" -> "class_001"."""
    from dcgan_cli.latent.expressions import is_valid_name, normalize_name

    out = []
    for name in names:
        text = normalize_name(name.split(" - ", 1)[-1].replace("_", " ").replace("-", " "))
        if not is_valid_name(text):
            text = normalize_name("class_" + "_".join(text.split()))
        if not is_valid_name(text) or text in out:
            text = f"class_{len(out)}"
        out.append(text)
    return out


class ClassLabeler(Labeler):
    """The class of each image, from a classifier trained on the run's own labelled images."""

    NAME = "classes"
    DESCRIPTION = "the dataset's own classes, from a classifier trained on its labelled images (cached in the run)"
    DATASETS = ("cifar10", "folder")
    TRAIN_EPOCHS, MIN_STEPS, MAX_STEPS = 20, 200, 3000
    BATCH_SIZE = 64
    HELD_OUT = 2000

    def __init__(self, context: LabelerContext, dataset=None):
        super().__init__(context)
        self._dataset = dataset  # an in-memory labelled dataset, for tests
        self.classifier: ClassClassifier | None = None

    def prepare(self, progress=None) -> None:
        self.classifier = run_class_classifier(self.context, progress, self._dataset)
        self.names = class_concept_names(self.classifier.names)

    def attributes(self) -> list[str]:
        return list(self.names)

    def score(self, images: torch.Tensor) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError("call prepare() before score()")
        return self.classifier.predict_proba(images)

    def concepts(self) -> list[ConceptRule]:
        return [ConceptRule(name, present=(name,)) for name in self.names]

    def describe(self) -> dict:
        return {"classifier_held_out_accuracy": self.classifier.held_out_accuracy if self.classifier else None}
