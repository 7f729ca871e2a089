"""Devices: what ``--device`` names (auto, cpu, cuda, cuda:N) and how many CPUs this process may use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else the CPU; a CUDA request without CUDA is a clear error."""
    import torch  # only once a device is asked for: the command line starts without torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DcganError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DcganError(f"device {device!r} asked for, but this machine has no CUDA device; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise DcganError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


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
