"""Devices: what ``--device`` names (auto, cpu, cuda, cuda:N, mps), what each can run, and how
many CPUs this process may use.

``auto`` is CUDA when present, else Apple's MPS (the GPU of Apple-silicon Macs), else the CPU.
What MPS cannot run falls back with one note on stderr, through the ``*_for`` functions
below, so that every command (training, sampling, the analyses) makes the same choice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def auto_device_type(cuda: bool, mps: bool) -> str:
    """What ``--device auto`` means on a machine with (or without) CUDA and MPS."""
    if cuda:
        return "cuda"
    if mps:
        return "mps"
    return "cpu"


def mps_available() -> bool:
    """Apple's Metal GPU backend is built into this torch and the Mac has a GPU torch can use."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' is CUDA, else MPS, else the CPU; asking for a device this machine lacks is a clear error."""
    import torch  # only once a device is asked for: the command line starts without torch

    if device == "auto":
        return torch.device(auto_device_type(torch.cuda.is_available(), mps_available()))
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DcganError(f"unknown device {device!r}; use {DEVICE_NAMES}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DcganError(f"device {device!r} asked for, but this machine has no CUDA device; use --device cpu")
    if dev.type == "mps" and not mps_available():
        raise DcganError(
            f"device {device!r} asked for, but MPS is not available here (it needs an Apple-silicon Mac, "
            "macOS 12.3 or newer and a torch built with MPS); use --device cpu"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DcganError(f"unsupported device {device!r}; use {DEVICE_NAMES}")
    return dev


# ----------------------------------------------------------------- what MPS cannot run
#
# Each returns what to run instead and a one-line note ("" when nothing changes); the
# caller prints the note. They take the device type as a string so that the choice can be
# tested on any machine.

# Autocast and gradient scaling on MPS are young in torch and differ between macOS releases;
# training in half precision there falls back to fp32 rather than risk silent NaNs.
MPS_TRAINING_PRECISIONS = ("fp32",)
# Generation (no gradients): MPS runs float16 natively; bfloat16 needs macOS 14 and is not
# used here.
MPS_INFERENCE_PRECISIONS = ("fp32", "fp16")


def training_precision_for(device_type: str, precision: str) -> tuple[str, str]:
    """The training precision to use on ``device_type`` when ``precision`` was asked for."""
    if device_type == "mps" and precision not in MPS_TRAINING_PRECISIONS:
        return "fp32", f"MPS: {precision} training is not supported here; training in fp32"
    return precision, ""


def inference_precision_for(device_type: str, precision: str) -> tuple[str, str]:
    """The precision the torch engine uses on ``device_type`` when ``precision`` was asked for."""
    if device_type == "mps" and precision not in MPS_INFERENCE_PRECISIONS:
        return "fp16", f"MPS: the torch engine has no {precision} there; generating in fp16 instead"
    return precision, ""


def compile_for(device_type: str, compile: bool) -> tuple[bool, str]:
    """Whether torch.compile is used on ``device_type`` when it was asked for."""
    if compile and device_type == "mps":
        return False, "MPS: torch.compile's MPS backend is experimental; training without --compile"
    return compile, ""


def cuda_graphs_for(device_type: str, wanted: bool) -> tuple[bool, str]:
    """CUDA graphs are CUDA's alone: elsewhere every batch is an ordinary call."""
    if wanted and device_type == "mps":
        return False, "MPS: CUDA graphs are CUDA-only; the torch engine runs each batch as an ordinary call"
    return wanted and device_type == "cuda", ""


def processes_device_for(device_type: str, processes: int) -> tuple[str, str]:
    """Data-parallel training on several processes runs on CUDA (NCCL) or the CPU (gloo), not MPS."""
    if device_type == "mps" and processes > 1:
        return "cpu", "MPS: one GPU cannot be shared by several training processes; they train on the CPU"
    return device_type, ""


def cpu_threads() -> int:
    """CPUs this process may run on (respects taskset and cgroup CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
