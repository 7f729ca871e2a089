"""The trained networks as files: generator.safetensors and discriminator.safetensors.

Each carries its model arguments in its metadata, and loads with or without the run's
config.json beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import read_safetensors, write_safetensors
from dcgan_cli.core.model import DCGANConfig, Discriminator, Generator
from dcgan_cli.core.runs import RunPaths, read_run_config

GENERATOR_FORMAT = "dcgan-cli/generator"
DISCRIMINATOR_FORMAT = "dcgan-cli/discriminator"


def save_generator(root: Path, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    """generator.safetensors: the generator alone, carrying its model arguments."""
    _save_network(RunPaths(root).generator, GENERATOR_FORMAT, state, config, meta)


def save_best_generator(root: Path, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    """generator-best.safetensors: the generator of the run's best epoch (see training/quality.py)."""
    _save_network(RunPaths(root).best_generator, GENERATOR_FORMAT, state, config, meta)


def save_discriminator(root: Path, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    """discriminator.safetensors: the discriminator alone, for feature extraction."""
    _save_network(RunPaths(root).discriminator, DISCRIMINATOR_FORMAT, state, config, meta)


def _save_network(path: Path, fmt: str, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    write_safetensors(path, state, {"format": fmt, "model": json.dumps(config.to_dict()), "meta": json.dumps(meta)})


def _network_files(path: Path, filename: str) -> tuple[Path, Path | None]:
    if path.is_dir():
        weights = path / filename
        if not weights.exists():
            if RunPaths(path).config.exists():
                raise DcganError(
                    f"run {path} has no {filename} yet: training has not written a checkpoint; "
                    "train longer or resume it with `dcgan train --resume`"
                )
            raise DcganError(f"{path} holds no {filename}; pass a run folder written by `dcgan train`")
        config = RunPaths(path).config
    else:
        weights = path
        config = RunPaths(path.parent).config
    return weights, (config if config.is_file() else None)


def _load_network(path: Path | str, filename: str, cls: type, device) -> torch.nn.Module:
    path = Path(path)
    if not path.exists():
        raise DcganError(f"{path} does not exist; pass a run folder or a {filename} file")
    weights, config_path = _network_files(path, filename)
    tensors, metadata = read_safetensors(weights, f"{cls.__name__.lower()} weights")
    if config_path is not None:
        config = DCGANConfig.from_dict(read_run_config(config_path.parent)["model"], source=str(config_path))
    elif "model" in metadata:
        try:
            model = json.loads(metadata["model"])
        except json.JSONDecodeError:
            raise DcganError(f"{weights} has unreadable model arguments in its metadata") from None
        config = DCGANConfig.from_dict(model, source=f"{weights} metadata")
    else:
        raise DcganError(f"{weights} carries no model arguments and no config.json lies beside it")
    net = cls(config)
    check_state_dict(net, tensors, str(weights))
    net.load_state_dict(tensors)
    return net.to(device).eval()


def load_generator(path: Path | str, device: str | torch.device = "cpu") -> Generator:
    """A trained generator in eval mode, from a run folder or a generator.safetensors file."""
    return _load_network(path, "generator.safetensors", Generator, device)


def load_discriminator(path: Path | str, device: str | torch.device = "cpu") -> Discriminator:
    """A trained discriminator in eval mode, from a run folder or a discriminator.safetensors file."""
    return _load_network(path, "discriminator.safetensors", Discriminator, device)


def check_state_dict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights whose names, shapes or dtypes do not fit ``module``, in one line."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        raise DcganError(
            f"{source} does not match the model in config.json: tensors {', '.join(parts)}; "
            "is the config from another run?"
        )
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise DcganError(
                f"{source} does not match the model in config.json: {key} has shape {tuple(got.shape)}, "
                f"the config implies {tuple(want.shape)}; is the config from another run?"
            )
        # Another float precision (fp16, bf16, fp64) is the same weights: load_state_dict casts it.
        # Anything else (int8 for float, float for a step counter) is not these weights.
        if got.dtype != want.dtype and not (got.is_floating_point() and want.is_floating_point()):
            raise DcganError(
                f"{source}: {key} has dtype {got.dtype}, expected {want.dtype}; the file does not hold this model's weights"
            )
        # Checked in the model's dtype: a finite float64 of 1e300 is infinite once cast to float32.
        if got.is_floating_point() and not torch.isfinite(got.to(want.dtype)).all():
            raise DcganError(
                f"{source}: {key} holds NaN or infinite values (in {want.dtype}); the weights are unusable"
            )
