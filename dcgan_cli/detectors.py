"""Object detectors that draw boxes on generated images, fed by ``dcgan_register_detectors``.

`dcgan forget --detector NAME` asks a detector where the object is on each generated
sample instead of reading hand-drawn boxes. A detector is any object with a method

    detect(images) -> boxes

taking images (N, C, H, W) float in [-1, 1] on the CPU and returning, for each image, a
list of (x0, y0, x1, y1) boxes in that image's pixels, x1 and y1 exclusive (the box
covers ``image[:, y0:y1, x0:x1]``). Subclass ``Detector`` for the description and the
output checks, or register a plain function ``f(images) -> boxes``.

The built-in ``windows`` detector finds the windows of the `scenes` dataset on generated
pictures by their colour (sky blue: blue well above red, not below green) and their shape
(a filled, not too elongated rectangle of panes, glazing bars bridged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from dcgan_cli.errors import DcganError
from dcgan_cli.hookspecs import hookimpl

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive


class Detector:
    """Base class for detectors: override ``detect``; ``description`` shows in listings."""

    description: str = ""

    def detect(self, images: torch.Tensor) -> list[list[Box]]:
        """Images (N, C, H, W) in [-1, 1] -> per image, a list of (x0, y0, x1, y1) pixel boxes."""
        raise NotImplementedError


class FunctionDetector(Detector):
    """A plain function ``f(images) -> boxes`` registered as a detector."""

    def __init__(self, function: Callable[[torch.Tensor], Sequence[Sequence[Box]]]):
        self.function = function
        self.description = (function.__doc__ or "").strip().splitlines()[0] if function.__doc__ else ""

    def detect(self, images: torch.Tensor) -> list[list[Box]]:
        return self.function(images)


def as_detector(obj: object) -> Detector:
    """A registered object as a detector: anything with ``detect``, or a plain callable."""
    if callable(getattr(obj, "detect", None)):
        return obj  # type: ignore[return-value]
    if isinstance(obj, type):
        raise ValueError(f"register an instance of {obj.__name__}, not the class")
    if callable(obj):
        return FunctionDetector(obj)
    raise ValueError(f"a detector needs a detect(images) method or must be a function; got {type(obj).__name__}")


def get_detectors() -> dict[str, Detector]:
    """Every detector registered by built-in and installed plugins, by name."""
    from dcgan_cli import plugins

    found: dict[str, Detector] = {}

    def register(name: str, detector: object) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a detector needs a non-empty name")
        if name in found:
            raise ValueError(f"detector name {name!r} is already taken")
        found[name] = as_detector(detector)

    plugins.call_each("dcgan_register_detectors", register=register)
    return found


def get_detector(name: str) -> Detector:
    detectors = get_detectors()
    if name not in detectors:
        known = ", ".join(sorted(detectors)) or "none"
        raise DcganError(f"unknown detector {name!r}; installed detectors: {known} (plugins add more, see docs/plugins.md)")
    return detectors[name]


def run_detector(detector: Detector, images: torch.Tensor, name: str = "detector") -> list[list[Box]]:
    """``detector.detect(images)`` with its answer checked: one list of 4-number boxes per image."""
    n, size = images.shape[0], images.shape[-1]
    result = detector.detect(images)
    try:
        boxes = [[tuple(float(v) for v in box) for box in per_image] for per_image in result]
    except (TypeError, ValueError):
        raise DcganError(f"detector {name!r} returned something other than lists of (x0, y0, x1, y1) boxes") from None
    if len(boxes) != n:
        raise DcganError(f"detector {name!r} returned boxes for {len(boxes)} images, not for each of the {n} it was given")
    for per_image in boxes:
        for box in per_image:
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                raise DcganError(f"detector {name!r} returned a malformed box {box}; expected (x0, y0, x1, y1)")
            x0, y0, x1, y1 = box
            if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= images.shape[-2]):
                raise DcganError(f"detector {name!r} returned the box {box}, outside the {size}x{size} image or empty")
    return boxes


# ---------------------------------------------------------------------------- windows


class WindowDetector(Detector):
    """Sky-blue rectangles: the windows of `scenes` pictures, real or generated."""

    description = "windows of `scenes` pictures, found by their sky-blue panes and rectangular shape"

    def __init__(self, min_blue_over_red: float = 0.15, min_blue: float = 0.4, min_fill: float = 0.6, max_aspect: float = 4.0):
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


def box_iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_boxes(found: list[list[Box]], truth: list[list[Box]], min_iou: float = 0.5) -> tuple[int, int, int]:
    """(true positives, detections, true objects): greedy one-to-one matching at IoU >= min_iou."""
    hits = n_found = n_true = 0
    for det, gt in zip(found, truth):
        n_found += len(det)
        n_true += len(gt)
        pairs = sorted(((box_iou(d, t), i, j) for i, d in enumerate(det) for j, t in enumerate(gt)), reverse=True)
        used_d, used_t = set(), set()
        for iou, i, j in pairs:
            if iou < min_iou:
                break
            if i not in used_d and j not in used_t:
                used_d.add(i)
                used_t.add(j)
                hits += 1
    return hits, n_found, n_true


def boxes_area(boxes: list[list[Box]], height: int, width: int) -> int:
    """Pixels covered by the boxes, overlaps within an image counted once, summed over images."""
    return int(sum(boxes_mask(per_image, height, width).sum() for per_image in boxes))


def boxes_mask(boxes: Sequence[Box], height: int, width: int) -> np.ndarray:
    """(height, width) bool: the pixels whose centre lies inside any of the boxes."""
    mask = np.zeros((height, width), bool)
    centres_y = np.arange(height) + 0.5
    centres_x = np.arange(width) + 0.5
    for x0, y0, x1, y1 in boxes:
        rows = (centres_y >= y0) & (centres_y < y1)
        cols = (centres_x >= x0) & (centres_x < x1)
        mask |= rows[:, None] & cols[None, :]
    return mask


@hookimpl
def dcgan_register_detectors(register):
    register("windows", WindowDetector())
