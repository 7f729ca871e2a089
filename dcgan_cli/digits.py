"""Measurements on digit images: a classifier trained on the real labelled digits.

Used to judge what a generator trained on `digits` draws (benchmarks/quality_digits.py)
and to label generated samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dcgan_cli.data import load_digits_images


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
