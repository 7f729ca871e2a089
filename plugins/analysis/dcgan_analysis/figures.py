"""The PNG figures: grids from dcgan_cli.api.grid_image laid out in titled panels (dcgan_cli.api.titled_panels)."""

from __future__ import annotations

import torch
from PIL import Image

from dcgan_analysis.guided import FeatureMaps, saliency_to_image
from dcgan_cli.api import enlarged, grid_image, titled_panels


def saliency_grid(maps: FeatureMaps) -> Image.Image:
    """One row per feature, one column per image: the guided-backpropagation maps."""
    features, per_feature = maps.saliency.shape[:2]
    flat = maps.saliency.reshape(features * per_feature, *maps.saliency.shape[2:])
    return grid_image(saliency_to_image(flat), nrow=per_feature)


def inspect_figure(trained: FeatureMaps, random: FeatureMaps) -> Image.Image:
    """Random discriminator on the left, trained on the right, as in the paper's fig. 5."""
    tile = trained.saliency.shape[-1]
    return titled_panels(
        [
            ("random discriminator", enlarged(saliency_grid(random), tile)),
            ("trained discriminator", enlarged(saliency_grid(trained), tile)),
        ]
    )


def neighbours_figure(
    samples: torch.Tensor, pixel_neighbours: torch.Tensor, feature_neighbours: torch.Tensor
) -> Image.Image:
    """Per row: a sample; its nearest training images in pixel space; in discriminator-feature space.

    samples (K, C, H, W); *_neighbours (K, n, C, H, W), all in [-1, 1]."""
    k, n = pixel_neighbours.shape[:2]
    tail = pixel_neighbours.shape[2:]
    panels = [
        ("sample", grid_image(samples, nrow=1)),
        ("nearest in pixels", grid_image(pixel_neighbours.reshape(k * n, *tail), nrow=n)),
        ("nearest in D features", grid_image(feature_neighbours.reshape(k * n, *tail), nrow=n)),
    ]
    return titled_panels([(title, enlarged(panel, samples.shape[-1])) for title, panel in panels])
