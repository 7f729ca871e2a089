"""Forgetting an object (paper, section 6.3.1): find the generator's feature maps that
draw it, and drop them.

The paper's protocol, followed here:
1. Boxes are drawn around the object (windows) on generated samples (150 samples, 52
   boxes in the paper), by hand (boxes.json) or by a detector.
2. The activations of the second-highest transposed convolution (the output of the last
   hidden block: (N, ngf, size/2, size/2)) are read for those samples. Each spatial
   position gives one example of ngf features: positions inside a box are positives,
   positions drawn at random from the same images outside every box are negatives.
3. A logistic regression separates them; every feature map whose weight is above the
   threshold (0: every map that votes "object") is dropped, at all positions.

The drop is baked into the weights: the next layer's input weights for the dropped maps
are set to zero. That equals zeroing the maps' activations (the next convolution has no
bias), so the new generator is an ordinary one: sample, export and every engine run it
unchanged.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import (
    atomic_write_bytes,
    atomic_write_json,
    read_safetensors,
    sha256_file,
)
from dcgan_cli.core.model import Generator
from dcgan_cli.core.networks import save_generator
from dcgan_cli.core.runs import RunPaths, next_numbered, read_run_config, run_lock
from dcgan_cli.latent.detectors import Box
from dcgan_cli.latent.forget_boxes import Annotations, generate

BOXES_FORMAT = "dcgan-cli/boxes"
FIGURE_SAMPLES = 32  # pairs in the before/after figure
MAX_EXAMPLES = 200_000  # positions fed to the regression; more adds time, not information


# ---------------------------------------------------------------------------- the regression


def default_layer(netG: Generator) -> int:
    """The last hidden block: its output feeds the highest (output) transposed convolution."""
    return len(netG.blocks) - 1


def check_layer(netG: Generator, layer: int | None) -> int:
    n = len(netG.blocks)
    if layer is None:
        return default_layer(netG)
    if not -n <= layer < n:
        sides = ", ".join(f"{i}: {4 * 2**i}x{4 * 2**i}" for i in range(n))
        raise DcganError(
            f"--layer {layer}: this generator has hidden blocks 0..{n - 1} ({sides}); the default {n - 1} is the paper's"
        )
    return layer % n


def block_features(netG: Generator, z: torch.Tensor, layer: int, batch_size: int = 256) -> torch.Tensor:
    """Activations (N, maps, r, r) of hidden block ``layer`` (after its ReLU), on the CPU."""
    out = []
    device = next(netG.parameters()).device
    with torch.no_grad():
        for chunk in z.split(batch_size):
            x = chunk.to(device).reshape(chunk.shape[0], netG.config.nz, 1, 1)
            for block in netG.blocks[: layer + 1]:
                x = block(x)
            out.append(x.float().cpu())
    return torch.cat(out)


def box_cells(boxes: list[Box], resolution: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(inside, touched): (r, r) bool masks of the feature-map cells whose centre lies in a box,
    and of the cells that overlap a box at all. A box too small to hold a cell centre marks
    the cell under its own centre."""
    stride = size / resolution
    inside = np.zeros((resolution, resolution), bool)
    touched = np.zeros((resolution, resolution), bool)
    centres = (np.arange(resolution) + 0.5) * stride
    starts, stops = np.arange(resolution) * stride, (np.arange(resolution) + 1) * stride
    for x0, y0, x1, y1 in boxes:
        rows = (centres >= y0) & (centres < y1)
        cols = (centres >= x0) & (centres < x1)
        if not rows.any():
            rows[min(resolution - 1, int((y0 + y1) / 2 / stride))] = True
        if not cols.any():
            cols[min(resolution - 1, int((x0 + x1) / 2 / stride))] = True
        inside |= rows[:, None] & cols[None, :]
        touched |= ((starts < y1) & (stops > y0))[:, None] & ((starts < x1) & (stops > x0))[None, :]
    return inside, touched


def training_examples(
    features: torch.Tensor, boxes: list[list[Box]], size: int, negatives_per_positive: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(X (examples, maps), y): activation vectors inside boxes (1) and at random positions of the
    same images clear of every box (0), ``negatives_per_positive`` of them for each positive."""
    n, maps, r, _ = features.shape
    positives, candidates = [], []
    for i in range(n):
        inside, touched = box_cells(boxes[i], r, size)
        positives.extend((i, v, u) for v, u in zip(*np.nonzero(inside)))
        candidates.extend((i, v, u) for v, u in zip(*np.nonzero(~touched)))
    rng = np.random.default_rng(seed)
    if len(positives) > MAX_EXAMPLES // 2:
        positives = [positives[k] for k in rng.choice(len(positives), MAX_EXAMPLES // 2, replace=False)]
    n_neg = min(len(candidates), max(1, int(round(len(positives) * negatives_per_positive))))
    if n_neg == 0 or not positives:
        raise DcganError(
            "the boxes cover every position of every sample: there is nothing outside them to contrast with; "
            "draw tighter boxes, or annotate more samples"
        )
    negatives = [candidates[k] for k in rng.choice(len(candidates), n_neg, replace=False)]
    where = np.array(positives + negatives)
    flat = features.permute(0, 2, 3, 1).numpy()  # (N, r, r, maps)
    x = flat[where[:, 0], where[:, 1], where[:, 2]].astype(np.float64)
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return x, y


@dataclass
class ForgetResult:
    """What the regression found and which maps were dropped."""

    layer: int
    resolution: int  # side of the layer's feature maps
    maps: int  # feature maps in the layer
    dropped: list[int]  # dropped map indices, largest weight first
    weights: list[float]  # the regression's weight of each map (on standardised activations)
    threshold: float
    max_maps: int | None  # at most this many maps dropped (None: every map above the threshold)
    positives: int
    negatives: int
    accuracy: float  # the regression's accuracy on its own examples
    samples: int
    boxes: int

    def to_json(self) -> dict:
        return asdict(self)


def fit_map_weights(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """Logistic regression weight of each feature map, and the training accuracy.

    Activations are standardised first (maps differ in scale by orders of magnitude), which
    keeps each weight's sign and makes one threshold mean the same for every map. A map that
    never fires has a weight of exactly 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    model.fit(x, y)
    weights = model[-1].coef_[0].copy()
    weights[x.std(axis=0) == 0] = 0.0
    return weights, float(model.score(x, y))


def next_conv(netG: Generator, layer: int) -> torch.nn.ConvTranspose2d:
    """The transposed convolution that reads block ``layer``'s maps."""
    return netG.blocks[layer + 1].conv if layer + 1 < len(netG.blocks) else netG.to_image.conv


def drop_maps(netG: Generator, layer: int, maps: list[int]) -> Generator:
    """A copy of ``netG`` that never uses those maps of block ``layer``: the next layer's input
    weights for them are zero, which equals zeroing the maps at every position."""
    baked = copy.deepcopy(netG)
    with torch.no_grad():
        conv = next_conv(baked, layer)  # weight (in = maps of block ``layer``, out, 4, 4)
        conv.weight[torch.as_tensor(maps, dtype=torch.long)] = 0.0
    return baked.eval()


def find_object_maps(
    netG: Generator,
    annotations: Annotations,
    layer: int | None = None,
    threshold: float = 0.0,
    negatives_per_positive: float = 1.0,
    seed: int = 0,
    max_maps: int | None = None,
) -> ForgetResult:
    """The paper's regression on block ``layer``'s activations inside vs outside the boxes;
    the maps above ``threshold`` are the ones to drop (only the ``max_maps`` largest, if given)."""
    layer = check_layer(netG, layer)
    if not math.isfinite(threshold):
        raise DcganError(f"--threshold must be a number, got {threshold}")
    if max_maps is not None and max_maps < 1:
        raise DcganError(f"--max-maps must be at least 1, got {max_maps}")
    if not (math.isfinite(negatives_per_positive) and negatives_per_positive > 0):
        raise DcganError(f"--negatives must be above 0, got {negatives_per_positive}")
    features = block_features(netG, annotations.z, layer)
    x, y = training_examples(features, annotations.boxes, netG.config.size, negatives_per_positive, seed)
    weights, accuracy = fit_map_weights(x, y, seed)
    above = [int(i) for i in np.argsort(-weights, kind="stable") if weights[i] > threshold]
    dropped = above[:max_maps] if max_maps is not None else above
    return ForgetResult(
        layer=layer,
        resolution=features.shape[-1],
        maps=features.shape[1],
        dropped=dropped,
        weights=[round(float(w), 6) for w in weights],
        threshold=threshold,
        max_maps=max_maps,
        positives=int(y.sum()),
        negatives=int(len(y) - y.sum()),
        accuracy=round(accuracy, 4),
        samples=len(annotations.indices),
        boxes=annotations.n_boxes,
    )


# ---------------------------------------------------------------------------- the new run


def check_new_run(out: Path, source: Path, force: bool) -> None:
    """--out must be a new folder (or an existing one with --force) that does not hold the source run."""
    out_r, source_r = out.resolve(), source.resolve()
    if out_r == source_r or source_r.is_relative_to(out_r):
        raise DcganError(f"--out {out} would overwrite the run it starts from ({source}); choose a new folder")
    if out.exists() and not out.is_dir():
        raise DcganError(f"--out {out} is a file; choose a folder for the new run")
    if out.is_dir() and any(p.name != ".lock" for p in out.iterdir()) and not force:
        raise DcganError(f"{out} already exists; pass --force to replace it or choose another --out")


def before_after_figure(before: torch.Tensor, after: torch.Tensor, path: Path, title_after: str) -> None:
    """The same z before and after, as two grids side by side (small images at twice their size)."""
    from dcgan_cli.core.images import enlarged, grid_image, save_image, titled_panels

    nrow = min(8, before.shape[0])  # 32 pairs: two 8x4 grids
    tile = before.shape[-1]
    panels = [("before", grid_image(before, nrow)), (title_after, grid_image(after, nrow))]
    save_image(titled_panels([(title, enlarged(panel, tile)) for title, panel in panels]), path)


def figure_z(annotations: Annotations, count: int = FIGURE_SAMPLES) -> tuple[torch.Tensor, list[int]]:
    """Up to ``count`` annotated samples for the figure, those with boxes first."""
    order = sorted(range(len(annotations.indices)), key=lambda k: (not annotations.boxes[k], k))[:count]
    return annotations.z[torch.as_tensor(order)], [annotations.indices[k] for k in order]


@dataclass
class ForgetOutcome:
    run: Path
    figure: Path
    figure_json: Path
    boxes_json: Path
    result: ForgetResult


def write_forget_run(
    source: Path,
    out: Path,
    netG: Generator,
    baked: Generator,
    result: ForgetResult,
    annotations: Annotations,
    force: bool = False,
) -> ForgetOutcome:
    """A full run folder holding the baked generator, plus the before/after figure and its JSON."""
    check_new_run(out, source, force)
    source_paths, out_paths = RunPaths(source), RunPaths(out)
    config = read_run_config(source)
    _, gen_meta = read_safetensors(source_paths.generator, "generator weights")
    record = {
        "source_run": str(source),
        "source_run_id": config.get("run_id", source.name),
        "source_generator_sha256": sha256_file(source_paths.generator),
        "layer": result.layer,
        "dropped_maps": result.dropped,
        "maps": result.maps,
        "threshold": result.threshold,
        "max_maps": result.max_maps,
        "annotations": annotations.source,
    }
    with run_lock(out, "forget"):
        for child in out.iterdir():  # only reached with --force, or for an empty folder
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        new_config = {**config, "run_id": out.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "forget": record}
        atomic_write_json(out_paths.config, new_config)
        meta = {}
        try:
            meta = json.loads(gen_meta.get("meta", "{}"))
        except json.JSONDecodeError:
            pass
        save_generator(out, baked.state_dict(), baked.config, {**meta, "forget": record})
        if source_paths.discriminator.is_file():
            atomic_write_bytes(out_paths.discriminator, source_paths.discriminator.read_bytes())

        figures = out_paths.figures
        stem = next_numbered(figures, "forget", (".png", ".json", ".boxes.json"))
        z, indices = figure_z(annotations)
        before, after = generate(netG, z), generate(baked, z)
        figure = stem.with_name(stem.name + ".png")
        before_after_figure(before, after, figure, f"after: {len(result.dropped)} of {result.maps} maps dropped")
        boxes_json = stem.with_name(stem.name + ".boxes.json")
        atomic_write_json(boxes_json, annotations.to_json(netG.config.size))
        figure_json = stem.with_name(stem.name + ".json")
        atomic_write_json(
            figure_json,
            {
                "figure": figure.name,
                "boxes": boxes_json.name,
                **record,
                "figure_samples": indices,
                "result": result.to_json(),
                "mean_abs_change": round(float((after - before).abs().mean()) / 2, 5),  # on a [0, 1] pixel scale
            },
        )
    return ForgetOutcome(out, figure, figure_json, boxes_json, result)
