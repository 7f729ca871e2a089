"""The labelers' classifiers: a small all-convolutional network, its batches and its training loop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class AttributeNet(nn.Module):
    """A small all-convolutional multi-label classifier, shaped like the DCGAN discriminator.

    (N, C, S, S) -> stride-2 convs (C -> w -> 2w -> ...) down to 4x4 -> 4x4 conv -> (N, A) logits.
    """

    def __init__(self, size: int, channels: int, n_attributes: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c_out, s = channels, width, size
        while s > 4:
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c_in, c_out, s = c_out, min(c_out * 2, 256), s // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, n_attributes, 4, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten(1)


def _collate_labelled(items):
    """Stack (image, attrs) items, dropping unreadable (None) ones."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    return torch.stack([it[0] for it in items]).float(), torch.stack([torch.as_tensor(it[1]) for it in items]).float()


def attribute_batches(dataset, indices: np.ndarray, batch_size: int, workers: int = 0):
    """(images, attrs) batches of the items at ``indices``, in that order, decoded by ``workers`` processes."""
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, [int(i) for i in indices]),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate_labelled,
    )
    for batch in loader:
        if batch is not None:
            yield batch


def held_out_split(n: int, held_out: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) item indices: a seeded permutation, its first ``held_out`` items held out."""
    order = torch.randperm(n, generator=generator).numpy()
    return order[held_out:], order[:held_out]


def fit_network(
    net: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    dataset,
    train: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    workers: int = 0,
    progress=None,
    description: str = "training a classifier",
) -> nn.Module:
    """Adam (lr 1e-3, beta1 0.5) on ``loss_fn(logits, labels)`` over reshuffled batches of ``train``, ``steps`` steps.

    ``progress(description, total)`` is a context manager yielding ``advance(n)``; returns the net in eval mode.
    On the CPU it trains on one thread: these networks are small (29 ms a step at 32x32 on one
    core), and on a shared machine torch's threads spin while another process holds a core
    (measured 12x the CPU time per step with two threads on a busy 2-core machine).
    """
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    net.train()
    progress = progress or (lambda description, total: contextlib.nullcontext(lambda n=1: None))
    with progress(description, steps) as advance, _one_thread_on_cpu(device):
        step = 0
        while step < steps:
            order = train[torch.randperm(len(train), generator=generator).numpy()]
            for images, labels in attribute_batches(dataset, order, batch_size, workers):
                loss = loss_fn(net(images.to(device)), labels.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                advance(1)
                if step >= steps:
                    break
    return net.eval()


@contextlib.contextmanager
def _one_thread_on_cpu(device: torch.device):
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
