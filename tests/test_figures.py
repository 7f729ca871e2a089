"""Figures drawn with Pillow (no matplotlib): losses.png and the forget before/after figure."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from dcgan_cli.core.images import enlarged, grid_image, titled_panels
from dcgan_cli.latent.forget import before_after_figure
from dcgan_cli.training.plots import BLUE, ORANGE, PANEL_HEIGHT, loss_figure, nice_ticks, write_loss_plot


def rows_of(colour, image: Image.Image, top: int, bottom: int) -> np.ndarray:
    """Rows (within [top, bottom)) holding pixels of ``colour`` left of the legend."""
    pixels = np.asarray(image.convert("RGB"))[top:bottom, :600]
    hits = np.all(pixels == np.array(colour, dtype=np.uint8), axis=2)
    return np.nonzero(hits.any(axis=1))[0] + top


def test_the_loss_figure_puts_each_curve_where_its_values_are(tmp_path):
    rows = [{"step": 10 * i, "loss_d": 1.0, "loss_g": 3.0, "d_x": 0.8, "d_g_z": 0.2} for i in range(50)]
    rows[20]["loss_g"] = float("nan")  # a diverged step breaks the line instead of failing the plot
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n{cut short by a cra")
    write_loss_plot(metrics, tmp_path / "losses.png")
    image = Image.open(tmp_path / "losses.png")
    assert image.size == (800, 2 * PANEL_HEIGHT)
    # top panel: D loss 1.0 (blue) lies below G loss 3.0 (orange)
    d_rows, g_rows = rows_of(BLUE, image, 0, PANEL_HEIGHT), rows_of(ORANGE, image, 0, PANEL_HEIGHT)
    assert d_rows.size and g_rows.size and np.median(d_rows) > np.median(g_rows)
    # bottom panel: probabilities on a 0..1 axis, D(x)=0.8 above D(G(z))=0.2, in proportion
    x_rows = rows_of(BLUE, image, PANEL_HEIGHT, 2 * PANEL_HEIGHT)
    z_rows = rows_of(ORANGE, image, PANEL_HEIGHT, 2 * PANEL_HEIGHT)
    top, bottom = PANEL_HEIGHT + 12, 2 * PANEL_HEIGHT - 36  # the plot area
    assert abs(np.median(x_rows) - (bottom - 0.8 * (bottom - top))) <= 2
    assert abs(np.median(z_rows) - (bottom - 0.2 * (bottom - top))) <= 2


def test_nothing_is_drawn_before_the_first_metrics_and_ticks_are_round(tmp_path):
    write_loss_plot(tmp_path / "absent.jsonl", tmp_path / "losses.png")
    assert not (tmp_path / "losses.png").exists()
    assert nice_ticks(0.93, 3.1) == [1.0, 2.0, 3.0]
    assert nice_ticks(0, 2990, 8) == [0, 500, 1000, 1500, 2000, 2500]
    assert loss_figure([{"step": 5, "loss_d": 1, "loss_g": 1, "d_x": 0.5, "d_g_z": 0.5}]).size == (800, 540)


def test_the_forget_figure_shows_both_grids_pixel_for_pixel(tmp_path):
    torch.manual_seed(0)
    before, after = torch.rand(8, 1, 32, 32) * 2 - 1, torch.rand(8, 1, 32, 32) * 2 - 1
    before_after_figure(before, after, tmp_path / "forget.png", "after: 3 of 64 maps dropped")
    figure = np.asarray(Image.open(tmp_path / "forget.png").convert("RGB"))
    left, right = enlarged(grid_image(before, 8), 32), enlarged(grid_image(after, 8), 32)
    expected = np.asarray(titled_panels([("before", left), ("after", right)]))
    top = expected.shape[0] - left.height  # below the titles
    assert figure.shape == expected.shape
    assert np.array_equal(figure[top:, : left.width], np.asarray(left.convert("RGB")))
    assert np.array_equal(figure[top:, -right.width :], np.asarray(right.convert("RGB")))
