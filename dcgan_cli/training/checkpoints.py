"""Training checkpoints: checkpoints/step-N.safetensors (G, D, both Adam states, RNG) and latest.json.

A checkpoint is one safetensors file: tensors under "G.", "D.", "optG.", "optD.", "rng.";
everything else (step, optimizer groups, scaler, replica digests) as JSON in its metadata.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import (
    atomic_write_json,
    atomic_write_text,
    read_safetensors,
    write_safetensors,
)
from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.core.runs import RunPaths

CHECKPOINT_FORMAT = "dcgan-cli/checkpoint"
CHECKPOINT_RE = re.compile(r"^step-(\d{7,})\.safetensors$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.safetensors"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file, newest first. Temporary files never match."""
    folder = RunPaths(root).checkpoints
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def save_checkpoint(
    root: Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    meta: dict,
    keep_last: int = 3,
    keep: set[int] = frozenset(),
    *,
    networks: dict[str, dict[str, torch.Tensor]] | None = None,
    model: DCGANConfig | None = None,
) -> Path:
    """Write checkpoints/step-N.safetensors, then point latest.json at it, then prune old ones;
    then ``networks`` ("generator", "discriminator": state dicts) as generator.safetensors and
    discriminator.safetensors of ``model``, in that order (see outputs_step)."""
    from dcgan_cli.core.networks import save_discriminator, save_generator

    paths = RunPaths(root)
    path = paths.checkpoints / checkpoint_name(step)
    digest = write_safetensors(path, tensors, {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)})
    atomic_write_json(
        paths.latest,
        {"checkpoint": f"checkpoints/{path.name}", "step": step, "sha256": digest, "written": time.time()},
    )
    if keep_last > 0:
        for old_step, old_path in list_checkpoints(root)[keep_last:]:
            if old_step not in keep:
                with contextlib.suppress(OSError):
                    old_path.unlink()
    for name, save in (("generator", save_generator), ("discriminator", save_discriminator)):
        if networks and name in networks:
            save(root, networks[name], model, {"step": step})
    return path


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, metadata = read_safetensors(path, "checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise DcganError(f"{path} is not a dcgan-cli training checkpoint (format {metadata.get('format')!r})")
    try:
        meta = json.loads(metadata["meta"])
    except (KeyError, json.JSONDecodeError):
        raise DcganError(f"checkpoint {path} has no readable metadata; use an intact copy") from None
    return tensors, meta


def latest_checkpoint(root: Path) -> tuple[Path, dict[str, torch.Tensor], dict] | None:
    """The newest checkpoint that reads back whole, or None when the run has none.

    latest.json names it in the normal case; after a crash between writing a checkpoint and
    updating latest.json, the newer complete file wins. Damaged files are passed over.
    """
    problems = []
    for _, path in list_checkpoints(root):
        try:
            tensors, meta = load_checkpoint(path)
        except DcganError as exc:
            problems.append(str(exc))
            continue
        return path, tensors, meta
    if problems:
        raise DcganError(f"no intact checkpoint in {RunPaths(root).checkpoints}: {problems[0]}")
    return None


# ---------------------------------------------------------------------------- training state


def snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies on the CPU of ``tensors`` as they are now (state dicts share storage with the live model)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"{prefix}.{index}.{key}"] = value
    return tensors, state["param_groups"]


def _restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict, groups: list, source: str) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, index, name = key.split(".", 2)
        index = int(index)
        if index >= len(params):
            raise DcganError(f"checkpoint {source}: optimizer state for a parameter the model does not have")
        param = params[index]
        if value.shape == param.shape:
            # Match the parameter's memory layout (channels-last) so fused updates line up.
            value = torch.empty_like(param).copy_(value)
        state.setdefault(index, {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as exc:
        raise DcganError(f"checkpoint {source}: optimizer state does not fit the model ({exc})") from None


def _module_state(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _split(prefix: str, tensors: dict) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def training_state(netG, netD, optG, optD, device: torch.device) -> tuple[dict[str, torch.Tensor], dict]:
    """What a checkpoint holds of the training: (tensors, metadata).

    Tensors: G's and D's state, both Adam states (per parameter, by index) and the RNG
    state; metadata: the optimizers' param groups (learning rate, betas, ...).
    """
    tensors = {**_module_state("G", netG), **_module_state("D", netD)}
    g_opt, g_groups = _optimizer_tensors("optG", optG)
    d_opt, d_groups = _optimizer_tensors("optD", optD)
    tensors.update(g_opt)
    tensors.update(d_opt)
    tensors["rng.cpu"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors[f"rng.cuda.{device.index or 0}"] = torch.cuda.get_rng_state(device)
    return tensors, {"optG_groups": g_groups, "optD_groups": d_groups}


def restore_training_state(
    tensors: dict[str, torch.Tensor], meta: dict, source: str, netG, netD, optG, optD, scaler, device: torch.device
) -> int:
    """Load a checkpoint's networks, optimizers, scaler and RNG state in place; returns its step."""
    from dcgan_cli.core.networks import check_state_dict

    g_state, d_state = _split("G", tensors), _split("D", tensors)
    check_state_dict(netG, g_state, f"checkpoint {source} (generator)")
    check_state_dict(netD, d_state, f"checkpoint {source} (discriminator)")
    netG.load_state_dict(g_state)
    netD.load_state_dict(d_state)
    try:
        _restore_optimizer("optG", optG, tensors, meta["optG_groups"], source)
        _restore_optimizer("optD", optD, tensors, meta["optD_groups"], source)
        step = int(meta["step"])
    except (KeyError, TypeError, ValueError):
        raise DcganError(f"checkpoint {source} lacks its optimizer or step records; use an intact copy") from None
    if scaler is not None and isinstance(meta.get("scaler"), dict):
        scaler.load_state_dict(meta["scaler"])
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    cuda_rng = f"rng.cuda.{device.index or 0}"
    if device.type == "cuda" and cuda_rng in tensors:
        torch.cuda.set_rng_state(tensors[cuda_rng], device)
    return step


def outputs_step(paths: RunPaths) -> int | None:
    """The step latest.json and generator.safetensors agree on, or None when they do not
    (a crash between writing a checkpoint and its companions)."""
    try:
        pointer = json.loads(paths.latest.read_text())
        _, metadata = read_safetensors(paths.generator)
        steps = {int(pointer["step"]), int(json.loads(metadata["meta"])["step"])}
    except (OSError, ValueError, KeyError, TypeError, DcganError):
        return None
    return steps.pop() if len(steps) == 1 else None


def truncate_logs(paths: RunPaths, step: int) -> None:
    """Drop metric and quality lines written after ``step`` (a crash after the checkpoint leaves some)."""
    for path in (paths.metrics, paths.quality):
        if not path.exists():
            continue
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        atomic_write_text(path, "".join(line + "\n" for line in kept))
