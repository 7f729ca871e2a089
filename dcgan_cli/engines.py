"""Generation engines: the Engine base class, the registry, and the built-in torch engine.

An engine loads a trained (or exported) generator and turns batches of z into images.
Engine plugins register their classes through the ``dcgan_register_engines`` hook.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import torch

from dcgan_cli.checkpoint import load_generator, read_run_config
from dcgan_cli.errors import DcganError
from dcgan_cli.hookspecs import hookimpl
from dcgan_cli.model import DCGANConfig


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else the CPU; a CUDA request without CUDA is a clear error."""
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


class Engine(abc.ABC):
    """Turns batches of latent vectors into images with one trained generator."""

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """(True, "") when the engine can run here, else (False, what is missing and how to get it)."""
        return True, ""

    def __init__(self, run_dir: Path | str, *, device: str = "auto", precision: str = "fp32", **options):
        self.run_dir = Path(run_dir)
        self.config = DCGANConfig.from_dict(read_run_config(self.run_dir)["model"], source=str(self.run_dir / "config.json"))
        self.device_name = device
        self.precision = precision
        self.options = options

    @abc.abstractmethod
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(N, nz) float32 z -> (N, channels, size, size) float32 images in [-1, 1], on the CPU."""

    def close(self) -> None:
        """Release what the engine holds (sessions, device memory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TorchEngine(Engine):
    """PyTorch eager generator in eval mode (BatchNorm uses its stored statistics)."""

    NAME = "torch"
    DESCRIPTION = "PyTorch, eager, on the CPU or a CUDA device"

    def __init__(self, run_dir, *, device="auto", precision="fp32", **options):
        super().__init__(run_dir, device=device, precision=precision, **options)
        if precision != "fp32":
            raise DcganError(f"the torch engine runs fp32 only; got --precision {precision}")
        self.device = resolve_device(device)
        self.netG = load_generator(self.run_dir, device=self.device)
        # channels-last convolutions are faster on both oneDNN (CPU) and cuDNN.
        self.netG = self.netG.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        images = self.netG(z.to(self.device, torch.float32))
        return images.float().cpu().contiguous()


def get_engines() -> dict[str, type[Engine]]:
    """Every engine class registered by built-in and installed plugins, by NAME."""
    from dcgan_cli import plugins

    found: dict[str, type[Engine]] = {}

    def register(engine_class: type[Engine]) -> None:
        name = getattr(engine_class, "NAME", "")
        if not name:
            raise ValueError(f"engine class {engine_class.__name__} has no NAME")
        if name in found and found[name] is not engine_class:
            raise ValueError(f"engine name {name!r} is already taken by {found[name].__module__}")
        found[name] = engine_class

    plugins.call_each("dcgan_register_engines", register=register)
    return found


def choose_engine(name: str) -> type[Engine]:
    """The engine class for ``name``; 'auto' picks the best available one."""
    engines = get_engines()
    if name == "auto":
        # Engines that declare a higher AUTO_PRIORITY win when they are available.
        ranked = sorted(engines.values(), key=lambda cls: getattr(cls, "AUTO_PRIORITY", 0), reverse=True)
        for cls in ranked:
            if cls.is_available()[0]:
                return cls
        raise DcganError("no generation engine is available")
    if name not in engines:
        raise DcganError(f"unknown engine {name!r}; installed engines: {', '.join(sorted(engines))}")
    cls = engines[name]
    ok, reason = cls.is_available()
    if not ok:
        raise DcganError(f"engine {name!r} cannot run here: {reason}")
    return cls


def open_engine(name: str, run_dir: Path | str, **options) -> Engine:
    return choose_engine(name)(run_dir, **options)


@hookimpl
def dcgan_register_engines(register):
    register(TorchEngine)
