"""`dcgan report` (one self-contained HTML page of a run) and `dcgan train --tensorboard`.

The page is checked as a browser builds it: headless Chromium (Debian's `chromium`) runs its
script, and the DOM it dumps, its screenshot and its network log are examined.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_cli import hookimpl
from dcgan_cli.core.errors import ExitCode
from dcgan_cli.report.images import epoch_frames
from dcgan_cli.report.page import render_report
from dcgan_cli.report.parts import FRAMES_BUDGET, ReportSection
from dcgan_cli.report.sections import curve_data

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "digits-run"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    # Resolve no host name at all: nothing the browser itself tries can leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
MAX_REPORT_BYTES = 10_000_000


# ---------------------------------------------------------------------------- helpers


def chromium_binary() -> str:
    """Chromium's path; without one, a skip, or a failure where DCGAN_REQUIRE_BROWSER=1 (CI)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    why = (
        "no headless Chromium on this machine: install Debian's `chromium` package "
        "(apt-get install -y chromium; .ci/run installs it)"
    )
    if os.environ.get("DCGAN_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"{why}; DCGAN_REQUIRE_BROWSER is set, so the browser checks must run")
    pytest.skip(why)


def browse(page: Path, work: Path, *, fragment: str = "", screenshot: bool = False, netlog: bool = False) -> dict:
    """Open ``page`` in headless Chromium; return the DOM after its scripts ran, and the paths
    of the screenshot and network log when asked for."""
    browser = chromium_binary()
    work.mkdir(parents=True, exist_ok=True)
    args = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'profile'}", "--window-size=1280,1800"]
    args += ["--virtual-time-budget=5000", "--dump-dom"]
    found = {}
    if screenshot:
        found["screenshot"] = work / "screenshot.png"
        args.append(f"--screenshot={found['screenshot']}")
    if netlog:
        found["netlog"] = work / "netlog.json"
        args.append(f"--log-net-log={found['netlog']}")
    args.append(page.resolve().as_uri() + fragment)
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    found["dom"] = done.stdout
    return found


def page_requests(netlog: Path) -> list[str]:
    """URLs the page asked for, from Chromium's net log (the browser's own background requests,
    such as update checks, are not the page's: they belong to no file:// page)."""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start_job and "url" in params:
            owner = f"{params.get('network_isolation_key', '')} {params.get('site_for_cookies', '')}"
            if "file://" in owner:
                urls.append(params["url"])
    return urls


class Elements(HTMLParser):
    """Every element of a page with its attributes, and the text of elements by id."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.text_by_id: dict[str, str] = {}
        self._open_ids: list[tuple[str, str]] = []
        self.feed(html)

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if "id" in attrs:
            self.text_by_id.setdefault(attrs["id"], "")
            if tag not in self.VOID:
                self._open_ids.append((tag, attrs["id"]))

    def handle_endtag(self, tag):
        for i in range(len(self._open_ids) - 1, -1, -1):
            if self._open_ids[i][0] == tag:
                del self._open_ids[i:]
                break

    def handle_data(self, data):
        for _, element_id in self._open_ids:
            self.text_by_id[element_id] += data

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.elements if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def by_id(self, element_id: str) -> dict:
        matches = [a for _, a in self.elements if a.get("id") == element_id]
        assert len(matches) == 1, f"expected one element #{element_id}, found {len(matches)}"
        return matches[0]


def network_references(page: Elements) -> list[str]:
    """Attribute values that would make a browser fetch something: anything but data: and #anchors."""
    found = []
    for tag, attrs in page.elements:
        for name in ("src", "href", "srcset", "poster", "data", "action", "xlink:href"):
            value = (attrs.get(name) or "").strip()
            if value and not value.startswith(("data:", "#")):
                found.append(f"<{tag} {name}={value[:80]}>")
        if "url(" in (attrs.get("style") or ""):
            found.append(f"<{tag} style={attrs['style'][:80]}>")
    return found


def save_grid_of(netG, seed: int, path: Path) -> None:
    """A real 8x8 sample grid of a trained generator, as `dcgan train` writes each epoch."""
    from dcgan_cli.core.images import save_grid
    from dcgan_cli.core.prior import seeded_z

    with torch.no_grad():
        save_grid(netG(seeded_z(seed, 64, netG.config.nz, netG.config.prior)), path, nrow=8)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """A real digits run: 3 epochs of a small model (batch 256: 7 steps an epoch), logged every 2 steps,
    a snapshot (sample grid) at every epoch: auto would pass over the middle one of such short epochs."""
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.training.config import TrainConfig, create_run
    from dcgan_cli.training.trainer import Trainer

    root = tmp_path_factory.mktemp("report") / "runs" / "short"
    cfg = TrainConfig(dataset="digits", epochs=3, batch_size=256, device="cpu", log_every=2, snapshot_every=1)
    create_run(root, DCGANConfig(size=32, channels=1, ngf=8, ndf=8), cfg, {"name": "digits"})
    Trainer(root).run()
    return root


@pytest.fixture
def run_copy(short_run, tmp_path, monkeypatch) -> Path:
    """A private copy of the short run at ./runs/short, with cwd in a temp folder."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(short_run, tmp_path / "runs" / "short", ignore=shutil.ignore_patterns("report.html"))
    return Path("runs") / "short"


# ---------------------------------------------------------------------------- the page in a browser


def test_report_of_a_real_run_in_headless_chromium(short_run, tmp_path, cli, monkeypatch):
    """The report of a real 3-epoch run, as Chromium builds it: the script drew every curve into
    SVG, the epoch slider works (the #epoch=1 link moves it to the first epoch and shows that
    epoch's grid), the sample images are inline pictures, and the screenshot is not blank."""
    monkeypatch.chdir(tmp_path)
    result = cli(["report", "-r", short_run, "--out", "report.html"])
    assert result.exit_code == 0, result.stderr
    assert "Training curves" in result.stdout and "Samples" in result.stdout
    got = browse(tmp_path / "report.html", tmp_path / "browser", fragment="#epoch=1", screenshot=True)
    page = Elements(got["dom"])

    # Curves: one line per metrics.jsonl series, drawn by the script with a point per logged line.
    logged = [json.loads(line) for line in (short_run / "metrics.jsonl").read_text().splitlines()]
    lines = page.find("path", class_="smoothed") + page.find("path", class_="raw")
    drawn = {p["data-series"] for p in lines}
    assert {"loss_d", "loss_g", "d_x", "d_g_z"} <= drawn
    raw_loss_d = [p for p in page.find("path", class_="raw") if p["data-series"] == "loss_d"][0]
    assert raw_loss_d["d"].count("L") == len(logged) - 1  # every logged line is a point of the curve
    assert len(page.find("svg")) >= 2

    # The epoch slider: three epochs, moved to the first one by the link.
    slider = page.by_id("epoch-slider")
    assert slider["type"] == "range" and slider["min"] == "0" and slider["max"] == "2"
    assert slider["aria-valuetext"] == "epoch 1"
    assert page.text_by_id["epoch-label"].startswith("epoch 1 ")
    frames = json.loads(page.text_by_id["frames-data"])
    assert [f["epoch"] for f in frames] == [1, 2, 3]
    frame = page.by_id("epoch-frame")
    assert frame["src"] == frames[0]["src"] and frame["src"].startswith("data:image/")
    assert page.by_id("play")  # the animation's button

    # Sample images: each frame decodes to the grid of its epoch (8x8 digits, 274 px square).
    for f, png in zip(frames, sorted((short_run / "samples").glob("epoch-*.png")), strict=True):
        thumb = Image.open(io.BytesIO(base64.b64decode(f["src"].split(",", 1)[1])))
        assert thumb.size == Image.open(png).size == (274, 274)

    # The screenshot shows a page, not a blank window.
    shot = np.asarray(Image.open(got["screenshot"]).convert("L"), dtype=np.float32)
    assert shot.shape == (1800, 1280)
    ink = np.abs(shot - np.median(shot)) > 40  # pixels clearly unlike the page's background
    assert ink.mean() > 0.01, "the screenshot is (almost) blank"
    assert ink[:, : 1280 // 2].any() and ink[:, 1280 // 2 :].any() and ink[:900].any() and ink[900:].any()


@pytest.fixture(scope="module")
def long_report(tmp_path_factory) -> tuple[Path, str]:
    """(report.html, what `dcgan report` printed) of a 100-epoch digits run with every result
    file the report shows.

    The run folder is made without training 100 epochs: config, weights and metrics of the
    committed digits fixture (tests/fixtures/digits-run, a properly trained 32x32 model);
    samples/epoch-001..100.png are 100 real, distinct 8x8 grids that fixture generator draws
    from 100 noise batches (as detailed as a trained run's, the heaviest case for the size);
    metrics.jsonl repeats the fixture's real lines with shifted steps to 100 epochs of 14
    steps. The walk, arithmetic, forget, export, bench, concept, classify, fid, inspect and
    neighbours files are made from the same generator's pictures with JSON of plausible shape.
    """
    from typer.testing import CliRunner

    from dcgan_cli.cli import build_app
    from dcgan_cli.core.networks import load_generator

    run = tmp_path_factory.mktemp("long") / "runs" / "long"
    run.mkdir(parents=True)
    for name in ("generator.safetensors", "discriminator.safetensors"):
        shutil.copy(FIXTURE_RUN / name, run / name)
    config = json.loads((FIXTURE_RUN / "config.json").read_text())
    config["run_id"], config["train"]["epochs"], config["train"]["max_steps"] = "long", 100, None
    (run / "config.json").write_text(json.dumps(config))
    netG = load_generator(run)
    for epoch in range(1, 101):
        save_grid_of(netG, 1000 + epoch, run / "samples" / f"epoch-{epoch:03d}.png")
    rows = [json.loads(line) for line in (FIXTURE_RUN / "metrics.jsonl").read_text().splitlines()]
    with open(run / "metrics.jsonl", "w") as f:
        offset = 0
        while offset < 1400:
            for row in rows:
                if row["step"] + offset <= 1400:
                    f.write(
                        json.dumps({**row, "step": row["step"] + offset, "epoch": (row["step"] + offset - 1) // 14 + 1})
                        + "\n"
                    )
            offset += rows[-1]["step"]
    add_result_files(run, netG)

    result = CliRunner().invoke(build_app(), ["report", "-r", str(run)])
    assert result.exit_code == 0, result.stderr
    return run / "report.html", result.stdout


def test_report_of_100_epochs_stays_small_and_refers_to_nothing_outside(long_report):
    """What holds without a browser: the size, every section, the page's security policy, no
    reference that would fetch anything, and thumbnails that shrink to fit a smaller budget."""
    report, printed = long_report
    size = report.stat().st_size
    print(f"100-epoch report: {size:,} bytes")
    assert size < MAX_REPORT_BYTES
    for title in (
        "Training curves",
        "Samples",
        "Latent walk",
        "Vector arithmetic",
        "Forgetting an object",
        "Export",
        "Benchmark",
        "Concepts",
        "Classification with discriminator features",
        "FID",
        "Inspect",
        "Nearest neighbours",
    ):
        assert title in printed

    html = report.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert network_references(Elements(html)) == []

    # Five times the epochs (or a fifth of the budget): thumbnails shrink to keep the total.
    grids = sorted((report.parent / "samples").glob("epoch-*.png"))
    uris, side, notes = epoch_frames(grids, budget=FRAMES_BUDGET // 5)
    assert notes == [] and len(uris) == 100
    assert side < 274 and sum(len(u) for u in uris) <= FRAMES_BUDGET // 5 * 1.1
    assert Image.open(io.BytesIO(base64.b64decode(uris[-1].split(",", 1)[1]))).size == (side, side)


def test_report_of_100_epochs_makes_no_request_in_chromium(long_report, tmp_path):
    """Chromium opening the 100-epoch report asks for nothing over the network, after its script ran."""
    report, _ = long_report
    got = browse(report, tmp_path / "browser", netlog=True)
    page = Elements(got["dom"])
    assert network_references(page) == []  # nor after the script ran
    assert page.by_id("epoch-slider")["max"] == "99"
    assert len(json.loads(page.text_by_id["frames-data"])) == 100
    assert page_requests(got["netlog"]) == []

    # The same check sees a page that does fetch something, so its silence above means something.
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><img src="http://report-test.invalid/pixel.png">')
    got = browse(control, tmp_path / "control-browser", netlog=True)
    assert page_requests(got["netlog"]) == ["http://report-test.invalid/pixel.png"]


def add_result_files(run: Path, netG) -> None:
    """One of each result file the experiment commands and the analysis plugin leave in a run."""
    from dcgan_cli.core.images import grid_image
    from dcgan_cli.core.prior import seeded_z

    figures, exports, analysis = run / "figures", run / "exports", run / "analysis"
    for folder in (figures, exports, analysis):
        folder.mkdir()
    with torch.no_grad():
        z = seeded_z(7, 2, netG.config.nz, netG.config.prior)
        steps = [netG(torch.lerp(z[0:1], z[1:2], t).expand(9, -1)) for t in torch.linspace(0, 1, 8)]
        pictures = [grid_image(images, nrow=9) for images in steps]
    pictures[0].save(figures / "walk-001.gif", save_all=True, append_images=pictures[1:], duration=120, loop=0)
    pictures[0].save(figures / "walk-001.png")
    (figures / "walk-001.json").write_text(json.dumps({"points": 9, "steps": 8, "mode": "slerp", "seed": 7}))
    pictures[3].save(figures / "arithmetic-001.png")
    (figures / "arithmetic-001.json").write_text(
        json.dumps(
            {"expression": "thick seven - seven + one", "noise": 0.25, "z": [0.1] * 100, "labels": {"one": 0.62}}
        )
    )
    pictures[5].save(figures / "forget-001.png")
    (figures / "forget-001.json").write_text(json.dumps({"layer": 3, "dropped_maps": [1, 5, 9], "boxes": 52}))
    (run / "concepts.json").write_text(
        json.dumps({"concepts": [{"name": "seven", "indices": [1, 2, 3], "z": [0.0] * 100}]})
    )
    (exports / "export.json").write_text(
        json.dumps({"onnx": "generator.onnx", "opset": 17, "parity": {"max_abs": 2e-6}})
    )
    (exports / "bench.json").write_text(
        json.dumps(
            {
                "rows": [
                    {"engine": "torch", "batch": 256, "images_per_s": 5120.5},
                    {"engine": "onnxruntime", "batch": 256, "images_per_s": 7300.1},
                ]
            }
        )
    )
    (analysis / "classify-001.json").write_text(
        json.dumps({"labels_per_class": [1, 10], "accuracy_mean": [0.6, 0.9], "draws": 20})
    )
    (analysis / "fid-001.json").write_text(json.dumps({"fid": 12.3, "samples": 1000}))
    pictures[7].save(analysis / "inspect-001.png")
    pictures[2].save(analysis / "neighbours-001.png")
    (analysis / "neighbours-001.json").write_text(json.dumps({"k": 3, "distances": [[0.1, 0.2, 0.3]]}))


# ---------------------------------------------------------------------------- what the page holds


def test_sections_without_data_are_left_out(run_copy):
    """A fresh run has a config, curves, samples and its best epoch: those sections and no empty ones."""
    html, titles, warnings = render_report(run_copy)
    assert titles == ["Run", "Training curves", "Samples", "Best epoch"]
    assert warnings == []
    page = Elements(html)
    assert [a["href"] for a in page.find("a")] == ["#run", "#curves", "#samples", "#best-epoch"]
    assert [a["id"] for a in page.find("section")] == ["run", "curves", "samples", "best-epoch"]
    assert "thumb_fd" in html and "generator-best.safetensors" in html
    assert "Latent walk" not in html and "Benchmark" not in html
    config = json.loads((run_copy / "config.json").read_text())
    assert config["versions"]["torch"] in html  # the versions it was trained with


def test_long_metrics_are_averaged_into_a_bounded_number_of_points():
    """A long run's metrics.jsonl (here 50,000 lines) is averaged in buckets, keeping the steps in order."""
    rows = [{"step": i, "epoch": i // 100 + 1, "loss_d": float(i % 2), "d_x": 0.5} for i in range(1, 50_001)]
    data = curve_data(rows, max_points=2000)
    assert len(data["step"]) == 2000 and data["averaged"] and data["rows"] == 50_000
    assert data["step"] == sorted(data["step"]) and data["step"][-1] == 50_000
    loss_d = next(s for s in data["series"] if s["key"] == "loss_d")["y"]
    assert all(abs(v - 0.5) < 0.05 for v in loss_d)  # 25 alternating 0s and 1s in each bucket
    assert [s["key"] for s in data["series"]] == ["loss_d", "d_x"]  # only series the file has


def test_newest_results_are_shown_and_odd_json_cannot_break_the_page(run_copy):
    """The newest of several walks is shown; unexpected JSON shapes become tables, with markup
    escaped and long number lists summarised; unreadable files become a note, not a failure."""
    figures = run_copy / "figures"
    figures.mkdir()
    grid = Image.open(run_copy / "samples" / "epoch-001.png")
    grid.save(figures / "walk-001.png")
    (figures / "walk-001.json").write_text(json.dumps({"which": "the old walk"}))
    grid.save(figures / "walk-002.gif")
    (figures / "walk-002.json").write_text(json.dumps({"which": "the new walk"}))
    (figures / "arithmetic-001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (figures / "arithmetic-001.json").write_text('{"expression": "smiling woman - woman + man", ')
    exports = run_copy / "exports"
    exports.mkdir()
    odd = {
        "note": "<script>alert(1)</script>",
        "z": list(range(100)),
        "nested": {"deeper": [{"a": 1}, {"b": [1, 2, {"c": None}]}], "flag": True},
        "empty": [],
    }
    (exports / "export.json").write_text(json.dumps(odd))

    html, titles, _ = render_report(run_copy)
    assert "Latent walk" in titles and "Vector arithmetic" in titles and "Export" in titles
    assert "figures/walk-002" in html and "the new walk" in html and "the old walk" not in html
    assert "the newest of 2 in figures/" in html
    assert 'src="data:image/gif;base64,' in html
    assert "arithmetic-001.json is not valid JSON" in html and "arithmetic-001.png could not be read" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "100 numbers: min 0, mean 49.5, max 99" in html
    page = Elements(html)
    assert [a["href"] for a in page.find("a")] == [
        "#run",
        "#curves",
        "#samples",
        "#best-epoch",
        "#latent-walk",
        "#vector-arithmetic",
        "#export",
    ]


def test_plugins_add_sections_and_a_broken_one_is_a_warning(run_copy, cli, registered, tmp_path):
    """dcgan_report_sections: a plugin's section shows its text, picture and data; a plugin that
    raises or returns something else is named in a warning and the report is still written."""
    picture = run_copy / "samples" / "epoch-002.png"

    class StrokeWidths:
        @hookimpl
        def dcgan_report_sections(self, run_dir):
            assert Path(run_dir).resolve() == run_copy.resolve()
            return [
                ReportSection(
                    "Stroke widths",
                    text="Mean stroke width per digit.",
                    images=[("epoch 2", picture)],
                    data={"widths": {"one": 1.1, "seven": 1.4}},
                )
            ]

    class Broken:
        @hookimpl
        def dcgan_report_sections(self, run_dir):
            raise RuntimeError("no stroke model here")

    class Confused:
        @hookimpl
        def dcgan_report_sections(self, run_dir):
            return "<h2>not a section</h2>"

    registered(StrokeWidths(), "strokes")
    registered(Broken(), "broken-report")
    registered(Confused(), "confused")
    result = cli(["report", "-r", run_copy])
    assert result.exit_code == 0, result.stderr
    assert "Stroke widths" in result.stdout
    stderr = " ".join(result.stderr.split())
    assert "'broken-report' failed in dcgan_report_sections" in stderr and "no stroke model here" in stderr
    assert "'confused' returned str from dcgan_report_sections" in stderr
    html = (run_copy / "report.html").read_text()
    page = Elements(html)
    section = [a for a in page.find("section") if a["id"] == "strokes-stroke-widths"]
    assert section, "the plugin's section is missing"
    assert "Mean stroke width per digit." in html and "from plugin strokes" in html and "seven" in html
    assert len(page.find("img", alt="epoch 2")) == 1
    assert "not a section" not in html


def test_overwriting_and_bad_input(run_copy, cli):
    """The run's own report.html is rewritten; anything else is kept unless --force."""
    assert cli(["report", "-r", run_copy]).exit_code == 0
    assert "Forgetting an object" not in (run_copy / "report.html").read_text()
    (run_copy / "figures").mkdir()
    shutil.copy(run_copy / "samples" / "epoch-003.png", run_copy / "figures" / "forget-001.png")
    assert cli(["report", "-r", run_copy]).exit_code == 0  # derived from the run alone: rewritten
    assert "Forgetting an object" in (run_copy / "report.html").read_text()

    Path("mine.html").write_text("my notes")
    result = cli(["report", "-r", run_copy, "--out", "mine.html"])
    assert result.exit_code == ExitCode.BAD_INPUT and "already exists" in result.stderr and "--force" in result.stderr
    assert Path("mine.html").read_text() == "my notes"
    assert cli(["report", "-r", run_copy, "--out", "mine.html", "--force"]).exit_code == 0
    assert "dcgan-cli report" in Path("mine.html").read_text()

    (run_copy / "report.html").write_text("a page someone wrote by hand")
    result = cli(["report", "-r", run_copy])
    assert result.exit_code == ExitCode.BAD_INPUT and "not a report written by dcgan" in " ".join(result.stderr.split())
    assert (run_copy / "report.html").read_text() == "a page someone wrote by hand"

    result = cli(["report", "-r", run_copy, "--out", "report.pdf"])
    assert result.exit_code == ExitCode.BAD_INPUT and "ending in .html" in result.stderr
    result = cli(["report", "-r", "runs/nowhere"])
    assert result.exit_code == ExitCode.BAD_INPUT and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_open_hands_the_page_to_the_users_browser(run_copy, tmp_path):
    """--open starts the browser Python's webbrowser module finds ($BROWSER here) on the report."""
    opened = tmp_path / "opened.txt"
    fake_browser = tmp_path / "browser.sh"
    fake_browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    fake_browser.chmod(0o755)
    env = {**os.environ, "BROWSER": str(fake_browser), "DCGAN_QUIET": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dcgan_cli", "report", "-r", str(run_copy), "--open"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert opened.read_text().strip() == (run_copy / "report.html").resolve().as_uri()


# ---------------------------------------------------------------------------- TensorBoard


def test_train_tensorboard_writes_scalars_and_sample_grids(tmp_path, cli, monkeypatch):
    """Every metrics.jsonl line becomes TensorBoard scalars at its step, every epoch's grid an image."""
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    result = cli(
        [
            "train",
            "digits",
            "--out",
            "runs/tb",
            "--epochs",
            "2",
            "--batch-size",
            "256",
            "--ngf",
            "8",
            "--ndf",
            "8",
            "--log-every",
            "3",
            "--device",
            "cpu",
            "--tensorboard",
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert "tensorboard --logdir runs/tb/tensorboard" in " ".join(result.stderr.split())
    events = EventAccumulator("runs/tb/tensorboard", size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    rows = [json.loads(line) for line in Path("runs/tb/metrics.jsonl").read_text().splitlines()]
    loss_d = events.Scalars("loss/D")
    assert [e.step for e in loss_d] == [r["step"] for r in rows]
    assert np.allclose([e.value for e in loss_d], [r["loss_d"] for r in rows], rtol=1e-6)
    assert {"loss/G", "D_output/real_D(x)", "D_output/fake_D(G(z))"} <= set(events.Tags()["scalars"])
    images = events.Images("samples")
    assert [e.step for e in images] == [7, 14]
    assert (images[-1].width, images[-1].height) == Image.open("runs/tb/samples/epoch-002.png").size


def test_train_tensorboard_without_the_package_says_how_to_install(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what Python does when it is not installed
    result = cli(["train", "digits", "--out", "runs/tb", "--max-steps", "1", "--tensorboard"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "pip install tensorboard" in " ".join(result.stderr.split())
    assert not Path("runs/tb").exists()  # refused before anything was written
