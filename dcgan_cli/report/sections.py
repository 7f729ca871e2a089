"""The report's sections: the built-in ones from the run folder, and those plugins add."""

from __future__ import annotations

import datetime
import json
import math
import platform
import re
from pathlib import Path

from dcgan_cli import __version__
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.report.images import epoch_frames, image_figure
from dcgan_cli.report.json_view import is_number, json_view
from dcgan_cli.report.parts import (
    CHARTS,
    CURVE_MAX_POINTS,
    FIGURE_MAX_BYTES,
    IMAGE_ERRORS,
    SERIES,
    BuiltSection,
    ReportSection,
    human_bytes,
    newest_numbered,
    read_json_lenient,
    round_sig,
    slug,
)
from dcgan_cli.training.checkpoints import list_checkpoints

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
        if isinstance(row, dict) and is_number(row.get("step")):
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
        values = [float(r[key]) for r in bucket if is_number(r.get(key)) and math.isfinite(r[key])]
        return round_sig(sum(values) / len(values)) if values else None

    series = []
    for key, label, chart in SERIES:
        if any(is_number(r.get(key)) for r in rows):
            series.append({"key": key, "label": label, "chart": chart, "y": [mean(b, key) for b in buckets]})
    return {
        "step": [b[-1]["step"] for b in buckets],
        "epoch": [b[-1].get("epoch") for b in buckets],
        "series": series,
        "averaged": len(rows) > max_points,
        "rows": len(rows),
    }


def _run_section(paths: RunPaths, config: dict, rows: list[dict]) -> BuiltSection:
    import torch

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
    latest, _ = read_json_lenient(paths.latest) if paths.latest.is_file() else (None, None)
    if isinstance(latest, dict) and "step" in latest:
        summary["checkpoint step"] = latest["step"]
    if rows:
        last = rows[-1]
        summary["epoch reached"] = f"{last.get('epoch')} of {train.get('epochs', '?')}"
        summary["steps logged"] = f"{rows[0]['step']} to {last['step']} ({len(rows)} lines)"
        for key, label, _chart in SERIES:
            if is_number(last.get(key)):
                summary[f"last {label}"] = last[key]
        if is_number(last.get("time")) and is_number(rows[0].get("time")) and len(rows) > 1:
            summary["time between first and last line"] = str(
                datetime.timedelta(seconds=round(last["time"] - rows[0]["time"]))
            )
    checkpoints = list_checkpoints(paths.root)
    if checkpoints:
        summary["checkpoints kept"] = ", ".join(p.name for _, p in checkpoints)
    for name in ("generator.safetensors", "discriminator.safetensors"):
        if (paths.root / name).is_file():
            summary[name] = human_bytes((paths.root / name).stat().st_size)
    notes = []
    if paths.tensorboard.is_dir():
        notes.append(f"TensorBoard logs: tensorboard --logdir {paths.tensorboard}")
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
    return BuiltSection(
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


def _curves_section(rows: list[dict]) -> BuiltSection | None:
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
    return BuiltSection(
        "curves",
        "Training curves",
        "curves",
        100,
        source="metrics.jsonl",
        notes=notes,
        extra={"data": data, "charts": charts},
    )


EPOCH_RE = re.compile(r"^epoch-(\d+)\.png$")


def _samples_section(paths: RunPaths) -> BuiltSection | None:
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
        return BuiltSection("samples", "Samples", "generic", 200, notes=[f"the sample grids could not be read ({exc})"])
    newest = None
    try:
        full = image_figure(found[-1][1], f"epoch {found[-1][0]} at full size")
        if full.width > side:  # the thumbnails are smaller than the grids: show the newest in full
            newest = full
    except IMAGE_ERRORS as exc:
        notes.append(f"{found[-1][1].name} could not be read ({exc})")
    frames = [{"epoch": n, "src": uri} for (n, _), uri in zip(found, uris, strict=True)]
    return BuiltSection(
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
) -> BuiltSection | None:
    """The newest ``stem-NNN`` result: its figure (first of ``image_order`` that exists) and its JSON."""
    found = newest_numbered(folder, stem)
    if found is None:
        return None
    number, files, count = found
    rel = folder.name
    section = BuiltSection(slug(title), title, "generic", order, source=f"{rel}/{stem}-{number:03d}")
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
        value, problem = read_json_lenient(files[".json"])
        if problem:
            section.notes.append(problem)
        else:
            section.view = json_view(value)
    if not section.figures and section.view is None and not section.notes:
        return None
    return section


def _json_section(root: Path, name: str, title: str, order: int) -> BuiltSection | None:
    """A result that is one JSON file, such as exports/bench.json."""
    path = root / name
    if not path.is_file():
        return None
    section = BuiltSection(slug(title), title, "generic", order, source=name)
    value, problem = read_json_lenient(path)
    if problem:
        section.notes.append(problem)
    else:
        section.view = json_view(value)
    return section


def builtin_sections(paths: RunPaths, config: dict) -> list[BuiltSection]:
    rows = read_metrics(paths.metrics)
    figures, analysis = paths.figures, paths.analysis
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


def _build_plugin_section(plugin: str, section: ReportSection) -> BuiltSection:
    built = BuiltSection(
        slug(section.anchor or f"{plugin}-{section.title}"),
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


def plugin_sections(run_dir: Path) -> tuple[list[BuiltSection], list[str]]:
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
                    "not a dcgan_cli.api.ReportSection; it is left out"
                )
                continue
            try:
                built.append(_build_plugin_section(plugin, item))
            except (TypeError, ValueError) as exc:
                warnings.append(f"plugin {plugin!r} returned a section that cannot be shown ({exc}); it is left out")
    warnings = [w for w in plugins.load_warnings() if w not in before] + warnings
    return built, warnings
