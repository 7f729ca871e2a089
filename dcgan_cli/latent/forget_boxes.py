"""Where the object is, for `dcgan forget`: boxes.json read and checked, or a detector run on samples.

See docs/boxes.md for the file format.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import (
    read_json,
    sha256_file,
)
from dcgan_cli.core.model import Generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.latent.detectors import Box, Detector, run_detector

BOXES_FORMAT = "dcgan-cli/boxes"
FIGURE_SAMPLES = 32  # pairs in the before/after figure
MAX_EXAMPLES = 200_000  # positions fed to the regression; more adds time, not information


# ---------------------------------------------------------------------------- annotations


@dataclass
class Annotations:
    """Generated samples with the boxes drawn on them."""

    z: torch.Tensor  # (n, nz): the z of each annotated sample
    indices: list[int]  # each sample's index in its sheet or seed
    boxes: list[list[Box]]  # per sample, (x0, y0, x1, y1) pixel boxes, x1 and y1 exclusive
    source: dict  # {"sheet": path} or {"seed": s}, plus {"detector": name} when a detector drew them

    @property
    def n_boxes(self) -> int:
        return sum(len(b) for b in self.boxes)

    def to_json(self, size: int) -> dict:
        """The annotations as a boxes.json document (feed it back with --boxes)."""
        doc = {"format": BOXES_FORMAT, **self.source, "size": size}
        doc["samples"] = [
            {"index": i, "boxes": [[_plain(v) for v in box] for box in boxes]}
            for i, boxes in zip(self.indices, self.boxes)
        ]
        return doc


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def _resolve_sheet(name: str, run_dir: Path, boxes_path: Path) -> Path:
    """A sheet named in boxes.json: absolute, or relative to the run folder, then to boxes.json's folder.
    The sheet's picture (sheet-001.png) stands for its z file (sheet-001.z.safetensors)."""
    from dcgan_cli.engines.sampling import z_path_for

    given = Path(name)
    candidates = [given] if given.is_absolute() else [run_dir / given, boxes_path.parent / given]
    for candidate in candidates:
        if candidate.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            candidate = z_path_for(candidate)
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a name too long for the filesystem, or with a NUL byte
            continue
    if len(name) > 200:  # a name no file can have: do not repeat all of it
        raise DcganError(
            f"{boxes_path}: sheet {name[:60]!r}... ({len(name)} characters) is not a file name; name the z file that "
            '`dcgan sample --save-z` wrote, e.g. "sheets/sheet-001.z.safetensors"'
        )
    tried = ", ".join(str(c) for c in candidates)
    raise DcganError(
        f"{boxes_path}: sheet {name!r} not found (looked for {tried}); name the z file that "
        '`dcgan sample --save-z` wrote, e.g. "sheets/sheet-001.z.safetensors"'
    )


def _parse_box(value: object, where: str, size: int) -> Box:
    if not (isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_number(v) for v in value)):
        raise DcganError(f"{where}: a box is [x0, y0, x1, y1] (four numbers), got {json.dumps(value)}")
    x0, y0, x1, y1 = (float(v) for v in value)
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise DcganError(
            f"{where}: box {json.dumps(value)} is outside the {size}x{size} image or empty; coordinates are "
            f"pixels of one sample with 0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size} (x1, y1 exclusive)"
        )
    return (x0, y0, x1, y1)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_boxes(path: Path | str, run_dir: Path, size: int, nz: int, prior: str) -> Annotations:
    """boxes.json (see docs/boxes.md) for a run whose samples are ``size`` pixels, checked in full."""
    path = Path(path)
    doc = read_json(path, "boxes file")
    if not isinstance(doc, dict) or not isinstance(doc.get("samples"), list):
        raise DcganError(f'{path}: expected a JSON object with a "samples" list (see docs/boxes.md)')
    if doc.get("format", BOXES_FORMAT) != BOXES_FORMAT:
        raise DcganError(f"{path}: format {doc['format']!r} is not {BOXES_FORMAT!r}")
    if "size" in doc and doc["size"] != size:
        raise DcganError(
            f"{path}: the boxes are drawn on {doc['size']}x{doc['size']} images, but this run draws {size}x{size}; "
            "draw them on samples of this run"
        )
    if ("sheet" in doc) == ("seed" in doc):
        raise DcganError(
            f'{path}: name where the samples come from with either "sheet" (a sheet of `dcgan sample --save-z`) or "seed"'
        )

    if "sheet" in doc:
        if not isinstance(doc["sheet"], str):
            raise DcganError(f'{path}: "sheet" must be a path')
        sheet = _resolve_sheet(doc["sheet"], run_dir, path)
        try:
            all_z = _read_run_sheet(sheet, run_dir)
        except DcganError as exc:  # say which file named the sheet
            raise DcganError(f'{path}: "sheet" {doc["sheet"]!r}: {exc}') from None
        source = {"sheet": _sheet_name(sheet, run_dir)}
        count = all_z.shape[0]
        known = f"sheet {sheet} holds samples 0..{count - 1}"
    else:
        if not (isinstance(doc["seed"], int) and not isinstance(doc["seed"], bool) and doc["seed"] >= 0):
            raise DcganError(f'{path}: "seed" must be a whole number >= 0')
        all_z, source, count = None, {"seed": doc["seed"]}, None
        known = ""
    if all_z is not None and all_z.shape[1] != nz:
        raise DcganError(f"{path}: sheet {sheet} holds z of length {all_z.shape[1]}, this run's nz is {nz}")

    indices: list[int] = []
    boxes: list[list[Box]] = []
    seen: set[int] = set()
    for k, entry in enumerate(doc["samples"]):
        if not isinstance(entry, dict) or "index" not in entry:
            raise DcganError(f'{path}: samples[{k}] must be an object {{"index": i, "boxes": [[x0, y0, x1, y1], ...]}}')
        index = entry["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise DcganError(f"{path}: samples[{k}]: index must be a whole number >= 0, got {json.dumps(index)}")
        if count is not None and index >= count:
            raise DcganError(f"{path}: samples[{k}]: there is no sample {index}; {known}")
        if index in seen:
            raise DcganError(f"{path}: sample {index} is listed twice; put all its boxes in one entry")
        seen.add(index)
        raw = entry.get("boxes", [])
        if not isinstance(raw, list):
            raise DcganError(f'{path}: samples[{k}]: "boxes" must be a list of [x0, y0, x1, y1]')
        boxes.append([_parse_box(b, f"{path}: sample {index}, box {j}", size) for j, b in enumerate(raw)])
        indices.append(index)

    if not any(boxes):
        raise DcganError(
            f"{path} holds no boxes, so there is no positive example to learn from; draw at least one box "
            "around the object (see docs/boxes.md)"
        )
    if all_z is not None:
        z = all_z[torch.as_tensor(indices)]
    else:
        z = torch.stack([seeded_z(source["seed"], 1, nz, prior, start=i)[0] for i in indices])
    return Annotations(z, indices, boxes, source)


def _sheet_name(sheet: Path, run_dir: Path) -> str:
    """How boxes.json names a sheet so it is found again: relative to the run folder, else absolute."""
    try:
        return str(sheet.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(sheet.resolve())


def _read_run_sheet(sheet: Path, run_dir: Path) -> torch.Tensor:
    """A sheet's z, refused when it was drawn by another generator than the run's."""
    from dcgan_cli.engines.sampling import read_sheet

    z, meta = read_sheet(sheet)
    generator = RunPaths(run_dir).generator
    drawn_by = meta.get("generator_sha256", "")
    if drawn_by and generator.is_file() and drawn_by != sha256_file(generator):
        raise DcganError(
            f"sheet {sheet} was drawn by another generator (run {meta.get('run_id', '?')}), so boxes on it do not "
            f"describe the samples of {run_dir}; draw a new sheet with `dcgan sample -r {run_dir} --save-z`"
        )
    return z


@torch.no_grad()
def generate(netG: Generator, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images (N, C, size, size) in [-1, 1] on the CPU, in batches."""
    device = next(netG.parameters()).device
    return (
        torch.cat([netG(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]) if len(z) else torch.empty(0)
    )


def detect_annotations(netG: Generator, detector: Detector, name: str, seed: int, n: int) -> Annotations:
    """Boxes drawn by a detector on samples 0..n-1 of ``seed``."""
    if n < 1:
        raise DcganError(f"--samples must be at least 1, got {n}")
    c = netG.config
    z = seeded_z(seed, n, c.nz, c.prior)
    boxes = run_detector(detector, generate(netG, z), name)
    annotations = Annotations(z, list(range(n)), boxes, {"seed": seed, "detector": name})
    if annotations.n_boxes == 0:
        raise DcganError(
            f"detector {name!r} found nothing on {n} samples of seed {seed}, so there is no positive example; "
            "is the run trained on pictures with that object? Train longer, try more --samples, or draw boxes yourself (--boxes)"
        )
    return annotations
