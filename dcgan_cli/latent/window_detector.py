"""The built-in ``windows`` detector: finds the windows of `scenes` pictures, for `dcgan forget`.

It finds them on generated pictures by their colour (sky blue: blue well above red, not
below green) and their shape (a filled, not too elongated rectangle of panes, glazing bars
bridged). Registering it imports nothing heavy; scipy is imported when it detects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError
from dcgan_cli.hookspecs import hookimpl
from dcgan_cli.latent.detectors import Box, Detector

if TYPE_CHECKING:
    import numpy as np
    import torch


class WindowDetector(Detector):
    """Sky-blue rectangles: the windows of `scenes` pictures, real or generated."""

    description = "windows of `scenes` pictures, found by their sky-blue panes and rectangular shape"

    def __init__(
        self, min_blue_over_red: float = 0.15, min_blue: float = 0.4, min_fill: float = 0.6, max_aspect: float = 4.0
    ):
        self.min_blue_over_red = min_blue_over_red
        self.min_blue = min_blue
        self.min_fill = min_fill
        self.max_aspect = max_aspect

    def sky_mask(self, images: torch.Tensor) -> np.ndarray:
        """(N, H, W) bool: pixels of sky colour (blue well above red, blue not below green)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise DcganError(
                f"the windows detector needs colour images (N, 3, H, W); got shape {tuple(images.shape)}. "
                "Is the run trained on `scenes`?"
            )
        rgb = images.detach().float().cpu().add(1).div(2).numpy()
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        return (b - r >= self.min_blue_over_red) & (b >= g - 0.05) & (b >= self.min_blue)

    def detect(self, images: torch.Tensor) -> list[list[Box]]:
        import numpy as np
        from scipy import ndimage

        masks = self.sky_mask(images)
        size = images.shape[-1]
        frame = max(1, size // 32)  # the frame around the panes, part of the window's box
        min_side = 2 * frame
        out = []
        for mask in masks:
            # Close gaps of up to two pixels (glazing bars), then fill what the panes enclose.
            closed = ndimage.binary_fill_holes(ndimage.binary_closing(mask, np.ones((3, 3), bool), border_value=0))
            labels, count = ndimage.label(closed)
            boxes = []
            for index, found in enumerate(ndimage.find_objects(labels), start=1):
                if found is None:
                    continue
                rows, cols = found
                h, w = rows.stop - rows.start, cols.stop - cols.start
                if min(h, w) < min_side or max(h, w) > self.max_aspect * min(h, w):
                    continue
                fill = float((labels[found] == index).sum()) / (h * w)
                if fill < self.min_fill:
                    continue
                boxes.append(
                    (
                        float(max(0, cols.start - frame)),
                        float(max(0, rows.start - frame)),
                        float(min(size, cols.stop + frame)),
                        float(min(images.shape[-2], rows.stop + frame)),
                    )
                )
            out.append(boxes)
        return out


@hookimpl
def dcgan_register_detectors(register):
    register("windows", WindowDetector())
