"""Loading a dataset by name: checks that it reads, describes it, finds unreadable files.

Every dataset yields images as float tensors (channels, size, size) scaled to [-1, 1], the
range of the generator's Tanh (paper, section 4), or tuples whose first item is such an
image. An item may be ``None`` (an unreadable file): the collate function skips it and
counts it.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from dcgan_cli.core.errors import DcganError
from dcgan_cli.data.catalog import SPLITS, DataOptions, get_spec, resolve_options


def load_dataset(name: str, options: DataOptions) -> tuple[Dataset, DataOptions]:
    """The dataset ``name`` with its options resolved (downloading it first with ``download``).

    A dataset with no items, or whose items sampled across it are all unreadable, is a clear
    error here, before any training starts.
    """
    spec = get_spec(name)
    options = resolve_options(spec, options)
    if options.split is not None and options.split not in SPLITS:
        raise DcganError(f"unknown split {options.split!r}; use one of {', '.join(SPLITS)}")
    if options.download and not spec.downloads:
        raise DcganError(f"dataset {name!r} cannot be downloaded; it expects: {spec.expects or spec.description}")
    dataset = spec.factory(options)
    where = f" in {options.data}" if options.data else ""
    if len(dataset) == 0:
        raise DcganError(f"dataset {name!r} has no images{where}; it expects: {spec.expects or spec.description}")
    check_readable(dataset, options, f"dataset {name!r}{where}")
    return dataset, options


READABILITY_PROBES = 32  # items tried, spread over the dataset


def check_readable(dataset: Dataset, options: DataOptions, what: str) -> None:
    """Refuse a dataset none of whose sampled items reads, or whose images have the wrong shape."""
    n = len(dataset)
    k = min(n, READABILITY_PROBES)
    tried = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
    expected = (options.channels, options.size, options.size)
    for index in tried:
        item = dataset[index]
        if item is None:
            continue
        image = item[0] if isinstance(item, (tuple, list)) else item
        if tuple(image.shape) != expected:
            raise DcganError(
                f"{what} gives images of shape {tuple(image.shape)}, not {expected}; check --size and --channels"
            )
        return
    explain = getattr(dataset, "why_unreadable", None)
    reason = explain(tried[0]) if explain else None
    example = f" (e.g. {reason})" if reason else ""
    counted = f"none of its {n} items" if len(tried) == n else f"none of {len(tried)} items tried across its {n}"
    raise DcganError(
        f"{what} has no readable image: {counted} decodes{example}; check that --data points at the right files"
    )


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


def resize_digit_scans(images: torch.Tensor, size: int) -> torch.Tensor:
    """Grey scans (N, 1, h, w) in [0, 1] -> (N, 1, size, size) in [-1, 1], bicubic, as the
    `digits` dataset enlarges its 8x8 scans (and `dcgan invert` a user's digit for such a run)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    images = F.resize(images, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return to_unit_range(images.clamp_(0.0, 1.0))


def load_digits_images(size: int = 32, channels: int = 1) -> TensorImages:
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 scans), resized to ``size``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = resize_digit_scans(torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1), size)
    if channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return TensorImages(images, torch.from_numpy(digits.target).long())


def describe_dataset(name: str, dataset: Dataset, options: DataOptions) -> dict:
    """What `dcgan datasets NAME` shows: size, image shape, split, classes or attributes."""
    where = getattr(dataset, "database", None) or options.data  # LSUN: the database --category picked
    info = {
        "name": name,
        "data": str(where) if where is not None else None,
        "items": len(dataset),
        "shape": [options.channels, options.size, options.size],
        "split": getattr(dataset, "split", None) or options.split,
    }
    for field in ("classes", "attr_names"):
        if getattr(dataset, field, None) is not None:
            info[field] = list(getattr(dataset, field))
    return info


def _unreadable_flags(items) -> list[bool]:
    return [item is None for item in items]


def find_unreadable(dataset: Dataset, workers: int = 0, batch_size: int = 64) -> list[int]:
    """Indices of every unreadable item, reading the whole dataset in order (with a progress bar)."""
    from dcgan_cli.core.console import progress_task

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_unreadable_flags)
    bad: list[int] = []
    with progress_task("reading", len(dataset)) as advance:
        start = 0
        for flags in loader:
            bad.extend(start + i for i, flag in enumerate(flags) if flag)
            start += len(flags)
            advance(len(flags))
    return bad
