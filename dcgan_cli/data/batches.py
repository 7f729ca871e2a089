"""Training batches: the seeded order of each epoch, split over processes, and collation."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dcgan_cli.core.prior import derive_seed


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

    def __init__(
        self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1
    ):
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
