"""Walks through Z: slerp, paths, smoothness, and `dcgan walk`."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.images import grid_image
from dcgan_cli.core.prior import rescale_to_norm
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.latent.walk import (
    interpolate,
    lerp,
    render_frames,
    save_walk_gif,
    slerp,
    walk_path,
    walk_points,
    walk_smoothness,
)

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "digits-run"


@pytest.fixture
def digits_run(tmp_path, monkeypatch) -> Path:
    """A private copy of the committed, properly trained digits run at ./runs/digits-run."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURE_RUN, tmp_path / "runs" / "digits-run")
    return Path("runs") / "digits-run"


def test_slerp_ends_at_its_endpoints_and_keeps_to_the_shell():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 100, generator=g)
    t = torch.linspace(0, 1, 11)
    arc = slerp(a, b, t)
    assert torch.allclose(arc[0], a, atol=1e-5) and torch.allclose(arc[-1], b, atol=1e-5)
    # Two draws of N(0, I) in 100-d are nearly orthogonal with norms near 10: the arc stays
    # near that norm, the straight line sags to ~0.71 of it in the middle.
    shell = min(a.norm(), b.norm()) * 0.97
    assert (arc.norm(dim=1) >= shell).all()
    line = lerp(a, b, t)
    assert line[5].norm() < 0.8 * min(a.norm(), b.norm())
    # Between vectors of equal norm, equal angles between consecutive frames: a uniform walk.
    arc = slerp(a, b * a.norm() / b.norm(), t)
    assert torch.allclose(arc.norm(dim=1), a.norm().expand(11), rtol=1e-4)
    unit = arc / arc.norm(dim=1, keepdim=True)
    angles = torch.arccos((unit[1:] * unit[:-1]).sum(dim=1).clamp(-1, 1))
    assert torch.allclose(angles, angles.mean().expand_as(angles), rtol=0.05)


def test_slerp_of_parallel_vectors_falls_back_to_the_line():
    a = torch.ones(8)
    assert torch.allclose(slerp(a, 3 * a, torch.tensor([0.5]))[0], 2 * a)


def test_walk_path_passes_through_every_point():
    points = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    path = walk_path(points, steps=5, mode="slerp")
    assert path.shape == (3 * 5 + 1, 10)
    for i in range(4):
        assert torch.allclose(path[i * 5], points[i], atol=1e-5)
    closed = walk_path(points, steps=5, mode="linear", closed=True)
    assert closed.shape == (4 * 5, 10)  # back towards the first point, which the GIF then repeats
    assert torch.allclose(closed[-1], points[3] + (points[0] - points[3]) * 0.8, atol=1e-5)
    with pytest.raises(ValueError):
        interpolate(points[0], points[1], 4, mode="cubic")
    with pytest.raises(ValueError):
        walk_path(points[:1], steps=5)


def test_rescale_to_norm():
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert torch.allclose(rescale_to_norm(z, 10.0).norm(dim=1), torch.tensor([10.0, 10.0]))
    with pytest.raises(ValueError):
        rescale_to_norm(torch.zeros(1, 3), 1.0)


def test_walk_points_are_the_seed_samples():
    from dcgan_cli.core.prior import seeded_z

    points = walk_points(7, walks=2, points=3, nz=100, prior="normal")
    assert torch.equal(points.reshape(6, 100), seeded_z(7, 6, 100, "normal"))


def test_consecutive_frames_of_a_slerp_walk_differ_smoothly():
    """The paper's evidence against memorisation: small steps in z make small changes in the image."""
    with TorchEngine(FIXTURE_RUN, device="cpu") as engine:
        ends = walk_points(3, walks=6, points=2, nz=100, prior="normal")
        paths = torch.stack([walk_path(e, steps=24, mode="slerp") for e in ends])
        frames = render_frames(engine, paths)
    pixels = frames.div(2)
    frame_change = (pixels[:, 1:] - pixels[:, :-1]).abs().mean(dim=(2, 3, 4))  # (walks, 24)
    endpoint_change = (pixels[:, -1] - pixels[:, 0]).abs().mean(dim=(1, 2, 3))  # (walks,)
    ratio = frame_change.max(dim=1).values / endpoint_change
    assert (ratio < 0.25).all(), ratio  # no jump: the largest step is a small part of the whole change
    assert frame_change.max() < 0.05
    smooth = walk_smoothness(frames, steps=24)
    assert math.isclose(smooth["max_frame_change"], float(frame_change.max()), abs_tol=1e-4)
    assert math.isclose(smooth["mean_stop_change"], float(endpoint_change.mean()), abs_tol=1e-4)


def test_walk_command_writes_gif_grid_and_json(cli, digits_run):
    result = cli(["walk", "--points", "3", "--steps", "4", "--walks", "2", "--seed", "5"])
    assert result.exit_code == 0, result.output
    figures = digits_run / "figures"
    gif, png, meta = figures / "walk-001.gif", figures / "walk-001.png", figures / "walk-001.json"
    frames = (3 - 1) * 4 + 1
    with Image.open(gif) as image:
        assert image.n_frames == frames
        assert image.info["loop"] == 0
        assert image.size == (2 * 34 + 2, 34 + 2)  # two walks side by side
    assert Image.open(png).size == (frames * 34 + 2, 2 * 34 + 2)  # one row per walk
    record = json.loads(meta.read_text())
    assert record["mode"] == "slerp" and record["frames_per_walk"] == frames
    assert record["walks"][1]["through"] == ["seed 5 sample 3", "seed 5 sample 4", "seed 5 sample 5"]
    assert 0 < record["smoothness"]["max_frame_change"] < record["smoothness"]["mean_stop_change"]
    # A second walk never overwrites the first.
    assert cli(["walk", "--points", "2", "--steps", "2", "--walks", "1", "--mode", "linear", "--loop"]).exit_code == 0
    assert (figures / "walk-002.gif").is_file()
    with Image.open(figures / "walk-002.gif") as image:
        assert image.n_frames == 4  # there and back, 2 frames each way


def test_a_colour_walk_gif_keeps_still_areas_still(tmp_path):
    """Frames of a colour walk share one palette: a part of the picture that does not change
    (here a smooth colour ramp, 1,024 distinct colours) decodes to the same pixels in every
    frame while the rest changes its colours completely. With a palette per frame, each
    frame's own median cut rounds the ramp differently and it flickers."""
    frames_n, size = 8, 32
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    ramp = torch.stack([x, y, (x + y) / 2])  # (3, 32, 32): every pixel its own colour
    g = torch.Generator().manual_seed(0)
    frames = torch.empty(1, frames_n, 3, size, 2 * size)
    for f in range(frames_n):
        frames[0, f, :, :, :size] = ramp  # still
        hue = torch.rand(3, 1, 1, generator=g) * 2 - 1  # moving: another colour cast every frame
        frames[0, f, :, :, size:] = (hue + 0.3 * torch.randn(3, size, size, generator=g)).clamp(-1, 1)
    path = tmp_path / "walk.gif"
    save_walk_gif(frames, path, fps=10)

    with Image.open(path) as gif:
        decoded = [np.asarray(frame.convert("RGB"), dtype=np.int16) for frame in ImageSequence.Iterator(gif)]
    assert len(decoded) == frames_n and decoded[0].shape == (size, 2 * size, 3)  # one walk: no grid border
    still = [d[:, :size] for d in decoded]  # the ramp
    for f in range(1, frames_n):
        changed = np.any(still[f] != still[0], axis=-1).mean()
        assert changed == 0, f"frame {f}: {changed:.1%} of the still area changed colour"
    moving = [d[:, size:] for d in decoded]
    assert np.abs(moving[1] - moving[0]).mean() > 20  # the other half does move
    expected = np.asarray(grid_image(frames[:, 0], nrow=1), dtype=np.int16)[:, :size]
    assert np.abs(still[0] - expected).mean() < 8  # and the still part looks like its colours


def test_walk_through_sheet_samples_and_concepts(cli, digits_run):
    assert cli(["sample", "-n", "16", "--seed", "2"]).exit_code == 0
    assert cli(["concepts", "add", "Round Things", "--samples", "1,2,3"]).exit_code == 0
    result = cli(["walk", "--through", "4, round things, 9", "--through", "0,1,2", "--steps", "3", "--out", "w.gif"])
    assert result.exit_code == 0, result.output
    record = json.loads(Path("w.json").read_text())
    assert record["walks"][0]["through"] == [
        "sheet-001.z.safetensors sample 4",
        "concept 'round things'",
        "sheet-001.z.safetensors sample 9",
    ]
    assert Image.open("w.png").size == (7 * 34 + 2, 2 * 34 + 2)
    # The first stop is sample 4 of the sheet: the walk's first frame is that image.
    from dcgan_cli.core.prior import seeded_z

    with TorchEngine(digits_run, device="cpu") as engine:
        expected = engine.generate(seeded_z(2, 5, 100, "normal")[4:5])
    first = torch.from_numpy(np.asarray(Image.open("w.png"))[2:34, 2:34, 0].copy()).float()
    assert torch.allclose(first / 255, (expected[0, 0] + 1) / 2, atol=1 / 255 + 1e-6)
    assert (
        cli(["walk", "--through", "0,1", "--out", "w.gif"]).exit_code == ExitCode.BAD_INPUT
    )  # exists: not overwritten


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mode", "cubic"], "--mode 'cubic'"),
        (["--points", "1"], "--points of at least 2"),
        (["--out", "walk.mp4"], "name a .gif file"),
        (["--through", "3"], "at least 2 points"),
        (["--through", "seven,one"], "is empty; fill it with `dcgan concepts auto`"),
        (["--through", "0,1"], "no saved sheet"),
    ],
)
def test_walk_bad_input(cli, digits_run, args, needle):
    result = cli(["walk", *args])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert needle in result.stderr and "Traceback" not in result.output
