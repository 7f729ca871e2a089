"""The built-in ``celeba`` labeler: CelebA's 40 attributes from a classifier trained on the real labelled images."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.latent.labelers.base import ConceptRule, Labeler, LabelerContext

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dcgan_cli.latent.labelers.attribute_net import AttributeNet

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
    """ "Wearing_Hat" -> "wearing hat"; a name expressions could not read keeps its underscores."""
    from dcgan_cli.latent.expressions import is_valid_name, normalize_name

    spaced = normalize_name(label.replace("_", " "))
    return spaced if is_valid_name(spaced) else normalize_name(label)


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
        return RunPaths(Path(self.context.run_dir)).labelers / "celeba.safetensors"

    def _load_dataset(self):
        if self._dataset is not None:
            return self._dataset
        from dcgan_cli.data.catalog import DataOptions
        from dcgan_cli.data.loading import load_dataset

        m = self.context.model
        dataset, _ = load_dataset("celeba", DataOptions(data=self.context.data, size=m.size, channels=m.channels))
        return dataset

    def prepare(self, progress=None) -> None:
        if not self.context.refit and self._load_cached():
            return
        dataset = self._load_dataset()
        names = list(getattr(dataset, "attr_names", []))
        if not names:
            raise DcganError(
                "the celeba dataset has no attr_names; the CelebA labeler needs the attribute labels (list_attr_celeba.txt)"
            )
        self.train(dataset, names, progress=progress)
        self._save_cache()

    def train(self, dataset, names: list[str], steps: int | None = None, seed: int = 0, progress=None) -> None:
        """Fit the classifier with BCE on the labelled images; hold out some to measure accuracy."""
        import torch
        from torch import nn

        from dcgan_cli.core.devices import resolve_device
        from dcgan_cli.latent.labelers.attribute_net import (
            AttributeNet,
            attribute_batches,
            fit_network,
            held_out_split,
        )

        steps = steps or self.context.options.get("steps", self.TRAIN_STEPS)
        workers = int(self.context.options.get("workers", 0))
        device = resolve_device(self.context.device)
        m = self.context.model
        g = torch.Generator().manual_seed(seed)
        train, held = held_out_split(len(dataset), min(self.HELD_OUT, len(dataset) // 5), g)
        net = AttributeNet(m.size, m.channels, len(names)).to(device)
        fit_network(
            net,
            nn.BCEWithLogitsLoss(),
            dataset,
            train,
            steps=steps,
            batch_size=self.BATCH_SIZE,
            generator=g,
            device=device,
            workers=workers,
            progress=progress,
            description="training the CelebA attribute classifier",
        )
        self.net, self.names = net, names
        correct, total = torch.zeros(len(names)), 0
        with torch.inference_mode():
            for images, attrs in attribute_batches(dataset, held, 256, workers):
                predicted = (net(images.to(device)) > 0).float().cpu()
                correct += (predicted == attrs).float().sum(dim=0)
                total += len(attrs)
        self.held_out_accuracy = {n: round(float(c) / max(total, 1), 4) for n, c in zip(names, correct)}

    def _cache_meta(self) -> dict:
        m = self.context.model
        return {"size": m.size, "channels": m.channels, "data": str(self.context.data) if self.context.data else None}

    def _save_cache(self) -> None:
        from dcgan_cli.core.files import write_safetensors

        meta = {
            "format": CELEBA_CACHE_FORMAT,
            "inputs": json.dumps(self._cache_meta()),
            "attr_names": json.dumps(self.names),
            "held_out_accuracy": json.dumps(self.held_out_accuracy),
        }
        write_safetensors(self.cache_path, self.net.state_dict(), meta)

    def _load_cached(self) -> bool:
        from dcgan_cli.core.devices import resolve_device
        from dcgan_cli.core.files import read_safetensors
        from dcgan_cli.core.networks import check_state_dict
        from dcgan_cli.latent.labelers.attribute_net import AttributeNet

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

    def score(self, images: torch.Tensor) -> np.ndarray:
        import torch

        if self.net is None:
            raise RuntimeError("call prepare() before score()")
        device = next(self.net.parameters()).device
        with torch.inference_mode():
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
