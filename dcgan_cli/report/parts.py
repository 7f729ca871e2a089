"""What a report is made of: sections (the plugin contract), figures, limits and small helpers."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

GENERATOR_MARK = "dcgan-cli report"  # <meta name="generator">: tells our own reports from other files

# Size budget: a report of hundreds of epochs must stay small enough to mail and open fast.
FRAMES_BUDGET = 6_000_000  # bytes of encoded epoch frames in all (base64 included)
FRAME_MAX_SIDE = 512  # epoch thumbnails are never larger than this, in pixels
FRAME_MIN_SIDE = 64
FIGURE_MAX_BYTES = 2_500_000  # a figure file larger than this is re-encoded smaller
FIGURE_MAX_SIDE = 1600
CURVE_MAX_POINTS = 2000  # metrics rows beyond this are averaged in buckets

# JSON views: how much of an unexpectedly large result file is shown.
VIEW_MAX_ITEMS = 200
VIEW_MAX_DEPTH = 5
VIEW_MAX_TEXT = 1000
VIEW_MAX_NUMBERS = 16  # longer lists of numbers (z vectors, say) are summarised

# What a damaged or hostile picture raises; it becomes a note in the page, never a failure.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

SERIES = (  # metrics.jsonl key, label, chart
    ("loss_d", "D loss", "losses"),
    ("loss_g", "G loss", "losses"),
    ("d_x", "D(x)", "outputs"),
    ("d_g_z", "D(G(z))", "outputs"),
    ("d_g_z_after", "D(G(z)) after D's step", "outputs"),
    ("images_per_s", "images/s", "speed"),
)
CHARTS = (  # id, title, y range (None: from the data)
    ("losses", "Losses", None),
    ("outputs", "Discriminator outputs (probability real)", (0.0, 1.0)),
    ("speed", "Throughput", None),
)


# ---------------------------------------------------------------------------- what a section holds


@dataclass
class ReportFigure:
    """One picture in the page: a data: URI and where it came from."""

    uri: str
    caption: str = ""
    width: int = 0
    height: int = 0
    note: str = ""  # e.g. "re-encoded from 3.1 MB"


@dataclass
class ReportSection:
    """A section of the report. Plugins return these from ``dcgan_report_sections``.

    ``text`` is plain text (escaped); ``images`` are paths or PIL images (or (caption, image)
    pairs), inlined into the page; ``data`` is any JSON-like value, shown as tables; ``html``
    is a trusted fragment inserted as is: it must be self-contained (data: URIs only, the
    page's security policy blocks any request and any script of its own).
    """

    title: str
    text: str = ""
    images: list = field(default_factory=list)
    data: object = None
    html: str = ""
    order: int = 500  # built-in sections use 0-400; plugin sections follow by default
    anchor: str = ""
    source: str = ""  # what it was made from, shown small under the title


@dataclass
class BuiltSection:
    """A section ready for the template."""

    anchor: str
    title: str
    kind: str  # "run", "curves", "samples" or "generic"
    order: int
    source: str = ""
    text: str = ""
    figures: list[ReportFigure] = field(default_factory=list)
    view: dict | None = None
    html: str = ""
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class ReportResult:
    path: Path
    size: int
    sections: list[str]
    warnings: list[str]


# ---------------------------------------------------------------------------- helpers


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def read_json_lenient(path: Path) -> tuple[object, str | None]:
    """(value, None), or (None, why) when the file cannot be read as JSON: shown, not fatal."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name} could not be read ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"


def round_sig(value: float, digits: int = 5) -> float | None:
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def newest_numbered(folder: Path, stem: str) -> tuple[int, dict[str, Path], int] | None:
    """The newest ``stem-NNN.*`` result set in ``folder``: (NNN, {suffix: path}, how many sets exist)."""
    if not folder.is_dir():
        return None
    pattern = re.compile(rf"^{re.escape(stem)}-(\d{{3,}})(\.[A-Za-z0-9]+)$")
    sets: dict[int, dict[str, Path]] = {}
    for path in folder.iterdir():
        m = pattern.match(path.name)
        if m and path.is_file():
            sets.setdefault(int(m.group(1)), {})[m.group(2).lower()] = path
    if not sets:
        return None
    number = max(sets)
    return number, sets[number], len(sets)
