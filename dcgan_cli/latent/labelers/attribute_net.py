"""The CelebA labeler's classifier: a small all-convolutional multi-label network, and its batches."""

from __future__ import annotations

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
