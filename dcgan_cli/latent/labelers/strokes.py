"""Measurements on digit images: a classifier trained on the real labelled digits.

Used to judge what a generator trained on `digits` draws (benchmarks/quality_digits.py),
to label generated samples, and to measure strokes (thickness, slant) for concepts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from dcgan_cli.data.loading import load_digits_images


@dataclass
class DigitClassifier:
    """Multinomial logistic regression on the 32x32 pixels of the real digits."""

    model: object
    size: int
    held_out_accuracy: float

    @classmethod
    def fit(cls, size: int = 32, seed: int = 0) -> DigitClassifier:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        data = load_digits_images(size=size, channels=1)
        x = data.images.reshape(len(data), -1).numpy()
        y = data.targets.numpy()
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
        model = LogisticRegression(max_iter=3000, C=0.5)
        model.fit(x_train, y_train)
        accuracy = float(model.score(x_test, y_test))
        model.fit(x, y)  # then use every labelled digit
        return cls(model, size, accuracy)

    def _pixels(self, images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) in [-1, 1] at this classifier's size -> (N, H*W)."""
        if images.shape[1] == 3:
            images = images.mean(dim=1, keepdim=True)
        if images.shape[-1] != self.size:
            images = torch.nn.functional.interpolate(images, size=(self.size, self.size), mode="area")
        return images.reshape(images.shape[0], -1).float().cpu().numpy()

    def predict_proba(self, images: torch.Tensor) -> np.ndarray:
        """(N, 10) class probabilities."""
        return self.model.predict_proba(self._pixels(images))


@functools.lru_cache(maxsize=4)
def fitted_classifier(size: int = 32) -> DigitClassifier:
    """One DigitClassifier per process and size (fitting takes seconds; labelers and tests share it)."""
    return DigitClassifier.fit(size=size)


# ---------------------------------------------------------------------------- strokes

MEASURE_SIZE = 32  # strokes are measured at 32x32, so numbers mean the same at every model size


def _ink(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1], light strokes on dark -> (N, 32, 32) ink in [0, 1]."""
    images = images.detach().float().cpu()
    if images.shape[1] == 3:
        images = images.mean(dim=1, keepdim=True)
    if images.shape[-1] != MEASURE_SIZE:
        images = torch.nn.functional.interpolate(images, size=(MEASURE_SIZE, MEASURE_SIZE), mode="area")
    return images[:, 0].clamp(-1, 1).add(1).div(2)


def stroke_thickness(images: torch.Tensor) -> torch.Tensor:
    """Mean stroke width in pixels of a 32x32 image: 2 * ink area / ink perimeter, per image (N,).

    For a stroke of width w and length L >> w, area = w L and perimeter ~ 2 L. On grey
    images the area is the sum of ink and the perimeter the total variation (sum of
    gradient magnitudes): by the coarea formula these are the area and the perimeter of
    every level set of the ink, integrated over levels, so blur does not change the ratio
    much and no threshold is needed.
    """
    u = _ink(images)
    gy = (u[:, 2:, 1:-1] - u[:, :-2, 1:-1]) / 2
    gx = (u[:, 1:-1, 2:] - u[:, 1:-1, :-2]) / 2
    perimeter = torch.sqrt(gx.square() + gy.square()).sum(dim=(1, 2))
    area = u.sum(dim=(1, 2))
    return torch.where(perimeter > 1e-6, 2 * area / perimeter.clamp_min(1e-6), torch.zeros_like(area))


def stroke_slant(images: torch.Tensor) -> torch.Tensor:
    """Slant in degrees from upright, positive leaning right (as italics), per image (N,).

    From the ink's second moments: the shear dx/dy that makes the ink's principal axis
    vertical (the measure used to deskew handwritten digits).
    """
    u = _ink(images)
    n, h, w = u.shape
    rows = torch.arange(h, dtype=u.dtype).view(1, h, 1)
    cols = torch.arange(w, dtype=u.dtype).view(1, 1, w)
    mass = u.sum(dim=(1, 2)).clamp_min(1e-6)
    ybar = (u * rows).sum(dim=(1, 2)) / mass
    xbar = (u * cols).sum(dim=(1, 2)) / mass
    dy = rows - ybar.view(n, 1, 1)
    dx = cols - xbar.view(n, 1, 1)
    cov = (u * dx * dy).sum(dim=(1, 2)) / mass
    var_y = (u * dy.square()).sum(dim=(1, 2)) / mass
    shear = -cov / var_y.clamp_min(1e-6)  # rows grow downwards: leaning right means x falls as rows grow
    return torch.rad2deg(torch.atan(shear))


@dataclass
class StrokeCalibration:
    """Thickness and slant of reference digits of each class, to turn measurements into percentiles."""

    thickness: list[np.ndarray]  # per class, sorted
    slant: list[np.ndarray]

    @classmethod
    def measure(cls, thickness: np.ndarray, slant: np.ndarray, labels: np.ndarray) -> StrokeCalibration:
        return cls(
            [np.sort(thickness[labels == c]) for c in range(10)], [np.sort(slant[labels == c]) for c in range(10)]
        )

    @classmethod
    def fit(cls) -> StrokeCalibration:
        """From the real digits."""
        data = load_digits_images(size=MEASURE_SIZE, channels=1)
        return cls.measure(
            stroke_thickness(data.images).numpy(), stroke_slant(data.images).numpy(), data.targets.numpy()
        )

    def replaced_where_enough(self, other: StrokeCalibration, minimum: int = 30) -> StrokeCalibration:
        """``other``'s reference for each class it has at least ``minimum`` digits of, this one's elsewhere."""
        pick = [len(o) >= minimum for o in other.thickness]
        return StrokeCalibration(
            [o if ok else r for o, r, ok in zip(other.thickness, self.thickness, pick)],
            [o if ok else r for o, r, ok in zip(other.slant, self.slant, pick)],
        )

    @staticmethod
    def _percentile(values: np.ndarray, proba: np.ndarray, per_class: list[np.ndarray]) -> np.ndarray:
        # Weighted by the class probabilities: a thick "one" is judged against other ones.
        out = np.zeros(len(values))
        for c, ref in enumerate(per_class):
            out += proba[:, c] * np.searchsorted(ref, values, side="right") / len(ref)
        return out

    def thickness_percentile(self, thickness: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """Share of reference digits of the same class with thinner strokes, in [0, 1]."""
        return self._percentile(thickness, proba, self.thickness)

    def slant_percentile(self, slant: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """Share of reference digits of the same class leaning less to the right, in [0, 1]."""
        return self._percentile(slant, proba, self.slant)


@functools.lru_cache(maxsize=1)
def stroke_calibration() -> StrokeCalibration:
    return StrokeCalibration.fit()
