"""Nearest training images of generated samples, and a memorisation score.

A generator that memorised its training set draws samples that lie much closer to some
training image than new real images do. So the score compares two distributions of
nearest-neighbour distances to the same reference set of training images: those of the
samples, and those of held-out real images that the reference set does not contain.
Without memorisation the samples are no closer than the held-out images (usually
farther); a pile of samples below the held-out images' 5th percentile is the warning sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
CLOSE_QUANTILE = 0.05


def nearest(
    query: torch.Tensor, reference: torch.Tensor, k: int = 1, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distances (n, k) and indices (n, k) of each query row's k nearest reference rows."""
    k = min(k, reference.shape[0])
    ref = reference.double()
    dists, idxs = [], []
    for start in range(0, query.shape[0], chunk):
        d = torch.cdist(query[start : start + chunk].double(), ref)
        values, indices = torch.topk(d, k, dim=1, largest=False)
        dists.append(values.float())
        idxs.append(indices)
    return torch.cat(dists), torch.cat(idxs)


@dataclass
class Memorisation:
    """Nearest-training-image distances of samples against those of held-out real images, in one space."""

    space: str  # "pixels" or the feature extractor's description
    samples: np.ndarray  # (n,) each sample's distance to its nearest training image
    heldout: np.ndarray  # (m,) each held-out real image's distance to its nearest training image

    @property
    def close_fraction(self) -> float:
        """Share of samples nearer to a training image than 95% of held-out real images are (about 0.05 or less is healthy)."""
        threshold = np.quantile(self.heldout, CLOSE_QUANTILE)
        return float((self.samples < threshold).mean())

    @property
    def median_ratio(self) -> float:
        """Median sample distance over median held-out distance (below 1: samples sit closer to the training set)."""
        return float(np.median(self.samples) / max(np.median(self.heldout), 1e-12))

    def summary(self) -> dict:
        from scipy.stats import mannwhitneyu

        # One-sided: are samples closer to the training set than held-out real images are?
        closer = mannwhitneyu(self.samples, self.heldout, alternative="less")
        return {
            "space": self.space,
            "samples": len(self.samples),
            "heldout": len(self.heldout),
            "close_fraction": self.close_fraction,
            "close_fraction_expected": CLOSE_QUANTILE,
            "median_ratio": self.median_ratio,
            "samples_closer_p_value": float(closer.pvalue),
            "sample_quantiles": {str(q): float(np.quantile(self.samples, q)) for q in QUANTILES},
            "heldout_quantiles": {str(q): float(np.quantile(self.heldout, q)) for q in QUANTILES},
        }

    def verdict(self) -> str:
        s = self.summary()
        if s["close_fraction"] > 2 * CLOSE_QUANTILE and s["samples_closer_p_value"] < 0.01:
            return "samples sit closer to training images than new real images do: possible memorisation"
        return "no sign of memorisation: samples are no closer to training images than new real images are"


def memorisation(
    space: str, sample_features: torch.Tensor, heldout_features: torch.Tensor, reference_features: torch.Tensor
) -> Memorisation:
    """Compare nearest-reference distances of samples and of held-out real images."""
    d_samples, _ = nearest(sample_features.flatten(1), reference_features.flatten(1))
    d_heldout, _ = nearest(heldout_features.flatten(1), reference_features.flatten(1))
    return Memorisation(space, d_samples[:, 0].numpy(), d_heldout[:, 0].numpy())
