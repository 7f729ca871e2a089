"""losses.png: the loss curves of a run, drawn from metrics.jsonl with Pillow (as every figure is)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from dcgan_cli.core.images import font, save_image

WIDTH, PANEL_HEIGHT = 800, 270
LEFT, RIGHT, TOP, BOTTOM = 96, 16, 12, 36  # plot-area margins inside each panel
# matplotlib's first two default colours, so the figure reads as it did.
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)
GRID, AXIS, TEXT = (225, 225, 225), (60, 60, 60), (0, 0, 0)

PLOT_EVERY_S = 60.0  # the trainer redraws losses.png at most this often, and at the end of a session


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"


def _draw_panel(draw, top: int, series, x_range, y_range, y_label: str, x_label: str | None) -> None:
    """One panel: grid, axes with ticks, each (name, xs, ys, colour) series as a line, and a legend."""
    x0, x1 = LEFT, WIDTH - RIGHT
    y0, y1 = top + TOP, top + PANEL_HEIGHT - BOTTOM  # y0 is the top of the plot area
    small = font(11)
    (xlo, xhi), (ylo, yhi) = x_range, y_range

    def px(x: float) -> float:
        return x0 + (x - xlo) / (xhi - xlo or 1) * (x1 - x0)

    def py(y: float) -> float:
        return y1 - (y - ylo) / (yhi - ylo or 1) * (y1 - y0)

    for tick in nice_ticks(ylo, yhi):
        y = py(tick)
        draw.line([(x0, y), (x1, y)], fill=GRID)
        draw.text((x0 - 6, y), _label(tick), fill=TEXT, font=small, anchor="rm")
    for tick in nice_ticks(xlo, xhi, 8):
        x = px(tick)
        draw.line([(x, y0), (x, y1)], fill=GRID)
        draw.text((x, y1 + 4), _label(tick), fill=TEXT, font=small, anchor="ma")
    draw.rectangle([x0, y0, x1, y1], outline=AXIS)
    draw.text((8, (y0 + y1) / 2), y_label, fill=TEXT, font=small, anchor="lm")
    if x_label:
        draw.text(((x0 + x1) / 2, y1 + 20), x_label, fill=TEXT, font=small, anchor="ma")
    for _, xs, ys, colour in series:
        segment = []
        for x, y in zip(xs, ys):
            if math.isfinite(y):
                segment.append((px(x), py(min(max(y, ylo), yhi))))
                continue
            if len(segment) > 1:  # a NaN or infinite loss breaks the line instead of bending it
                draw.line(segment, fill=colour, width=2)
            segment = []
        if len(segment) > 1:
            draw.line(segment, fill=colour, width=2)
        elif len(segment) == 1:
            draw.ellipse([segment[0][0] - 2, segment[0][1] - 2, segment[0][0] + 2, segment[0][1] + 2], fill=colour)
    draw.rectangle([x1 - 118, y0 + 2, x1 - 4, y0 + 8 + 16 * len(series)], fill="white", outline=GRID)
    for k, (name, _, _, colour) in enumerate(series):  # legend, top right, over the lines
        y = y0 + 12 + 16 * k
        draw.line([(x1 - 110, y), (x1 - 86, y)], fill=colour, width=2)
        draw.text((x1 - 80, y), name, fill=TEXT, font=small, anchor="lm")


def _finite_range(*columns: list[float]) -> tuple[float, float]:
    values = [v for column in columns for v in column if math.isfinite(v)]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 0.05)
    return low - pad, high + pad


def read_metrics(metrics_path: Path) -> list[dict]:
    rows = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    return rows


def loss_figure(rows: list[dict]):
    """G and D losses (top), and D(x) against D(G(z)) (bottom), over the steps: a PIL image."""
    from PIL import Image, ImageDraw

    steps = [r["step"] for r in rows]
    loss_d, loss_g = [float(r["loss_d"]) for r in rows], [float(r["loss_g"]) for r in rows]
    d_x, d_g_z = [float(r["d_x"]) for r in rows], [float(r["d_g_z"]) for r in rows]
    x_range = (min(steps), max(steps)) if max(steps) > min(steps) else (min(steps) - 1, max(steps) + 1)
    image = Image.new("RGB", (WIDTH, 2 * PANEL_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    losses = [("D loss", steps, loss_d, BLUE), ("G loss", steps, loss_g, ORANGE)]
    _draw_panel(draw, 0, losses, x_range, _finite_range(loss_d, loss_g), "loss", None)
    probabilities = [("D(x)", steps, d_x, BLUE), ("D(G(z))", steps, d_g_z, ORANGE)]
    _draw_panel(draw, PANEL_HEIGHT, probabilities, x_range, (0.0, 1.0), "P(real)", "step")
    return image


def write_loss_plot(metrics_path: Path, out: Path) -> None:
    """losses.png from metrics.jsonl (nothing is written before the first line of metrics)."""
    rows = read_metrics(metrics_path)
    if rows:
        save_image(loss_figure(rows), out)
