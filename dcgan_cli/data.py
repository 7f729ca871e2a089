"""Datasets by name, fed by the ``dcgan_register_datasets`` hook, and the training batch order.

Every dataset yields images as float tensors (channels, size, size) scaled to [-1, 1], the
range of the generator's Tanh (paper, section 4), or tuples whose first item is such an
image. An item may be ``None`` (an unreadable file): the collate function skips it and
counts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dcgan_cli.errors import DcganError
from dcgan_cli.hookspecs import hookimpl
from dcgan_cli.latent import derive_seed


@dataclass(frozen=True)
class DataOptions:
    """What the user said about the data; ``size``/``channels`` None means the dataset's default."""

    data: Path | None = None
    size: int | None = None
    channels: int | None = None
    download: bool = False
    category: str | None = None
    workers: int = 0


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    factory: Callable[[DataOptions], Dataset]
    description: str = ""
    expects: str = ""  # what it needs on disk, for `dcgan datasets`
    size: int = 64  # default image side
    channels: int = 3  # default channels


def get_datasets() -> dict[str, DatasetSpec]:
    """Every dataset registered by built-in and installed plugins."""
    from dcgan_cli import plugins

    specs: dict[str, DatasetSpec] = {}

    def register(name, factory, *, description="", expects="", size=64, channels=3):
        specs[name] = DatasetSpec(name, factory, description, expects, size, channels)

    plugins.call_each("dcgan_register_datasets", register=register)
    return specs


def get_spec(name: str) -> DatasetSpec:
    specs = get_datasets()
    if name not in specs:
        raise DcganError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(specs))} (see `dcgan datasets`)")
    return specs[name]


def resolve_options(spec: DatasetSpec, options: DataOptions) -> DataOptions:
    """Fill size and channels from the dataset's defaults."""
    return replace(options, size=options.size or spec.size, channels=options.channels or spec.channels)


def load_dataset(name: str, options: DataOptions) -> tuple[Dataset, DataOptions]:
    """The dataset ``name`` with its options resolved; an empty dataset is a clear error."""
    spec = get_spec(name)
    options = resolve_options(spec, options)
    dataset = spec.factory(options)
    if len(dataset) == 0:
        where = f" in {options.data}" if options.data else ""
        raise DcganError(f"dataset {name!r} has no images{where}; it expects: {spec.expects or spec.description}")
    return dataset, options


class TensorImages(Dataset):
    """Images held in memory as one (N, C, H, W) tensor in [-1, 1], with optional labels."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        self.images = images.contiguous()
        self.targets = targets

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        # DataLoader's batched fetch: one indexing op instead of a stack of N items.
        return self.images[torch.as_tensor(indices)]


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return images.mul(2).sub_(1)


def load_digits_images(size: int = 32, channels: int = 1) -> TensorImages:
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 scans), resized to ``size``."""
    from sklearn.datasets import load_digits
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    images = F.resize(images, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    images = to_unit_range(images.clamp_(0.0, 1.0))
    if channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return TensorImages(images, torch.from_numpy(digits.target).long())


def _digits(options: DataOptions) -> Dataset:
    return load_digits_images(options.size, options.channels)


def _fake(options: DataOptions) -> Dataset:
    from torchvision.datasets import FakeData
    from torchvision.transforms import v2

    c = options.channels
    transform = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * c, [0.5] * c)])
    return FakeData(size=512, image_size=(c, options.size, options.size), num_classes=10, transform=transform)


@hookimpl
def dcgan_register_datasets(register):
    register(
        "digits",
        _digits,
        description="scikit-learn's bundled handwritten digits: 1,797 real 8x8 scans, resized (the default)",
        expects="nothing: bundled with scikit-learn",
        size=32,
        channels=1,
    )
    register(
        "fake",
        _fake,
        description="512 random-noise images from torchvision's FakeData, for smoke tests",
        expects="nothing: generated",
        size=32,
        channels=3,
    )


class Batch(NamedTuple):
    images: torch.Tensor  # (B, C, H, W) in [-1, 1]
    skipped: int  # unreadable items dropped from this batch


def collate_images(items) -> Batch:
    """Stack the images of a batch, dropping unreadable (None) items and counting them."""
    if isinstance(items, torch.Tensor):  # TensorImages' batched fetch
        return Batch(items, 0)
    images = []
    for item in items:
        if item is None:
            continue
        images.append(item[0] if isinstance(item, (tuple, list)) else item)
    skipped = len(items) - len(images)
    if not images:
        return Batch(torch.empty(0), skipped)
    return Batch(torch.stack(images), skipped)


class EpochBatchSampler(Sampler[list[int]]):
    """The batches of one epoch: a permutation seeded by (seed, epoch), from batch ``start`` on.

    The order depends only on the seed and the epoch, so a run resumed mid-epoch sees exactly
    the batches an uninterrupted run would. The last partial batch is dropped (BatchNorm on
    a tiny batch is noisy, and every epoch then has the same number of steps).

    With several processes, ``batch_size`` is the global batch and rank ``r`` of ``world_size``
    takes the r-th equal slice of each one, so the global batches do not depend on how many
    processes share them (a run resumes exactly with another process count). torch's
    DistributedSampler deals every N-th index of the epoch to each rank instead, so its
    global batches change with N.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"a batch of {batch_size} does not split into {world_size} equal slices")
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.n // self.batch_size - self.start)

    def __iter__(self):
        g = torch.Generator().manual_seed(derive_seed(self.seed, "data", self.epoch))
        order = torch.randperm(self.n, generator=g).tolist()
        per_rank = self.batch_size // self.world_size
        for b in range(self.start, self.n // self.batch_size):
            first = b * self.batch_size + self.rank * per_rank
            yield order[first : first + per_rank]


def make_loader(dataset: Dataset, sampler: EpochBatchSampler, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over the sampler's batches. Its worker seeds come from (seed, epoch),
    not from the global RNG, so resuming mid-epoch draws nothing extra."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(derive_seed(sampler.seed, "workers", sampler.epoch)),
    )
