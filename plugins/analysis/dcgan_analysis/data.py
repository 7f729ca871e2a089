"""Real images for the analyses: the dataset a run was trained on (or another), with labels.

Datasets come from dcgan-cli's registry (``dcgan_cli.api.load_dataset``), loaded at the
run's image size and channels so the discriminator can read them. Labels are found the
two ways datasets carry them: a ``.targets`` attribute (``TensorImages``, torchvision's
MNIST, CIFAR-10, ImageFolder) or items that are ``(image, label)`` tuples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from dcgan_cli.api import (
    DataOptions,
    DCGANConfig,
    DcganError,
    load_dataset,
    read_run_config,
)


@dataclass
class RealImages:
    """A dataset loaded for a run: its name, the options it was loaded with, the dataset."""

    name: str
    options: DataOptions
    dataset: Dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def identity(self) -> dict:
        """What identifies these images in a cache key: name, where, size, count and labels."""
        targets = dataset_targets(self.dataset)
        return {
            "dataset": self.name,
            "data": str(Path(self.options.data).resolve()) if self.options.data else None,
            "category": self.options.category,
            "size": self.options.size,
            "channels": self.options.channels,
            "count": len(self.dataset),
            "targets_sha256": hashlib.sha256(np.ascontiguousarray(targets).tobytes()).hexdigest()
            if targets is not None
            else None,
        }


def run_model_config(run_dir: Path) -> DCGANConfig:
    config = read_run_config(run_dir)
    return DCGANConfig.from_dict(config["model"], source=str(Path(run_dir) / "config.json"))


def load_real_images(
    run_dir: Path,
    name: str | None = None,
    data: Path | None = None,
    category: str | None = None,
    download: bool = False,
    workers: int = 0,
) -> RealImages:
    """The dataset ``name`` (default: the one the run was trained on) at the run's size and channels."""
    config = read_run_config(run_dir)
    model = DCGANConfig.from_dict(config["model"], source=str(Path(run_dir) / "config.json"))
    train = config.get("train") or {}
    if name is None:
        name = (config.get("dataset") or {}).get("name") or train.get("dataset")
        if not name:
            raise DcganError(f"run {run_dir} does not record its dataset; pass --dataset NAME (see `dcgan datasets`)")
        # The run's own data folder and category only apply to the run's own dataset.
        data = data if data is not None else (Path(train["data"]) if train.get("data") else None)
        category = category if category is not None else train.get("category")
    options = DataOptions(
        data=data, size=model.size, channels=model.channels, download=download, category=category, workers=workers
    )
    dataset, options = load_dataset(name, options)
    return RealImages(name, options, dataset)


def dataset_targets(dataset: Dataset) -> np.ndarray | None:
    """Every item's label without loading an image, when the dataset exposes them; else None."""
    if isinstance(dataset, Subset):
        parent = dataset_targets(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        return targets.detach().cpu().numpy().astype(np.int64)
    return np.asarray(targets, dtype=np.int64)


def class_names(dataset: Dataset, labels: np.ndarray) -> list[str]:
    """Names of the classes, by label: the dataset's ``.classes`` when it has them."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    n = int(labels.max()) + 1 if len(labels) else 0
    if classes is not None and len(classes) >= n:
        return [str(c) for c in classes]
    return [str(i) for i in range(n)]


class _Indexed(Dataset):
    """Items paired with their index, so labels and skipped items stay aligned."""

    def __init__(self, dataset: Dataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        return index, self.dataset[index]


@dataclass
class ImageBatch:
    indices: torch.Tensor  # (B,) dataset index of each image
    images: torch.Tensor  # (B, C, H, W) in [-1, 1]
    labels: torch.Tensor | None  # (B,) int64, when the dataset is labelled
    skipped: int  # unreadable items dropped from this batch


def _collate(targets: np.ndarray | None):
    def collate(items) -> ImageBatch:
        indices, images, labels = [], [], []
        for index, item in items:
            if item is None:  # an unreadable file: the dataset said so, we skip it
                continue
            if isinstance(item, (tuple, list)):
                image = item[0]
                label = item[1] if len(item) > 1 and targets is None else None
            else:
                image, label = item, None
            indices.append(index)
            images.append(image)
            labels.append(label)
        idx = torch.as_tensor(indices, dtype=torch.long)
        if targets is not None:
            lab = torch.from_numpy(targets[idx.numpy()]) if len(indices) else torch.empty(0, dtype=torch.long)
        elif labels and all(label is not None for label in labels):
            lab = torch.as_tensor([int(label) for label in labels], dtype=torch.long)
        else:
            lab = None
        stacked = torch.stack(images).float() if images else torch.empty(0)
        return ImageBatch(idx, stacked, lab, len(items) - len(indices))

    return collate


def iterate_batches(
    dataset: Dataset, indices: np.ndarray | None = None, batch_size: int = 256, workers: int = 0
) -> Iterator[ImageBatch]:
    """Batches of the chosen items (all by default), in order, with their labels when known."""
    if indices is None:
        indices = np.arange(len(dataset))
    loader = DataLoader(
        _Indexed(dataset, np.asarray(indices)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate(dataset_targets(dataset)),
    )
    yield from loader


def load_all(
    dataset: Dataset, indices: np.ndarray | None = None, batch_size: int = 256, workers: int = 0
) -> ImageBatch:
    """The chosen items in memory at once (for the small sets that figures need)."""
    batches = list(iterate_batches(dataset, indices, batch_size, workers))
    labels = [b.labels for b in batches]
    return ImageBatch(
        torch.cat([b.indices for b in batches]),
        torch.cat([b.images for b in batches if len(b.indices)]),
        torch.cat(labels) if labels and all(lab is not None for lab in labels) else None,
        sum(b.skipped for b in batches),
    )


def seeded_subset(n: int, count: int | None, seed: int) -> np.ndarray:
    """``count`` distinct indices of ``range(n)`` chosen by ``seed`` (all, in order, when count is None or >= n)."""
    if count is None or count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
