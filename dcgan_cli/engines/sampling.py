"""Drawing samples: seeded z in batches through any engine, to a grid picture and its sheet of z.

Folders, tar shards and .npz files are written shard by shard (shards.py); memory stays
bounded however many images are asked for: z and images are made one batch at a time.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import (
    read_safetensors,
    sha256_file,
    write_safetensors,
)
from dcgan_cli.core.images import save_grid
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.core.runs import RunPaths, next_numbered, read_run_config
from dcgan_cli.engines.base import Engine

SHEET_FORMAT = "dcgan-cli/sheet"
MAX_GRID = 4096  # beyond this a single picture is useless; write a folder or an .npz


def sample_batches(
    engine: Engine, seed: int, n: int, batch_size: int = 256
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(index of the first sample, z, images) for consecutive batches of the seed's samples."""
    c = engine.config
    for start in range(0, n, batch_size):
        z = seeded_z(seed, min(batch_size, n - start), c.nz, c.prior, start=start)
        yield start, z, engine.generate(z)


def sheet_metadata(run_dir: Path, seed: int, n: int, image: str, engine: str) -> dict[str, str]:
    config = read_run_config(run_dir)
    generator = RunPaths(run_dir).generator
    return {
        "format": SHEET_FORMAT,
        "seed": str(seed),
        "n": str(n),
        "prior": config["model"]["prior"],
        "run_id": str(config.get("run_id", run_dir.name)),
        "generator_sha256": sha256_file(generator) if generator.exists() else "",
        "image": image,
        "engine": engine,
    }


def write_sheet(path: Path, z: torch.Tensor, metadata: dict[str, str]) -> None:
    """The z of a set of samples, so later commands can refer to samples by index."""
    write_safetensors(path, {"z": z.float().contiguous()}, metadata)


def read_sheet(path: Path | str) -> tuple[torch.Tensor, dict[str, str]]:
    """(z (n, nz), metadata) of a sheet written by `dcgan sample --save-z`."""
    tensors, metadata = read_safetensors(path, "sample sheet")
    if metadata.get("format") != SHEET_FORMAT or "z" not in tensors or tensors["z"].ndim != 2:
        raise DcganError(f"{path} is not a sample sheet written by `dcgan sample --save-z`")
    return tensors["z"].float(), metadata


def next_sheet_path(run_dir: Path) -> Path:
    """runs/NAME/sheets/sheet-NNN.png, the first number not used yet."""
    stem = next_numbered(RunPaths(run_dir).sheets, "sheet", (".png", ".z.safetensors"))
    return stem.with_name(stem.name + ".png")


def z_path_for(image_path: Path) -> Path:
    """grid.png -> grid.z.safetensors"""
    return image_path.with_name(image_path.stem + ".z.safetensors")


def write_grid(
    engine: Engine, seed: int, n: int, path: Path, batch_size: int, nrow: int | None, advance=None
) -> torch.Tensor:
    if n > MAX_GRID:
        raise DcganError(
            f"{n} images are too many for one grid picture (at most {MAX_GRID}); use --out-dir DIR or --out FILE.npz"
        )
    zs, images = [], []
    for _, z, imgs in sample_batches(engine, seed, n, batch_size):
        zs.append(z)
        images.append(imgs)
        if advance:
            advance(len(z))
    save_grid(torch.cat(images), path, nrow=nrow)
    return torch.cat(zs)


def npy_stream(zf: zipfile.ZipFile, name: str, dtype: np.dtype, shape: tuple[int, ...]):
    """An open member ``name`` of ``zf`` with a .npy header for an array of ``shape``: write its bytes."""
    handle = zf.open(name, "w", force_zip64=True)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(handle, header)
    return handle
