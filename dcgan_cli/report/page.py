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
from pathlib import Path

from dcgan_cli import __version__
from dcgan_cli.core.files import atomic_write_text
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.report.parts import GENERATOR_MARK, ReportResult
from dcgan_cli.report.sections import builtin_sections, plugin_sections

# ---------------------------------------------------------------------------- the page


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("dcgan_cli.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(run_dir: Path | str) -> tuple[str, list[str], list[str]]:
    """The report's HTML for a run, the titles of its sections, and warnings (broken plugins)."""
    from dcgan_cli.core.files import read_json

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
    out = Path(out) if out is not None else RunPaths(run_dir).report
    html, titles, warnings = render_report(run_dir)
    atomic_write_text(out, html)
    return ReportResult(out, out.stat().st_size, titles, warnings)
