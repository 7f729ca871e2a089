"""The dataset catalog: what the ``dcgan_register_datasets`` hook registers, and the options a dataset gets.

Importing this module imports no torch: `dcgan datasets` lists the catalog without loading anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.registry import RegistrationError, collect


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
    factory: Callable[[DataOptions], Any]  # -> a torch Dataset
    description: str = ""
    expects: str = ""  # what it needs on disk, for `dcgan datasets`
    size: int = 64  # default image side
    channels: int = 3  # default channels
    downloads: bool = False  # --download fetches it from its publisher


def _dataset_entry(name, factory, *, description="", expects="", size=64, channels=3, downloads=False):
    if not callable(factory):
        raise RegistrationError(f"dataset {name!r}: the factory must be callable as factory(options)")
    if type(size) is not int or size < 1 or channels not in (1, 3):
        raise RegistrationError(f"dataset {name!r}: size must be a positive whole number and channels 1 or 3")
    return name, DatasetSpec(name, factory, str(description), str(expects), size, channels, bool(downloads)), factory


def get_datasets() -> dict[str, DatasetSpec]:
    """Every dataset registered by built-in and installed plugins: ``register(name, factory, ...)``."""
    return collect("dcgan_register_datasets", "dataset", _dataset_entry).as_dict()


def get_spec(name: str) -> DatasetSpec:
    specs = get_datasets()
    if name not in specs:
        raise DcganError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(specs))} (see `dcgan datasets`)")
    return specs[name]


def resolve_options(spec: DatasetSpec, options: DataOptions) -> DataOptions:
    """Fill size and channels from the dataset's defaults."""
    return replace(options, size=options.size or spec.size, channels=options.channels or spec.channels)


def default_download_dir(name: str) -> Path:
    """Where --download puts a dataset when --data is not given."""
    return Path("data") / name
