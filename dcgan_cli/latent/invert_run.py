"""Inverting image files for a run: prepared as the run's dataset prepares its training images,
inverted (invert.py), and written as the other commands write theirs: a figure, the z as a
sheet (``FIG.z.safetensors``, tensor ``z``, one row per image in the order given, readable
wherever a `dcgan sample --save-z` sheet is) and a JSON record.
"""

from __future__ import annotations

import json
from pathlib import Path

from dcgan_cli.core.runs import read_run_config
from dcgan_cli.data.user_images import UserImages, load_user_images
from dcgan_cli.latent.invert import Inversion, Inverter, InvertSettings, inversion_figure


def run_dataset(config: dict) -> str:
    """The name of the dataset a run was trained on ("" when its config does not say)."""
    train = config.get("train") or {}
    dataset = config.get("dataset") or {}
    return str(train.get("dataset") or (dataset.get("name") if isinstance(dataset, dict) else "") or "")


def invert_files(
    run_dir: Path, paths: list[Path], settings: InvertSettings, *, device="auto", progress=None
) -> tuple[UserImages, Inversion]:
    """Prepare every file (one clear error for the first that cannot be used), then invert them all."""
    from dcgan_cli.core.model import DCGANConfig

    config = read_run_config(run_dir)
    model = DCGANConfig.from_dict(config["model"])
    prepared = load_user_images(paths, dataset=run_dataset(config), size=model.size, channels=model.channels)
    inverter = Inverter(run_dir, device=device, settings=settings, progress=progress)
    if progress is None:
        return prepared, inverter.invert(prepared.images)
    with progress(f"inverting ({inverter.device.type})", len(prepared.images) * settings.steps) as advance:
        return prepared, inverter.invert(prepared.images, advance)


def write_inversion(
    run_dir: Path, prepared: UserImages, inversion: Inversion, png: Path, z_file: Path, meta_path: Path
) -> dict:
    """The figure, the z sheet and the JSON record of an inversion; returns the record."""
    from dcgan_cli.core.files import atomic_write_json
    from dcgan_cli.core.images import save_image
    from dcgan_cli.engines.sampling import sheet_metadata, write_sheet

    n = len(inversion.z)
    run_id = str(read_run_config(run_dir).get("run_id", Path(run_dir).name))
    title = (
        f"dcgan invert: {n} image{'s' if n != 1 else ''} through run {run_id} "
        f"({inversion.loss_used} loss, {inversion.settings.steps} steps; error = mean |difference| on 0..1)"
    )
    save_image(inversion_figure(inversion, [p.name for p in prepared.paths], title), png)
    meta = sheet_metadata(run_dir, inversion.settings.seed, n, png.name, "invert")
    meta["inverted_from"] = json.dumps([str(p) for p in prepared.paths])
    write_sheet(z_file, inversion.z, meta)
    record = {
        "run": str(run_dir),
        "png": png.name,
        "z": z_file.name,
        "settings": inversion.describe(),
        "mean_error": round(float(inversion.error.mean()), 6),
        "mean_start_error": round(float(inversion.start_error.mean()), 6),
        "images": [
            {"index": i, "path": str(path), "size": list(size), "notes": notes, **row}
            for i, (path, size, notes, row) in enumerate(
                zip(prepared.paths, prepared.original_sizes, prepared.notes, inversion.rows())
            )
        ],
        "notes": inversion.notes,
    }
    atomic_write_json(meta_path, record)
    return record
