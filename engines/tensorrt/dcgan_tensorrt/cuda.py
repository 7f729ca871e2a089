"""The TensorRT engine's one seam to CUDA: whether a device is present, what it is, and a
placement on it (the device and a stream, made current while the engine runs).

Everything else in the engine is control flow over TensorRT's API. Tests replace
``dcgan_tensorrt.CUDA`` with a CPU stand-in (tests/fake_tensorrt.py) to run that control
flow where there is no GPU; torch and tensorrt are imported only when a method runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dcgan_cli.api import DcganError

if TYPE_CHECKING:
    import torch


class CudaPlacement:
    """One CUDA device and a stream of the engine's own: where its tensors live and its work runs."""

    def __init__(self, device: torch.device):
        import torch

        self.device = device
        self.stream = torch.cuda.Stream(device)

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """The device and the stream current: allocations, copies and TensorRT's kernels go there,
        whichever device the caller had current."""
        import torch

        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            yield

    @property
    def stream_handle(self) -> int:
        return self.stream.cuda_stream

    def synchronize(self) -> None:
        self.stream.synchronize()


class CudaDevices:
    """What the engine needs of CUDA, in one place: whether a device is present, what it is, and
    a placement on it. The rest of the engine is plain control flow over TensorRT's API, which
    tests run on the CPU by putting a stand-in here (tests/fake_tensorrt.py)."""

    def missing(self) -> str:
        """Why TensorRT cannot run here, or '' when a CUDA device is present."""
        import torch

        if not torch.cuda.is_available():
            return (
                "this machine has no CUDA device (TensorRT runs on NVIDIA GPUs only); "
                "use --engine onnxruntime or --engine torch here"
            )
        return ""

    def device(self, name: str = "auto") -> torch.device:
        """The CUDA device ``name`` (auto and cuda: the current one), or one clear error."""
        import torch

        if name in ("auto", "cuda"):
            return torch.device("cuda", torch.cuda.current_device())
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type != "cuda":
            raise DcganError(
                f"the tensorrt engine runs on CUDA devices only, not {name!r}; use --device cuda or cuda:N"
            )
        return device

    def machine(self, device: torch.device) -> tuple[str, str, str]:
        """(TensorRT version, GPU name, compute capability 'major.minor') of ``device``."""
        import tensorrt
        import torch

        major, minor = torch.cuda.get_device_capability(device)
        return tensorrt.__version__, torch.cuda.get_device_name(device), f"{major}.{minor}"

    def placement(self, device: torch.device) -> CudaPlacement:
        return CudaPlacement(device)
