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

from dcgan_cli import datasets_arrays, datasets_download, datasets_files, datasets_lsun
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
    split: str | None = None  # train, valid, test or all; None: the dataset's default


SPLITS = ("train", "valid", "test", "all")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    factory: Callable[[DataOptions], Dataset]
    description: str = ""
    expects: str = ""  # what it needs on disk, for `dcgan datasets`
    size: int = 64  # default image side
    channels: int = 3  # default channels
    downloads: bool = False  # --download fetches it from its publisher


def get_datasets() -> dict[str, DatasetSpec]:
    """Every dataset registered by built-in and installed plugins."""
    from dcgan_cli import plugins

    specs: dict[str, DatasetSpec] = {}

    def register(name, factory, *, description="", expects="", size=64, channels=3, downloads=False):
        specs[name] = DatasetSpec(name, factory, description, expects, size, channels, downloads)

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
            raise DcganError(f"{what} gives images of shape {tuple(image.shape)}, not {expected}; check --size and --channels")
        return
    explain = getattr(dataset, "why_unreadable", None)
    reason = explain(tried[0]) if explain else None
    example = f" (e.g. {reason})" if reason else ""
    counted = f"none of its {n} items" if len(tried) == n else f"none of {len(tried)} items tried across its {n}"
    raise DcganError(f"{what} has no readable image: {counted} decodes{example}; check that --data points at the right files")


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
    from dcgan_cli.progress import progress_task

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_unreadable_flags)
    bad: list[int] = []
    with progress_task("reading", len(dataset)) as advance:
        start = 0
        for flags in loader:
            bad.extend(start + i for i, flag in enumerate(flags) if flag)
            start += len(flags)
            advance(len(flags))
    return bad


def default_download_dir(name: str) -> Path:
    """Where --download puts a dataset when --data is not given."""
    return Path("data") / name


def _data_root(options: DataOptions, name: str, expects: str, downloads: bool = True) -> Path:
    if options.data is not None:
        return Path(options.data)
    if options.download:
        return default_download_dir(name)
    raise DcganError(f"{name} needs --data: {expects}" + ("; or add --download" if downloads else ""))


def _refuse(options: DataOptions, name: str, *, category: bool = True, split: bool = True) -> None:
    if category and options.category:
        raise DcganError(f"{name} has no categories; drop --category (it picks an LSUN database)")
    if split and options.split:
        raise DcganError(f"{name} has no splits; drop --split")


LSUN_EXPECTS = (
    "an LSUN LMDB database (a folder such as bedroom_train_lmdb holding data.mdb), or a folder of several "
    "with --category bedroom; from https://github.com/fyu/lsun"
)
CELEBA_EXPECTS = (
    "the CelebA folder: img_align_celeba/ (000001.jpg ...) and list_attr_celeba.txt, plus "
    "list_eval_partition.txt for --split train|valid|test"
)
CIFAR10_EXPECTS = "cifar-10-batches-py/ (data_batch_1..5, test_batch; or the binary *.bin version); --split train|test|all"
MNIST_EXPECTS = "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (gzipped or not; t10k-* for --split test)"
FOLDER_EXPECTS = (
    "a folder of images (jpg, png, webp, bmp, gif, tiff), searched recursively; "
    "when every image lies in a subfolder, each first-level subfolder is a class"
)


def _lsun(options: DataOptions) -> Dataset:
    if options.split:
        raise DcganError("lsun picks its split by --category (bedroom or bedroom_val), not --split")
    root = options.data
    if options.download:
        root = _data_root(options, "lsun", LSUN_EXPECTS)
        datasets_download.download_lsun(root, options.category)
    database = datasets_lsun.find_lsun_database(root, options.category)
    return datasets_lsun.LSUNDataset(database, options.size, options.channels)


def _downloadable(name: str, expects: str, load: Callable, download: Callable[[Path], None]) -> Callable[[DataOptions], Dataset]:
    """The factory of a dataset that lives in a --data folder which --download can fill;
    ``load(root, size, channels, split)`` reads it."""

    def factory(options: DataOptions) -> Dataset:
        _refuse(options, name, split=False)
        root = _data_root(options, name, expects)
        if options.download:
            download(root)
        return load(root, options.size, options.channels, options.split)

    return factory


_celeba = _downloadable("celeba", CELEBA_EXPECTS, datasets_files.CelebADataset, datasets_download.download_celeba)
_cifar10 = _downloadable("cifar10", CIFAR10_EXPECTS, datasets_arrays.load_cifar10, datasets_download.download_cifar10)
_mnist = _downloadable("mnist", MNIST_EXPECTS, datasets_arrays.load_mnist, datasets_download.download_mnist)


def _folder(options: DataOptions) -> Dataset:
    _refuse(options, "folder")
    return datasets_files.ImageFolderDataset(_data_root(options, "folder", FOLDER_EXPECTS, downloads=False), options.size, options.channels)


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
    register(
        "lsun",
        _lsun,
        description="LSUN scenes (the paper's bedrooms), read lazily from LMDB; center crop, then resize",
        expects=LSUN_EXPECTS,
        downloads=True,
    )
    register(
        "celeba",
        _celeba,
        description="CelebA aligned faces with their 40 attributes (Smiling, Male, ...): items (image, attrs)",
        expects=CELEBA_EXPECTS,
        downloads=True,
    )
    register(
        "cifar10",
        _cifar10,
        description="CIFAR-10, 60,000 32x32 photos in 10 classes: items (image, label)",
        expects=CIFAR10_EXPECTS,
        size=32,
        downloads=True,
    )
    register(
        "mnist",
        _mnist,
        description="MNIST handwritten digits (or Fashion-MNIST, same files), 28x28 resized: items (image, label)",
        expects=MNIST_EXPECTS,
        size=32,
        channels=1,
        downloads=True,
    )
    register(
        "folder",
        _folder,
        description="any folder tree of images; items (image, label) when it has class subfolders",
        expects=FOLDER_EXPECTS,
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
    out = None
    if torch.utils.data.get_worker_info() is not None:
        # In a worker, stack straight into shared memory, as torch's default_collate does: the
        # batch then reaches the main process without a copy, and the worker never mallocs a
        # batch-sized buffer (glibc keeps such freed buffers in its heap, which then grows a
        # batch at a time over a long epoch).
        first = images[0]
        storage = first._typed_storage()._new_shared(len(images) * first.numel(), device=first.device)
        out = first.new(storage).resize_(len(images), *first.shape)
    return Batch(torch.stack(images, out=out), skipped)


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
