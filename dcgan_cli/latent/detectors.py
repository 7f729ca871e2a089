"""Object detectors that draw boxes on generated images, fed by ``dcgan_register_detectors``.

`dcgan forget --detector NAME` asks a detector where the object is on each generated
sample instead of reading hand-drawn boxes. A detector is any object with a method

    detect(images) -> boxes

taking images (N, C, H, W) float in [-1, 1] on the CPU and returning, for each image, a
list of (x0, y0, x1, y1) boxes in that image's pixels, x1 and y1 exclusive (the box
covers ``image[:, y0:y1, x0:x1]``). Subclass ``Detector`` for the description and the
output checks, or register a plain function ``f(images) -> boxes``.

The built-in ``windows`` detector is in window_detector.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.registry import RegistrationError, collect

if TYPE_CHECKING:
    import numpy as np
    import torch

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


def _detector_entry(name, detector):
    try:
        return name, as_detector(detector), detector
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"detector {name!r}: {exc}") from None


def get_detectors() -> dict[str, Detector]:
    """Every detector registered by built-in and installed plugins (``register(name, detector)``), by name."""
    return collect("dcgan_register_detectors", "detector", _detector_entry).as_dict()


def get_detector(name: str) -> Detector:
    detectors = get_detectors()
    if name not in detectors:
        known = ", ".join(sorted(detectors)) or "none"
        raise DcganError(
            f"unknown detector {name!r}; installed detectors: {known} (plugins add more, see docs/plugins.md)"
        )
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
        raise DcganError(
            f"detector {name!r} returned boxes for {len(boxes)} images, not for each of the {n} it was given"
        )
    for per_image in boxes:
        for box in per_image:
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                raise DcganError(f"detector {name!r} returned a malformed box {box}; expected (x0, y0, x1, y1)")
            x0, y0, x1, y1 = box
            if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= images.shape[-2]):
                raise DcganError(f"detector {name!r} returned the box {box}, outside the {size}x{size} image or empty")
    return boxes


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
    import numpy as np

    mask = np.zeros((height, width), bool)
    centres_y = np.arange(height) + 0.5
    centres_x = np.arange(width) + 0.5
    for x0, y0, x1, y1 in boxes:
        rows = (centres_y >= y0) & (centres_y < y1)
        cols = (centres_x >= x0) & (centres_x < x1)
        mask |= rows[:, None] & cols[None, :]
    return mask
