"""The run report: one self-contained HTML page showing everything a run folder holds.

Everything the page shows is inside the file: images as data: URIs, metrics as JSON that a
small script draws into SVG, so the page opens from disk, by mail or from an archive, with
no server and no request to the network (a Content-Security-Policy in the page forbids any).

What it collects, each section only when the run has its data:
- the run: config.json (model, training arguments, dataset, versions) and progress;
- curves of the losses, D(x) and D(G(z)) and throughput from metrics.jsonl;
- the fixed-noise grid of every epoch (samples/epoch-NNN.png) behind a slider that also
  plays them as an animation; frames are re-encoded as small thumbnails sized so that all
  epochs together fit a fixed budget, and the newest epoch is also shown at full size;
- the newest walk, arithmetic and forget figures, the export and bench results, the concept
  bank, and what the analysis plugin left (classify, fid, inspect, neighbours). Their JSON
  is shown as tables whatever its shape, so new fields show up without changes here;
- sections from plugins, through the ``dcgan_report_sections`` hook.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import math
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from dcgan_cli import __version__
from dcgan_cli.checkpoint import RunPaths, atomic_write_text, list_checkpoints

REPORT_NAME = "report.html"
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
class _Built:
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


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _read_json_lenient(path: Path) -> tuple[object, str | None]:
    """(value, None), or (None, why) when the file cannot be read as JSON: shown, not fatal."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name} could not be read ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"


def _round(value: float, digits: int = 5) -> float | None:
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
        return ReportFigure(_data_uri(raw, mimes[image.format]), caption, w, h)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode == "P" else "RGB")
    smaller = _resize(image, max_side)
    data = _encode(smaller, "PNG", optimize=True)
    note = f"re-encoded from {_human_bytes(len(raw))}" if raw is not None else ""
    return ReportFigure(_data_uri(data, "image/png"), caption, smaller.size[0], smaller.size[1], note)


def epoch_frames(
    paths: list[Path], budget: int = FRAMES_BUDGET, max_side: int = FRAME_MAX_SIDE
) -> tuple[list[str], int, list[str]]:
    """Thumbnails of every epoch's grid, as data: URIs, sized so all of them fit ``budget``.

    The side is chosen on the newest grid (usually the most detailed): shrunk until its
    encoded size times the number of epochs fits. Should the frames still come out over
    budget (early, noisy grids compress worse), they are made once more, smaller.
    Returns (uris, thumbnail side, notes about unreadable files).
    """
    from dcgan_cli.progress import track

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
            uris.append(_data_uri(_encode(_resize(image, side), fmt, **options), mime))
        return uris, notes

    uris, notes = encode_all(side)
    total = sum(len(uri) for uri in uris)
    if total > budget * 1.1 and side > FRAME_MIN_SIDE:
        side = max(FRAME_MIN_SIDE, int(side * math.sqrt(budget / total) * 0.95))
        uris, notes = encode_all(side)
    return uris, side, notes


# ---------------------------------------------------------------------------- JSON of any shape


def _scalar_text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= VIEW_MAX_TEXT else text[:VIEW_MAX_TEXT] + f"… ({len(text):,} characters)"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def json_view(value, depth: int = 0) -> dict:
    """A tree the template draws as nested tables, whatever shape the JSON has.

    Nodes: {"type": "scalar", "text"}, {"type": "mapping", "items": [(key, node)]},
    {"type": "table", "columns", "rows"} for a list of flat objects, {"type": "list", "items"};
    each with "more" (items left out). Long lists of numbers are summarised in one line.
    """
    if _is_scalar(value):
        return {"type": "scalar", "text": _scalar_text(value), "number": _is_number(value)}
    if depth >= VIEW_MAX_DEPTH:
        text = json.dumps(value, default=str)
        return {"type": "scalar", "text": _scalar_text(text), "number": False}
    if isinstance(value, dict):
        items = list(value.items())
        return {
            "type": "mapping",
            "items": [(str(k), json_view(v, depth + 1)) for k, v in items[:VIEW_MAX_ITEMS]],
            "more": max(0, len(items) - VIEW_MAX_ITEMS),
        }
    if isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            return {"type": "scalar", "text": "(empty)", "number": False}
        if len(items) > VIEW_MAX_NUMBERS and all(_is_number(v) for v in items):
            finite = [float(v) for v in items if math.isfinite(v)]
            summary = f"{len(items)} numbers"
            if finite:
                mean = sum(finite) / len(finite)
                summary += f": min {min(finite):.4g}, mean {mean:.4g}, max {max(finite):.4g}"
            return {"type": "scalar", "text": summary, "number": False}
        if all(_is_number(v) for v in items):
            return {"type": "scalar", "text": ", ".join(_scalar_text(v) for v in items), "number": False}
        if all(isinstance(v, dict) for v in items):  # a list of records: one table
            columns: list[str] = []
            for row in items[:VIEW_MAX_ITEMS]:
                for key in row:
                    if str(key) not in columns:
                        columns.append(str(key))
            if len(columns) <= 24:
                rows = [
                    [json_view(row[c], depth + 1) if c in row else None for c in columns]
                    for row in ({str(k): v for k, v in r.items()} for r in items[:VIEW_MAX_ITEMS])
                ]
                return {"type": "table", "columns": columns, "rows": rows, "more": max(0, len(items) - VIEW_MAX_ITEMS)}
        return {
            "type": "list",
            "items": [json_view(v, depth + 1) for v in items[:VIEW_MAX_ITEMS]],
            "more": max(0, len(items) - VIEW_MAX_ITEMS),
        }
    return {"type": "scalar", "text": _scalar_text(str(value)), "number": False}


# ---------------------------------------------------------------------------- sections


def read_metrics(path: Path) -> list[dict]:
    """Rows of metrics.jsonl; a line cut short (a crash, training still writing) is skipped."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and _is_number(row.get("step")):
            rows.append(row)
    return rows


def curve_data(rows: list[dict], max_points: int = CURVE_MAX_POINTS) -> dict:
    """Steps, epochs and each known series, averaged in buckets when there are many rows."""
    rows = sorted(rows, key=lambda r: r["step"])
    n = len(rows)
    if n > max_points:
        buckets = [rows[i * n // max_points : (i + 1) * n // max_points] for i in range(max_points)]
    else:
        buckets = [[r] for r in rows]

    def mean(bucket, key):
        values = [float(r[key]) for r in bucket if _is_number(r.get(key)) and math.isfinite(r[key])]
        return _round(sum(values) / len(values)) if values else None

    series = []
    for key, label, chart in SERIES:
        if any(_is_number(r.get(key)) for r in rows):
            series.append({"key": key, "label": label, "chart": chart, "y": [mean(b, key) for b in buckets]})
    return {
        "step": [b[-1]["step"] for b in buckets],
        "epoch": [b[-1].get("epoch") for b in buckets],
        "series": series,
        "averaged": len(rows) > max_points,
        "rows": len(rows),
    }


def _run_section(paths: RunPaths, config: dict, rows: list[dict]) -> _Built:
    import torch

    from dcgan_cli.tensorboard_log import tensorboard_dir

    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    dataset = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    summary: dict[str, object] = {"run": config.get("run_id", paths.root.name), "created": config.get("created")}
    if dataset:
        summary["dataset"] = dataset.get("name")
    if model:
        summary["model"] = (
            f"{model.get('size')}x{model.get('size')}x{model.get('channels')}, nz {model.get('nz')}, "
            f"ngf {model.get('ngf')}, ndf {model.get('ndf')}, {model.get('prior')} prior"
        )
    latest, _ = _read_json_lenient(paths.latest) if paths.latest.is_file() else (None, None)
    if isinstance(latest, dict) and "step" in latest:
        summary["checkpoint step"] = latest["step"]
    if rows:
        last = rows[-1]
        summary["epoch reached"] = f"{last.get('epoch')} of {train.get('epochs', '?')}"
        summary["steps logged"] = f"{rows[0]['step']} to {last['step']} ({len(rows)} lines)"
        for key, label, _chart in SERIES:
            if _is_number(last.get(key)):
                summary[f"last {label}"] = last[key]
        if _is_number(last.get("time")) and _is_number(rows[0].get("time")) and len(rows) > 1:
            summary["time between first and last line"] = str(
                datetime.timedelta(seconds=round(last["time"] - rows[0]["time"]))
            )
    checkpoints = list_checkpoints(paths.root)
    if checkpoints:
        summary["checkpoints kept"] = ", ".join(p.name for _, p in checkpoints)
    for name in ("generator.safetensors", "discriminator.safetensors"):
        if (paths.root / name).is_file():
            summary[name] = _human_bytes((paths.root / name).stat().st_size)
    notes = []
    if tensorboard_dir(paths.root).is_dir():
        notes.append(f"TensorBoard logs: tensorboard --logdir {tensorboard_dir(paths.root)}")
    versions = dict(config.get("versions") or {}) if isinstance(config.get("versions"), dict) else {}
    now = {"dcgan-cli": __version__, "torch": torch.__version__, "python": platform.python_version()}
    with_plugins = _plugin_versions()
    details = {
        "model": model or None,
        "training arguments": train or None,
        "dataset": dataset or None,
        "versions when trained": versions or None,
        "versions making this report": {**now, **with_plugins},
    }
    shown = ("model", "train", "dataset", "versions", "run_id", "created", "format", "format_version")
    extra_config = {k: v for k, v in config.items() if k not in shown}
    if extra_config:
        details["other config"] = extra_config
    details = {k: v for k, v in details.items() if v}
    return _Built(
        "run",
        "Run",
        "run",
        0,
        source="config.json",
        view=json_view(summary),
        notes=notes,
        extra={"details": json_view(details)},
    )


def _plugin_versions() -> dict[str, str]:
    from dcgan_cli import plugins

    return {f"plugin {row['name']}": row["version"] for row in plugins.list_plugins() if not row["builtin"]}


def _curves_section(rows: list[dict]) -> _Built | None:
    if not rows:
        return None
    data = curve_data(rows)
    charts = [
        {"id": cid, "title": title, "range": list(yrange) if yrange else None}
        for cid, title, yrange in CHARTS
        if any(s["chart"] == cid for s in data["series"])
    ]
    notes = []
    if data["averaged"]:
        notes.append(f"{data['rows']:,} lines of metrics.jsonl averaged into {len(data['step']):,} points")
    return _Built(
        "curves",
        "Training curves",
        "curves",
        100,
        source="metrics.jsonl",
        notes=notes,
        extra={"data": data, "charts": charts},
    )


EPOCH_RE = re.compile(r"^epoch-(\d+)\.png$")


def _samples_section(paths: RunPaths) -> _Built | None:
    if not paths.samples.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p) for p in paths.samples.iterdir() if (m := EPOCH_RE.match(p.name)) and p.is_file()
    )
    if not found:
        return None
    notes: list[str] = []
    try:
        uris, side, frame_notes = epoch_frames([p for _, p in found])
        notes += frame_notes
    except IMAGE_ERRORS as exc:
        return _Built("samples", "Samples", "generic", 200, notes=[f"the sample grids could not be read ({exc})"])
    newest = None
    try:
        full = image_figure(found[-1][1], f"epoch {found[-1][0]} at full size")
        if full.width > side:  # the thumbnails are smaller than the grids: show the newest in full
            newest = full
    except IMAGE_ERRORS as exc:
        notes.append(f"{found[-1][1].name} could not be read ({exc})")
    frames = [{"epoch": n, "src": uri} for (n, _), uri in zip(found, uris, strict=True)]
    return _Built(
        "samples",
        "Samples",
        "samples",
        200,
        source=f"samples/epoch-NNN.png ({len(found)} epochs)",
        figures=[newest] if newest else [],
        notes=notes,
        extra={"frames": frames, "side": side},
    )


def _result_section(
    folder: Path, stem: str, title: str, order: int, image_order: tuple[str, ...] = (".png",)
) -> _Built | None:
    """The newest ``stem-NNN`` result: its figure (first of ``image_order`` that exists) and its JSON."""
    found = newest_numbered(folder, stem)
    if found is None:
        return None
    number, files, count = found
    rel = folder.name
    section = _Built(_slug(title), title, "generic", order, source=f"{rel}/{stem}-{number:03d}")
    if count > 1:
        section.notes.append(f"the newest of {count} in {rel}/")
    choices = [files[suffix] for suffix in image_order if suffix in files]
    # A big animation would be cut to its first frame: take the next format when there is one.
    while len(choices) > 1 and choices[0].stat().st_size > FIGURE_MAX_BYTES:
        choices.pop(0)
    for path in choices:
        try:
            section.figures.append(image_figure(path, path.name))
            break
        except IMAGE_ERRORS as exc:
            section.notes.append(f"{path.name} could not be read ({exc})")
    if ".json" in files:
        value, problem = _read_json_lenient(files[".json"])
        if problem:
            section.notes.append(problem)
        else:
            section.view = json_view(value)
    if not section.figures and section.view is None and not section.notes:
        return None
    return section


def _json_section(root: Path, name: str, title: str, order: int) -> _Built | None:
    """A result that is one JSON file, such as exports/bench.json."""
    path = root / name
    if not path.is_file():
        return None
    section = _Built(_slug(title), title, "generic", order, source=name)
    value, problem = _read_json_lenient(path)
    if problem:
        section.notes.append(problem)
    else:
        section.view = json_view(value)
    return section


def builtin_sections(paths: RunPaths, config: dict) -> list[_Built]:
    rows = read_metrics(paths.metrics)
    figures, analysis = paths.root / "figures", paths.root / "analysis"
    candidates = [
        _run_section(paths, config, rows),
        _curves_section(rows),
        _samples_section(paths),
        _json_section(paths.root, "best.json", "Best epoch", 210),
        _result_section(figures, "walk", "Latent walk", 300, (".gif", ".png")),
        _result_section(figures, "arithmetic", "Vector arithmetic", 310),
        _result_section(figures, "forget", "Forgetting an object", 320),
        _json_section(paths.root, "concepts.json", "Concepts", 330),
        _json_section(paths.root, "exports/export.json", "Export", 340),
        _json_section(paths.root, "exports/bench.json", "Benchmark", 350),
        _result_section(analysis, "classify", "Classification with discriminator features", 360),
        _result_section(analysis, "fid", "FID", 370),
        _result_section(analysis, "inspect", "Inspect", 380),
        _result_section(analysis, "neighbours", "Nearest neighbours", 390),
    ]
    return [s for s in candidates if s is not None]


# ---------------------------------------------------------------------------- plugin sections


def _build_plugin_section(plugin: str, section: ReportSection) -> _Built:
    built = _Built(
        _slug(section.anchor or f"{plugin}-{section.title}"),
        str(section.title),
        "generic",
        int(section.order),
        source=section.source or f"from plugin {plugin}",
        text=str(section.text or ""),
        html=str(section.html or ""),
    )
    for item in section.images or []:
        caption, image = item if isinstance(item, tuple) else ("", item)
        try:
            built.figures.append(
                image_figure(image, caption or (Path(image).name if isinstance(image, (str, Path)) else ""))
            )
        except IMAGE_ERRORS as exc:
            built.notes.append(f"an image could not be read ({exc})")
    if section.data is not None:
        built.view = json_view(section.data)
    return built


def plugin_sections(run_dir: Path) -> tuple[list[_Built], list[str]]:
    """Sections that plugins add through ``dcgan_report_sections``; a broken plugin is a warning."""
    from dcgan_cli import plugins

    before = set(plugins.load_warnings())
    built, warnings = [], []
    for plugin, result in plugins.call_each("dcgan_report_sections", run_dir=run_dir):
        if result is None:
            continue
        items = result if isinstance(result, (list, tuple)) else [result]
        for item in items:
            if not isinstance(item, ReportSection):
                warnings.append(
                    f"plugin {plugin!r} returned {type(item).__name__} from dcgan_report_sections, "
                    "not a dcgan_cli.report.ReportSection; it is left out"
                )
                continue
            try:
                built.append(_build_plugin_section(plugin, item))
            except (TypeError, ValueError) as exc:
                warnings.append(f"plugin {plugin!r} returned a section that cannot be shown ({exc}); it is left out")
    warnings = [w for w in plugins.load_warnings() if w not in before] + warnings
    return built, warnings


# ---------------------------------------------------------------------------- the page


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("dcgan_cli", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(run_dir: Path | str) -> tuple[str, list[str], list[str]]:
    """The report's HTML for a run, the titles of its sections, and warnings (broken plugins)."""
    from dcgan_cli.checkpoint import read_json

    paths = RunPaths(Path(run_dir))
    config = read_json(paths.config, "run config")
    if not isinstance(config, dict):
        config = {}
    sections = builtin_sections(paths, config)
    extra, warnings = plugin_sections(paths.root)
    sections += extra
    sections.sort(key=lambda s: s.order)  # stable: equal orders keep registration order
    anchors: set[str] = set()
    for section in sections:  # unique anchors, so every link in the contents works
        base, n = section.anchor, 2
        while section.anchor in anchors:
            section.anchor, n = f"{base}-{n}", n + 1
        anchors.add(section.anchor)

    env = _environment()
    script = env.loader.get_source(env, "report.js")[0]
    style = env.loader.get_source(env, "report.css")[0]
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    html = env.get_template("report.html.j2").render(
        title=f"{config.get('run_id', paths.root.name)}: dcgan report",
        run_name=str(config.get("run_id", paths.root.name)),
        run_path=str(paths.root),
        generated=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        version=__version__,
        generator_mark=GENERATOR_MARK,
        sections=sections,
        script=script,
        script_hash=script_hash,
        style=style,
    )
    return html, [s.title for s in sections], warnings


def is_report(path: Path) -> bool:
    """Whether ``path`` is a page this module wrote (so rewriting it loses nothing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR_MARK}'.encode() in head


def write_report(run_dir: Path | str, out: Path | str | None = None) -> ReportResult:
    """Render the run's report into ``out`` (default RUN/report.html), atomically."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_NAME
    html, titles, warnings = render_report(run_dir)
    atomic_write_text(out, html)
    return ReportResult(out, out.stat().st_size, titles, warnings)
