"""Turning generator output into pictures: uint8 conversion, grids, PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from dcgan_cli.core.files import atomic_output


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round_().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def grid_image(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A PIL image of the batch laid out in a grid (``nrow`` images per row; square by default)."""
    images = images.detach().float().cpu()
    if nrow is None:
        nrow = max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(images, nrow=nrow, padding=padding, normalize=True, value_range=(-1, 1), pad_value=1.0)
    array = grid.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(array)


def save_image(image: Image.Image, path: Path | str, **kwargs) -> None:
    """Save atomically; the format follows the suffix."""
    path = Path(path)
    with atomic_output(path) as tmp:
        image.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"), **kwargs)


def save_grid(images: torch.Tensor, path: Path | str, nrow: int | None = None, padding: int = 2) -> None:
    save_image(grid_image(images, nrow, padding), path)


def image_from_tensor(image: torch.Tensor) -> Image.Image:
    """One (C, H, W) image in [-1, 1] as a PIL image."""
    array = to_uint8(image.unsqueeze(0))[0]
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


# ---------------------------------------------------------------------------- figures drawn with Pillow

TITLE_HEIGHT = 16
PANEL_GAP = 12


def font(size: int = 12):
    """Pillow's built-in font at ``size`` pixels (its small bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def enlarged(panel: Image.Image, tile: int) -> Image.Image:
    """Panels of small tiles (32 pixels or less) doubled with visible pixels, so a figure is readable."""
    return panel.resize((panel.width * 2, panel.height * 2), Image.NEAREST) if tile <= 32 else panel


def titled_panels(panels: list[tuple[str, Image.Image]], background: str = "white") -> Image.Image:
    """Panels side by side, each with a one-line title above it."""
    from PIL import ImageDraw

    width = sum(p.width for _, p in panels) + PANEL_GAP * (len(panels) - 1)
    height = max(p.height for _, p in panels) + TITLE_HEIGHT
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    small = font(11)
    x = 0
    for title, panel in panels:
        canvas.paste(panel.convert("RGB"), (x, TITLE_HEIGHT))
        draw.text((x + 2, 2), title, fill="black", font=small)
        x += panel.width + PANEL_GAP
    return canvas
