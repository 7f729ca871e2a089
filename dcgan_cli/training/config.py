"""Training arguments (TrainConfig, the paper's defaults) and the run folder's config.json."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dcgan_cli import __version__
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import (
    atomic_write_json,
)
from dcgan_cli.core.model import (
    DCGANConfig,
    dataclass_from_json,
)
from dcgan_cli.core.runs import RunPaths

# What --precision may say for training (step.py maps each to its autocast dtype).
TRAINING_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Training arguments; defaults are the paper's (section 4)."""

    dataset: str = "digits"
    data: str | None = None  # path to the data on disk, when the dataset needs one
    category: str | None = None  # LSUN category and the like
    split: str | None = None  # train, valid, test or all (datasets that have splits)
    epochs: int = 25
    max_steps: int | None = None  # stop after this many steps in all, whatever the epochs
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # DataLoader worker processes
    checkpoint_every: int = 500  # steps between checkpoints (besides the epoch-end snapshots)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    snapshot_every: int = 0  # epochs between epoch-end snapshots; 0: auto, on a time budget (snapshots.py)
    log_every: int = 10  # steps between lines of metrics.jsonl
    precision: str = "fp32"  # fp32, or bf16/fp16 autocast (fp16 with a gradient scaler)
    channels_last: bool = True  # NHWC tensors and weights, which cuDNN and oneDNN convolve fastest
    compile: bool = False  # torch.compile G and D
    sync_bn: bool = False  # several processes: BatchNorm statistics over the global batch, not each slice

    def validate(self, source: str = "training config") -> TrainConfig:
        def bad(what: str) -> DcganError:
            return DcganError(f"{source}: {what}")

        if not isinstance(self.dataset, str) or not self.dataset:
            raise bad("dataset must be a name")
        for name in ("epochs", "batch_size", "seed", "workers", "checkpoint_every", "keep_checkpoints", "log_every"):
            value = getattr(self, name)
            if type(value) is not int:
                raise bad(f"{name} must be a whole number, got {value!r}")
        if type(self.snapshot_every) is not int or self.snapshot_every < 0:
            raise bad(f"snapshot_every must be a whole number of epochs (0: auto), got {self.snapshot_every!r}")
        if self.max_steps is not None and (type(self.max_steps) is not int or self.max_steps < 1):
            raise bad(f"max_steps must be a positive whole number, got {self.max_steps!r}")
        if self.epochs < 1:
            raise bad(f"epochs must be at least 1, got {self.epochs}")
        if not 1 <= self.batch_size <= 65536:
            raise bad(f"batch size must be between 1 and 65536, got {self.batch_size}")
        for name in ("lr", "beta1", "beta2"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not math.isfinite(value):
                raise bad(f"{name} must be a number, got {value!r}")
        if not 0 < self.lr < 1:
            raise bad(f"learning rate must be between 0 and 1, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise bad("Adam betas must be in [0, 1)")
        if self.checkpoint_every < 1 or self.log_every < 1 or self.workers < 0 or self.keep_checkpoints < 1:
            raise bad("checkpoint_every, log_every and keep_checkpoints must be at least 1, workers at least 0")
        if self.precision not in TRAINING_PRECISIONS:
            raise bad(f"precision must be one of {', '.join(TRAINING_PRECISIONS)}, got {self.precision!r}")
        for name in ("channels_last", "compile", "sync_bn"):
            if type(getattr(self, name)) is not bool:
                raise bad(f"{name} must be true or false, got {getattr(self, name)!r}")
        return self

    @classmethod
    def from_dict(cls, data: object, source: str = "training config") -> TrainConfig:
        return dataclass_from_json(cls, data, source, "training arguments").validate(source)


def versions() -> dict:
    return {"dcgan-cli": __version__, "torch": torch.__version__, "python": platform.python_version()}


def create_run(root: Path, model: DCGANConfig, train: TrainConfig, dataset_info: dict | None = None) -> RunPaths:
    """Make the run folder and write its config.json."""
    model.validate()
    train.validate()
    paths = RunPaths(Path(root))
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        paths.config,
        {
            "format": "dcgan-cli/run",
            "format_version": 1,
            "run_id": paths.root.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": model.to_dict(),
            "train": asdict(train),
            "dataset": dataset_info or {"name": train.dataset},
            "versions": versions(),
        },
    )
    return paths
