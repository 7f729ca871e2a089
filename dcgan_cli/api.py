"""The public API for plugin authors: everything an engine, dataset, labeler, detector,
command or report-section plugin needs, in one place.

    from dcgan_cli.api import hookimpl, Engine, DcganError, RunPaths, load_generator

This is the contract (docs/plugins.md documents each name): names here keep their meaning
across releases, while the modules behind them may move. Plugins import from here and
nowhere else in dcgan_cli (tests/test_architecture.py holds the bundled ones to it).

Importing this module is free: each name is imported the first time it is used, so a
plugin that imports ``Engine`` and ``hookimpl`` at the top does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> module that defines it. Grouped as docs/plugins.md, "The public API".
_EXPORTS: dict[str, str] = {
    # plugins and errors
    "hookimpl": "dcgan_cli.hookspecs",
    "DcganError": "dcgan_cli.core.errors",
    "ExitCode": "dcgan_cli.core.errors",
    "RegistrationError": "dcgan_cli.core.registry",
    # run folders and safe files
    "RunPaths": "dcgan_cli.core.runs",
    "resolve_run": "dcgan_cli.core.runs",
    "read_run_config": "dcgan_cli.core.runs",
    "next_numbered": "dcgan_cli.core.runs",
    "run_lock": "dcgan_cli.core.runs",
    "atomic_output": "dcgan_cli.core.files",
    "atomic_write_bytes": "dcgan_cli.core.files",
    "atomic_write_text": "dcgan_cli.core.files",
    "atomic_write_json": "dcgan_cli.core.files",
    "read_json": "dcgan_cli.core.files",
    "read_safetensors": "dcgan_cli.core.files",
    "write_safetensors": "dcgan_cli.core.files",
    "sha256_file": "dcgan_cli.core.files",
    "read_state_dict": "dcgan_cli.core.foreign",
    # the model and trained networks
    "DCGANConfig": "dcgan_cli.core.model",
    "Generator": "dcgan_cli.core.model",
    "Discriminator": "dcgan_cli.core.model",
    "init_weights": "dcgan_cli.core.model",
    "load_generator": "dcgan_cli.core.networks",
    "load_discriminator": "dcgan_cli.core.networks",
    "check_state_dict": "dcgan_cli.core.networks",
    # seeded sampling of z, devices
    "seeded_z": "dcgan_cli.core.prior",
    "derive_seed": "dcgan_cli.core.prior",
    "sample_prior": "dcgan_cli.core.prior",
    "typical_norm": "dcgan_cli.core.prior",
    "resolve_device": "dcgan_cli.core.devices",
    "cpu_threads": "dcgan_cli.core.devices",
    # images and progress
    "save_image": "dcgan_cli.core.images",
    "save_grid": "dcgan_cli.core.images",
    "grid_image": "dcgan_cli.core.images",
    "to_uint8": "dcgan_cli.core.images",
    "titled_panels": "dcgan_cli.core.images",
    "enlarged": "dcgan_cli.core.images",
    "console": "dcgan_cli.core.console",
    "err_console": "dcgan_cli.core.console",
    "note": "dcgan_cli.core.console",
    "progress_task": "dcgan_cli.core.console",
    "track": "dcgan_cli.core.console",
    # datasets
    "DataOptions": "dcgan_cli.data.catalog",
    "DatasetSpec": "dcgan_cli.data.catalog",
    "get_datasets": "dcgan_cli.data.catalog",
    "load_dataset": "dcgan_cli.data.loading",
    "TensorImages": "dcgan_cli.data.loading",
    "ImageItems": "dcgan_cli.data.image_files",
    "UnreadableImage": "dcgan_cli.data.image_files",
    "decode_image": "dcgan_cli.data.image_files",
    # engines and exported files
    "Engine": "dcgan_cli.engines.base",
    "PRECISIONS": "dcgan_cli.engines.base",
    "get_engines": "dcgan_cli.engines.base",
    "open_engine": "dcgan_cli.engines.selection",
    "select_engine": "dcgan_cli.engines.selection",
    "sample_batches": "dcgan_cli.engines.sampling",
    "BuildRequest": "dcgan_cli.engines.onnx_files",
    "GeneratorOnnx": "dcgan_cli.engines.onnx_files",
    "INPUT_NAME": "dcgan_cli.engines.onnx_files",
    "OUTPUT_NAME": "dcgan_cli.engines.onnx_files",
    "onnx_path": "dcgan_cli.engines.onnx_files",
    "read_generator_onnx": "dcgan_cli.engines.onnx_files",
    "check_onnx_matches_run": "dcgan_cli.engines.onnx_files",
    "export_generator": "dcgan_cli.engines.export",
    # labelers, detectors, report sections
    "Labeler": "dcgan_cli.latent.labelers.base",
    "LabelerContext": "dcgan_cli.latent.labelers.base",
    "ConceptRule": "dcgan_cli.latent.labelers.base",
    "Detector": "dcgan_cli.latent.detectors",
    "Box": "dcgan_cli.latent.detectors",
    "ReportSection": "dcgan_cli.report.parts",
    # commands (these import Typer: use them in command plugins only)
    "RunOption": "dcgan_cli.commands",
    "ForceOption": "dcgan_cli.commands",
    "JsonOption": "dcgan_cli.commands",
    "DeviceOption": "dcgan_cli.commands",
    "EngineOption": "dcgan_cli.commands",
    "PrecisionOption": "dcgan_cli.commands",
    "Precision": "dcgan_cli.commands",
    "SamplesOption": "dcgan_cli.commands",
    "SeedOption": "dcgan_cli.commands",
    "BatchSizeOption": "dcgan_cli.commands",
    "pick_run": "dcgan_cli.commands",
    "refuse_overwrite": "dcgan_cli.commands",
    "print_json": "dcgan_cli.commands",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"dcgan_cli.api has no {name!r}; the public names are listed in docs/plugins.md")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and editors; at run time every name is lazy
    pass
