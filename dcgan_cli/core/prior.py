"""The latent space Z: the prior, seeded sampling, and the prior's shell.

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


def rescale_to_norm(z: torch.Tensor, norm: float) -> torch.Tensor:
    """Each row of z moved along its direction to ``norm`` (rows of zero length are refused)."""
    lengths = z.norm(dim=-1, keepdim=True)
    if bool((lengths < 1e-12).any()):
        raise ValueError("cannot rescale a zero vector")
    return z * (norm / lengths)


def project_to_prior(z: torch.Tensor, prior: str) -> torch.Tensor:
    """Each row moved to where the prior puts its mass: onto the shell ||z|| = typical_norm
    (normal; in 100 dimensions 95% of draws lie within 14% of it), into [-1, 1] (uniform)."""
    if prior == "normal":
        return z * (typical_norm(z.shape[-1], prior) / z.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return z.clamp(-1.0, 1.0)
