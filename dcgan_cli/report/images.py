"""Pictures in the report: files and PIL images inlined as data: URIs, epoch frames within a size budget."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image

from dcgan_cli.report.parts import (
    FIGURE_MAX_BYTES,
    FIGURE_MAX_SIDE,
    FRAME_MAX_SIDE,
    FRAME_MIN_SIDE,
    FRAMES_BUDGET,
    IMAGE_ERRORS,
    ReportFigure,
    data_uri,
    human_bytes,
)

# ---------------------------------------------------------------------------- images


def _open_image(source):
    if isinstance(source, Image.Image):
        return source
    image = Image.open(source)
    image.load()
    return image


def _is_grey(image) -> bool:
    import numpy as np

    if image.mode in ("L", "1", "I", "I;16", "F"):
        return True
    if image.mode != "RGB":
        return False
    a = np.asarray(image)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _encode(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _thumbnail_format() -> tuple[str, str, dict]:
    """WebP where Pillow has it (a third of JPEG's size for sample grids), JPEG otherwise."""
    from PIL import features

    if features.check("webp"):
        return "WEBP", "image/webp", {"quality": 80, "method": 4}
    return "JPEG", "image/jpeg", {"quality": 85, "optimize": True}


def _resize(image, side: int):
    w, h = image.size
    scale = side / max(w, h)
    if scale >= 1:
        return image
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


def image_figure(
    source, caption: str = "", *, max_bytes: int = FIGURE_MAX_BYTES, max_side: int = FIGURE_MAX_SIDE
) -> ReportFigure:
    """Inline a picture: a small PNG, JPEG, GIF (animations kept) or WebP file as it is; anything
    larger, or any other format, re-encoded as PNG no larger than ``max_side``."""
    mimes = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
    if isinstance(source, Image.Image):
        image, raw = source, None
    else:
        path = Path(source)
        raw = path.read_bytes()
        image = Image.open(io.BytesIO(raw))
        image.load()  # raises on a truncated or corrupt file
    w, h = image.size
    if raw is not None and image.format in mimes and len(raw) <= max_bytes:
        return ReportFigure(data_uri(raw, mimes[image.format]), caption, w, h)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode == "P" else "RGB")
    smaller = _resize(image, max_side)
    data = _encode(smaller, "PNG", optimize=True)
    note = f"re-encoded from {human_bytes(len(raw))}" if raw is not None else ""
    return ReportFigure(data_uri(data, "image/png"), caption, smaller.size[0], smaller.size[1], note)


def epoch_frames(
    paths: list[Path], budget: int = FRAMES_BUDGET, max_side: int = FRAME_MAX_SIDE
) -> tuple[list[str], int, list[str]]:
    """Thumbnails of every epoch's grid, as data: URIs, sized so all of them fit ``budget``.

    The side is chosen on the newest grid (usually the most detailed): shrunk until its
    encoded size times the number of epochs fits. Should the frames still come out over
    budget (early, noisy grids compress worse), they are made once more, smaller.
    Returns (uris, thumbnail side, notes about unreadable files).
    """
    from dcgan_cli.core.console import track

    fmt, mime, options = _thumbnail_format()
    newest = None
    for path in reversed(paths):  # the newest grid that can be read
        try:
            newest = _open_image(path)
            break
        except IMAGE_ERRORS:
            continue
    if newest is None:
        raise ValueError("none of the grids is a readable picture")
    mode = "L" if _is_grey(newest) else "RGB"
    per_frame = budget / len(paths)
    side = min(max(newest.size), max_side)
    for _ in range(6):
        size = len(_encode(_resize(newest.convert(mode), side), fmt, **options)) * 4 / 3  # base64 adds a third
        if size <= per_frame or side <= FRAME_MIN_SIDE:
            break
        side = max(FRAME_MIN_SIDE, int(side * math.sqrt(per_frame / size) * 0.95))

    def encode_all(side: int) -> tuple[list[str], list[str]]:
        uris, notes = [], []
        for path in track(paths, "report: epoch frames", total=len(paths), unit="frame"):
            try:
                image = _open_image(path).convert(mode)
            except IMAGE_ERRORS as exc:
                uris.append("")
                notes.append(f"{path.name} could not be read ({exc}); its frame is left empty")
                continue
            uris.append(data_uri(_encode(_resize(image, side), fmt, **options), mime))
        return uris, notes

    uris, notes = encode_all(side)
    total = sum(len(uri) for uri in uris)
    if total > budget * 1.1 and side > FRAME_MIN_SIDE:
        side = max(FRAME_MIN_SIDE, int(side * math.sqrt(budget / total) * 0.95))
        uris, notes = encode_all(side)
    return uris, side, notes
