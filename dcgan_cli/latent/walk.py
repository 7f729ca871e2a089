"""Walks through Z (paper, section 6.1): paths through seeded points, their frames, and how smooth they are."""

from __future__ import annotations

import math

import torch

from dcgan_cli.core.prior import seeded_z

WALK_MODES = ("slerp", "linear")


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight-line interpolation: (nz,), (nz,), (T,) -> (T, nz)."""
    t = t.reshape(-1, 1).to(a.dtype)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake): (nz,), (nz,), (T,) -> (T, nz).

    Follows the great circle between the directions of ``a`` and ``b``. A straight line
    between two draws of a normal prior passes well inside the shell where the prior's mass
    lies (its midpoint has ~0.71 of the typical norm), so the generator sees z unlike any it
    was trained on; the arc keeps the norm near the endpoints' norms all the way.
    """
    t = t.reshape(-1, 1).to(a.dtype)
    a64, b64 = a.double(), b.double()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    if sin.abs() < 1e-6:  # (anti)parallel: every great circle is as good as the line
        return lerp(a, b, t)
    t64 = t.double()
    out = torch.sin((1 - t64) * omega) / sin * a64 + torch.sin(t64 * omega) / sin * b64
    return out.to(a.dtype)


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "slerp") -> torch.Tensor:
    """``steps`` frames from ``a`` towards ``b``: t = 0, 1/steps, ..., (steps-1)/steps; (steps, nz)."""
    if mode not in WALK_MODES:
        raise ValueError(f"unknown walk mode {mode!r}; use one of {', '.join(WALK_MODES)}")
    t = torch.arange(steps, dtype=torch.float64) / steps
    return (slerp if mode == "slerp" else lerp)(a, b, t)


def walk_path(points: torch.Tensor, steps: int, mode: str = "slerp", closed: bool = False) -> torch.Tensor:
    """A path through ``points`` (P, nz) with ``steps`` frames from each point to the next.

    Returns ((P-1)*steps + 1, nz) frames, ``points[i]`` at frame i*steps; ``closed`` adds
    the way back to the first point (for a GIF that loops without a jump), ending before it.
    """
    if points.ndim != 2 or points.shape[0] < 2:
        raise ValueError("a walk needs at least 2 points, as a (P, nz) tensor")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    stops = torch.cat([points, points[:1]]) if closed else points
    frames = [interpolate(stops[i], stops[i + 1], steps, mode) for i in range(len(stops) - 1)]
    if not closed:
        frames.append(stops[-1:])
    return torch.cat(frames)


def walk_points(seed: int, walks: int, points: int, nz: int, prior: str) -> torch.Tensor:
    """(walks, points, nz): walk w passes through samples w*points .. w*points+points-1 of the seed,
    the same z that `dcgan sample --seed` draws, so each stop can be looked up there."""
    return seeded_z(seed, walks * points, nz, prior).view(walks, points, nz)


def render_frames(engine, paths: torch.Tensor, batch_size: int = 256, advance=None) -> torch.Tensor:
    """(W, F, nz) paths -> (W, F, C, H, W) images, generated ``batch_size`` at a time."""
    flat = paths.reshape(-1, paths.shape[-1])
    images = []
    for start in range(0, len(flat), batch_size):
        batch = flat[start : start + batch_size]
        images.append(engine.generate(batch))
        if advance:
            advance(len(batch))
    return torch.cat(images).view(*paths.shape[:2], *images[0].shape[1:])


def walk_smoothness(frames: torch.Tensor, steps: int) -> dict:
    """How smooth walks are: mean absolute pixel change (on a 0..1 scale) between consecutive
    frames, against the change between consecutive stops (frames ``steps`` apart)."""
    pixels = frames.float().div(2)  # [-1, 1] -> a range of 1
    per_frame = (pixels[:, 1:] - pixels[:, :-1]).abs().mean(dim=(2, 3, 4))  # (W, F-1)
    stops = pixels[:, ::steps]
    per_stop = (stops[:, 1:] - stops[:, :-1]).abs().mean(dim=(2, 3, 4))  # (W, P-1)
    max_frame, mean_stop = float(per_frame.max()), float(per_stop.mean()) if per_stop.numel() else math.nan
    return {
        "max_frame_change": round(max_frame, 5),
        "mean_frame_change": round(float(per_frame.mean()), 5),
        "mean_stop_change": round(mean_stop, 5),
        "max_frame_to_stop_ratio": round(max_frame / mean_stop, 4) if mean_stop > 0 else None,
    }


PALETTE_PIXELS = 4_000_000  # frames sampled for the shared palette: enough to see every colour, quick to quantise


def shared_palette(pictures: list):
    """One 256-colour palette (a "P" image) for every picture of an animation, from frames
    sampled evenly across it (median cut over their pixels together)."""
    from PIL import Image

    width, height = pictures[0].size
    every = max(1, math.ceil(len(pictures) * width * height / PALETTE_PIXELS))
    sampled = pictures[::every]
    mosaic = Image.new("RGB", (width, height * len(sampled)))
    for i, picture in enumerate(sampled):
        mosaic.paste(picture.convert("RGB"), (0, i * height))
    return mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def save_walk_gif(frames: torch.Tensor, path, fps: float = 12.0) -> None:
    """An animated GIF (looping) of (W, F, C, H, W) walks: every walk at once, side by side.

    Colour frames share one palette and map to it without dithering, so a pixel that keeps
    its colour keeps its palette entry: with a palette per frame (or error diffusion from
    the parts that move), flat areas would shift colour from frame to frame and flicker.
    """
    from PIL import Image

    from dcgan_cli.core.files import atomic_output
    from dcgan_cli.core.images import grid_image

    walks = frames.shape[0]
    nrow = max(1, math.ceil(math.sqrt(walks)))
    pictures = [grid_image(frames[:, f], nrow=nrow) for f in range(frames.shape[1])]
    if pictures[0].mode != "L":
        palette = shared_palette(pictures)
        pictures = [p.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) for p in pictures]

    with atomic_output(path) as tmp:
        pictures[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=max(20, round(1000 / fps)),
            loop=0,
            optimize=False,
        )
