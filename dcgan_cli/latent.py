"""The latent space Z: priors, seeded sampling, and walks (paper, section 6.1).

Sample ``i`` of seed ``s`` is the same vector however many samples are drawn and whichever
engine renders it: z is drawn on the CPU in fixed chunks of ``CHUNK`` rows, each chunk
from its own generator derived from (seed, chunk index).
"""

from __future__ import annotations

import hashlib
import math

import torch

CHUNK = 1024


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and a purpose, so streams never overlap."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def sample_prior(n: int, nz: int, prior: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, nz) float32 draws from the prior: "normal" N(0, I) or "uniform" U(-1, 1)."""
    if prior == "normal":
        return torch.randn(n, nz, generator=generator)
    if prior == "uniform":
        return torch.rand(n, nz, generator=generator) * 2 - 1
    raise ValueError(f"unknown prior {prior!r}")


def seeded_z(seed: int, n: int, nz: int, prior: str, start: int = 0) -> torch.Tensor:
    """Rows ``start .. start+n`` of the z sequence of ``seed``: (n, nz) float32 on the CPU."""
    if n <= 0:
        return torch.empty(0, nz)
    first, last = start // CHUNK, (start + n - 1) // CHUNK
    chunks = []
    for c in range(first, last + 1):
        g = torch.Generator().manual_seed(derive_seed(seed, "z", c))
        chunks.append(sample_prior(CHUNK, nz, prior, g))
    z = torch.cat(chunks)
    offset = start - first * CHUNK
    return z[offset : offset + n].clone()


def typical_norm(nz: int, prior: str) -> float:
    """The norm around which draws of the prior concentrate (the prior's 'shell')."""
    return math.sqrt(nz) if prior == "normal" else math.sqrt(nz / 3)


# ---------------------------------------------------------------------------- walks (paper, section 6.1)

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


def rescale_to_norm(z: torch.Tensor, norm: float) -> torch.Tensor:
    """Each row of z moved along its direction to ``norm`` (rows of zero length are refused)."""
    lengths = z.norm(dim=-1, keepdim=True)
    if bool((lengths < 1e-12).any()):
        raise ValueError("cannot rescale a zero vector")
    return z * (norm / lengths)


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


def save_walk_gif(frames: torch.Tensor, path, fps: float = 12.0) -> None:
    """An animated GIF (looping) of (W, F, C, H, W) walks: every walk at once, side by side."""
    from PIL import Image

    from dcgan_cli.checkpoint import atomic_output
    from dcgan_cli.images import grid_image

    walks = frames.shape[0]
    nrow = max(1, math.ceil(math.sqrt(walks)))
    pictures = [grid_image(frames[:, f], nrow=nrow) for f in range(frames.shape[1])]
    if pictures[0].mode != "L":
        pictures = [p.convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for p in pictures]
    with atomic_output(path) as tmp:
        pictures[0].save(
            tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=max(20, round(1000 / fps)), loop=0, optimize=False
        )
