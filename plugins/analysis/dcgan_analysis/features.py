"""Feature extractors, extraction in batches, and a per-run cache of extracted features.

The paper's classification features (section 5.1): "we use all layers of the
discriminator's convolutional features, max-pooling each layer's representation to
produce a 4 x 4 spatial grid. These features are then flattened and concatenated".
For the 32x32 grey model with ndf=32 that is

    block 1 (N, 32, 16, 16) -> max-pool -> (N, 32, 4, 4) ->  512
    block 2 (N, 64,  8,  8) -> max-pool -> (N, 64, 4, 4) -> 1024
    block 3 (N, 128, 4,  4) -> (already 4x4)             -> 2048
                                              concatenated: 3584 features per image.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from dcgan_analysis.data import RealImages, iterate_batches
from dcgan_cli.api import (
    DCGANConfig,
    DcganError,
    Discriminator,
    RunPaths,
    derive_seed,
    init_weights,
    load_discriminator,
    progress_task,
    read_safetensors,
    resolve_device,
    sha256_file,
    write_safetensors,
)

PAPER_GRID = 4  # each layer max-pooled to a 4x4 grid
CACHE_FORMAT = "dcgan-analysis/features"
CACHE_VERSION = 1


class FeatureExtractor(abc.ABC):
    """Turns batches of images (B, C, H, W) in [-1, 1] into feature vectors (B, d)."""

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""  # one line: what the features are

    device: torch.device = torch.device("cpu")

    def describe(self) -> str:
        """Exactly what produced the features (with the weights it used), for every printed number."""
        return self.DESCRIPTION or self.NAME

    def cache_key(self) -> dict | None:
        """What identifies this extractor's output for the cache (weights, setup); None: never cache."""
        return None

    def to(self, device: torch.device) -> FeatureExtractor:
        self.device = device
        return self

    @abc.abstractmethod
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float images in [-1, 1] -> (B, d) float32 features on the CPU."""


class NetworkFeatures(FeatureExtractor):
    """An extractor that runs one network, ``self.net``, moved with the extractor."""

    net: torch.nn.Module

    def to(self, device: torch.device) -> NetworkFeatures:
        self.device = device
        self.net = self.net.to(device)
        return self


class PixelFeatures(FeatureExtractor):
    """The raw pixels, flattened: the baseline any learned feature must beat."""

    NAME = "pixels"
    DESCRIPTION = "raw pixels, flattened"

    def cache_key(self) -> dict:
        return {"extractor": self.NAME}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.detach().float().reshape(images.shape[0], -1).cpu()


def pooled_features(
    discriminator: Discriminator,
    images: torch.Tensor,
    grid: int = PAPER_GRID,
    layers: tuple[int, ...] | None = None,
    pool: str = "max",
) -> torch.Tensor:
    """Each chosen conv block's output pooled to a ``grid`` x ``grid`` map, flattened, concatenated.

    (N, C, H, W) -> (N, sum of channels_l * grid * grid). ``layers`` are block indices
    (0 = the first, highest-resolution one); None takes every block, as the paper does.
    """
    maps = discriminator.features(images)
    chosen = range(len(maps)) if layers is None else layers
    pooling = F.adaptive_max_pool2d if pool == "max" else F.adaptive_avg_pool2d
    return torch.cat([pooling(maps[i], grid).flatten(1) for i in chosen], dim=1)


def feature_layout(config: DCGANConfig, grid: int = PAPER_GRID, layers: tuple[int, ...] | None = None) -> list[dict]:
    """Per chosen block: its output shape (C, H, W) and how many features it gives after pooling."""
    net = Discriminator(config)
    with torch.no_grad():
        maps = net.eval().features(torch.zeros(1, config.channels, config.size, config.size))
    chosen = range(len(maps)) if layers is None else layers
    return [
        {
            "layer": i + 1,
            "shape": list(maps[i].shape[1:]),
            "pooled": [maps[i].shape[1], min(grid, maps[i].shape[2]), min(grid, maps[i].shape[3])],
            "features": maps[i].shape[1] * min(grid, maps[i].shape[2]) * min(grid, maps[i].shape[3]),
        }
        for i in chosen
    ]


def check_layers(config: DCGANConfig, layers: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """1-based layer numbers from the user -> 0-based block indices, refusing ones the model lacks."""
    if layers is None:
        return None
    if not layers:
        raise DcganError("--layers names no layer; give 1-based layer numbers such as 1,2,3, or leave it out for all")
    bad = [n for n in layers if not 1 <= n <= config.n_layers]
    if bad:
        raise DcganError(f"--layers {bad[0]}: this discriminator has conv layers 1..{config.n_layers}")
    return tuple(sorted({n - 1 for n in layers}))


class DiscriminatorFeatures(NetworkFeatures):
    """A discriminator's conv features pooled per layer (the paper's protocol by default)."""

    NAME = "discriminator"

    def __init__(
        self,
        discriminator: Discriminator,
        *,
        label: str,
        weights: dict,
        grid: int = PAPER_GRID,
        layers: tuple[int, ...] | None = None,
        pool: str = "max",
    ):
        self.net = discriminator.eval()
        self.label = label  # "trained discriminator", "random discriminator"
        self.weights = weights  # identifies the weights: a file's sha256, or an init seed
        self.grid, self.layers, self.pool = grid, layers, pool

    @classmethod
    def trained(cls, run_dir: Path, **setup) -> DiscriminatorFeatures:
        """The run's trained discriminator (discriminator.safetensors)."""
        path = RunPaths(Path(run_dir)).discriminator
        net = load_discriminator(run_dir)
        return cls(
            net, label="trained discriminator", weights={"file": path.name, "sha256": sha256_file(path)}, **setup
        )

    @classmethod
    def random(cls, config: DCGANConfig, seed: int, **setup) -> DiscriminatorFeatures:
        """A discriminator of the same shape with the paper's random initialisation, never trained."""
        net = Discriminator(config)
        init_weights(net, torch.Generator().manual_seed(seed))
        return cls(
            net, label="random discriminator", weights={"random_init_seed": seed, "model": config.to_dict()}, **setup
        )

    def setup(self) -> dict:
        layers = "all" if self.layers is None else [i + 1 for i in self.layers]
        return {"grid": self.grid, "layers": layers, "pool": self.pool}

    def describe(self) -> str:
        if "sha256" in self.weights:
            source = f"{self.weights['file']} sha256 {self.weights['sha256'][:12]}"
        else:
            source = f"random init, seed {self.weights['random_init_seed']}"
        pooling = (
            "averaged over space"
            if (self.pool, self.grid) == ("avg", 1)
            else f"{self.pool}-pooled to {self.grid}x{self.grid}"
        )
        if self.layers is None:
            how = f"every conv layer {pooling}, concatenated"
        elif len(self.layers) == 1:
            how = f"conv layer {self.layers[0] + 1} {pooling}"
        else:
            how = f"conv layers {','.join(str(i + 1) for i in self.layers)} {pooling}, concatenated"
        return f"{self.label} ({source}): {how}"

    def cache_key(self) -> dict:
        return {"extractor": self.NAME, "weights": self.weights, **self.setup()}

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        return pooled_features(self.net, x, self.grid, self.layers, self.pool).float().cpu()


def random_init_seed(run_seed: int) -> int:
    """The random discriminator's init seed: derived from the run's seed, not equal to it."""
    return derive_seed(run_seed, "analysis", "random-discriminator") % 2**31


# ---------------------------------------------------------------------------- extraction


@dataclass
class Extracted:
    """Features of the readable items of a dataset, aligned with their indices and labels."""

    features: dict[str, torch.Tensor]  # extractor key -> (N, d)
    indices: torch.Tensor  # (N,) dataset index of each row
    labels: torch.Tensor | None  # (N,) when the dataset is labelled
    skipped: int  # unreadable items
    cached: tuple[str, ...] = ()  # keys that came from the cache


def extract_features(
    real: RealImages,
    extractors: dict[str, FeatureExtractor],
    indices: np.ndarray | None = None,
    batch_size: int = 256,
    device: str = "auto",
    description: str = "extracting features",
) -> Extracted:
    """Every extractor's features of the chosen items, in one pass over the dataset, with a progress bar."""
    dev = resolve_device(device)
    for extractor in extractors.values():
        extractor.to(dev)
    total = len(real) if indices is None else len(indices)
    out: dict[str, list[torch.Tensor]] = {key: [] for key in extractors}
    kept, labels, skipped, labelled = [], [], 0, True
    with progress_task(description, total) as advance:
        for batch in iterate_batches(real.dataset, indices, batch_size, real.options.workers):
            skipped += batch.skipped
            if len(batch.indices):
                for key, extractor in extractors.items():
                    out[key].append(extractor(batch.images))
                kept.append(batch.indices)
                if batch.labels is None:
                    labelled = False
                else:
                    labels.append(batch.labels)
            advance(len(batch.indices) + batch.skipped)
    if not kept:
        raise DcganError(f"dataset {real.name!r}: none of its {total} images could be read; check the files")
    return Extracted(
        {key: torch.cat(parts) for key, parts in out.items()},
        torch.cat(kept),
        torch.cat(labels) if labelled and labels else None,
        skipped,
    )


# ---------------------------------------------------------------------------- cache


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "data"


class FeatureCache:
    """Extracted features kept under the run (analysis/cache/), one safetensors file per
    (extractor setup, dataset, subset). The file's metadata holds the full key, and a file
    is used only when it matches exactly, so new weights or another layer setup re-extract."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    @classmethod
    def for_run(cls, run_dir: Path, enabled: bool = True) -> FeatureCache:
        return cls(Path(run_dir) / "analysis" / "cache" if enabled else None)

    @staticmethod
    def key(extractor: FeatureExtractor, real: RealImages, indices: np.ndarray | None) -> dict | None:
        extractor_key = extractor.cache_key()
        if extractor_key is None:
            return None
        subset = None
        if indices is not None:
            subset = hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()
        return {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "extractor": extractor_key,
            "data": real.identity(),
            "subset": subset,
        }

    def path(self, key: dict) -> Path:
        assert self.folder is not None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return (
            self.folder
            / f"{_slug(key['extractor'].get('extractor', 'features'))}-{_slug(key['data']['dataset'])}-{digest}.safetensors"
        )

    def load(self, key: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int] | None:
        """(features, indices, labels, skipped) from the cache, or None when absent or stale."""
        if self.folder is None:
            return None
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors, meta = read_safetensors(path, "feature cache")
            if json.loads(meta.get("key", "null")) != json.loads(json.dumps(key)):
                return None
            return tensors["features"], tensors["indices"], tensors.get("labels"), int(meta.get("skipped", "0"))
        except (DcganError, KeyError, ValueError):
            return None  # a damaged cache file is simply extracted again (and rewritten)

    def save(self, key: dict, features: torch.Tensor, extracted: Extracted) -> None:
        if self.folder is None:
            return
        tensors = {"features": features, "indices": extracted.indices}
        if extracted.labels is not None:
            tensors["labels"] = extracted.labels
        write_safetensors(self.path(key), tensors, {"key": json.dumps(key), "skipped": str(extracted.skipped)})


def cached_features(
    cache: FeatureCache,
    real: RealImages,
    extractors: dict[str, FeatureExtractor],
    indices: np.ndarray | None = None,
    batch_size: int = 256,
    device: str = "auto",
    description: str = "extracting features",
) -> Extracted:
    """Like ``extract_features``, taking what the cache holds and extracting (then caching) the rest."""
    found: dict[str, tuple] = {}
    keys = {name: cache.key(extractor, real, indices) for name, extractor in extractors.items()}
    for name, key in keys.items():
        if key is not None:
            hit = cache.load(key)
            if hit is not None:
                found[name] = hit
    missing = {name: extractor for name, extractor in extractors.items() if name not in found}
    if missing:
        extracted = extract_features(real, missing, indices, batch_size, device, description)
        for name in missing:
            if keys[name] is not None:
                cache.save(keys[name], extracted.features[name], extracted)
        features = dict(extracted.features)
        indices_t, labels, skipped = extracted.indices, extracted.labels, extracted.skipped
    else:
        features = {}
        _, indices_t, labels, skipped = next(iter(found.values()))
    for name, (feats, idx, _, _) in found.items():
        if not torch.equal(idx, indices_t):  # the dataset's readable items changed: take the fresh pass
            return cached_features(FeatureCache(None), real, extractors, indices, batch_size, device, description)
        features[name] = feats
    return Extracted({name: features[name] for name in extractors}, indices_t, labels, skipped, tuple(found))
