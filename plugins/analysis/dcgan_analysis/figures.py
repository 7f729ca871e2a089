"""The PNG figures: grids from dcgan_cli.api.grid_image laid out in titled panels."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from dcgan_analysis.guided import FeatureMaps, saliency_to_image
from dcgan_cli.api import grid_image

TITLE_HEIGHT = 16
GAP = 12


def titled_panels(panels: list[tuple[str, Image.Image]], background: str = "white") -> Image.Image:
    """Panels side by side, each with a one-line title above it."""
    font = ImageFont.load_default()
    width = sum(p.width for _, p in panels) + GAP * (len(panels) - 1)
    height = max(p.height for _, p in panels) + TITLE_HEIGHT
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, panel in panels:
        canvas.paste(panel.convert("RGB"), (x, TITLE_HEIGHT))
        draw.text((x + 2, 2), title, fill="black", font=font)
        x += panel.width + GAP
    return canvas


def enlarged(panel: Image.Image, tile: int) -> Image.Image:
    """Panels of small tiles (32 pixels or less) doubled with visible pixels, so the figure is readable."""
    return panel.resize((panel.width * 2, panel.height * 2), Image.NEAREST) if tile <= 32 else panel


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
