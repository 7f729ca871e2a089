"""Generation engines: the Engine base class and the registry of engine classes.

An engine loads a trained (or exported) generator and turns batches of z into images.
Engine plugins register their classes through the ``dcgan_register_engines`` hook; the
built-in torch engine is in torch_engine.py, the ONNX Runtime and TensorRT engines live in
their own distributions under engines/. Importing this module imports no torch.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.registry import RegistrationError, collect
from dcgan_cli.core.runs import RunPaths, read_run_config

if TYPE_CHECKING:
    import torch

# What a generation engine can be asked to run (`--precision`); each engine runs some of them.
# int8 is an ONNX export quantized by ONNX Runtime (engines/int8.py); it has no torch dtype.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def check_precision_name(precision: str) -> str:
    """``precision`` when it is a generation precision dcgan-cli knows, else one clear error."""
    if precision not in PRECISIONS:
        raise DcganError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a generation precision (int8 has none: it runs as a quantized ONNX model)."""
    import torch

    if check_precision_name(precision) == "int8":
        raise DcganError("int8 runs as the quantized ONNX model (`dcgan export --precision int8`), not in torch")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[check_precision_name(precision)]


def precision_refusal(engine: str, precisions: tuple[str, ...], precision: str) -> DcganError:
    """The error for a precision an engine does not run."""
    return DcganError(
        f"the {engine} engine runs {', '.join(precisions)}; got --precision {precision}: "
        "use one of those, or another --engine"
    )


# Engines that ship as their own distributions: what to tell a user who asks for one that
# is not installed.
KNOWN_ENGINES = {
    "onnxruntime": (
        "it comes with the dcgan-onnxruntime distribution: `pip install -e engines/onnxruntime` "
        "from a dcgan-cli checkout (or `python scripts/install.py`)"
    ),
    "tensorrt": (
        "it comes with the dcgan-tensorrt distribution, which needs an NVIDIA GPU, its driver and "
        "TensorRT 10: `pip install -e engines/tensorrt` from a dcgan-cli checkout"
    ),
}


class Engine(abc.ABC):
    """Turns batches of latent vectors into images with one trained generator.

    Subclasses set NAME, PRECISIONS and AUTO_PRIORITY and implement ``generate``. Engines
    that compile ahead of time (TensorRT) set BUILDS_AHEAD and implement ``build``, which
    `dcgan export` calls.
    """

    NAME: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    PRECISIONS: ClassVar[tuple[str, ...]] = ("fp32",)
    # `--engine auto` without a benchmark of this machine takes the highest priority that can
    # run (see choose_engine); the values follow measurements, documented in the README.
    AUTO_PRIORITY: ClassVar[int] = 0
    BUILDS_AHEAD: ClassVar[bool] = False

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """(True, "") when the engine can run here, else (False, what is missing and how to get it)."""
        return True, ""

    @classmethod
    def ready(cls, run_dir: Path, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        """(True, "") when the engine can load this run's current weights, else (False, one line
        saying why and what fixes it).

        Ready means more than "the files exist": what the engine loads (an export, a built
        engine) reads, was made from the run's current generator.safetensors, and (for
        engines built for one machine) was built on one like this. `--engine auto` passes
        over an engine that is not ready and says why; `--engine NAME` refuses with the reason.
        """
        return True, ""

    @classmethod
    def build(cls, run_dir: Path, request) -> dict:
        """Build what the engine loads, ahead of time (`dcgan export --trt`); returns its record."""
        raise DcganError(f"engine {cls.NAME!r} has nothing to build ahead of time")

    def __init__(self, run_dir: Path | str, *, device: str = "auto", precision: str = "fp32", **options):
        from dcgan_cli.core.model import DCGANConfig

        self.run_dir = Path(run_dir)
        self.config = DCGANConfig.from_dict(
            read_run_config(self.run_dir)["model"], source=str(RunPaths(self.run_dir).config)
        )
        self.device_name = device
        if precision not in self.PRECISIONS:
            raise precision_refusal(self.NAME, self.PRECISIONS, precision)
        self.precision = precision
        self.options = options

    @abc.abstractmethod
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(N, nz) float32 z -> (N, channels, size, size) float32 images in [-1, 1], on the CPU."""

    def describe(self) -> str:
        """One line for tables: the engine and how it runs (device, provider, precision)."""
        return f"{self.NAME} ({self.precision})"

    def close(self) -> None:
        """Release what the engine holds (sessions, device memory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _engine_entry(engine_class):
    name = getattr(engine_class, "NAME", "")
    if not (isinstance(engine_class, type) and issubclass(engine_class, Engine)):
        raise RegistrationError(f"{engine_class!r} is not an Engine subclass (dcgan_cli.api.Engine)")
    if not name:
        raise RegistrationError(f"engine class {engine_class.__name__} has no NAME")
    return name, engine_class, engine_class


def get_engines() -> dict[str, type[Engine]]:
    """Every engine class registered by built-in and installed plugins (``register(EngineClass)``), by NAME."""
    return collect("dcgan_register_engines", "engine", _engine_entry).as_dict()


def engine_class(name: str) -> type[Engine]:
    """The registered engine ``name``, or one clear error saying how to install it."""
    engines = get_engines()
    if name in engines:
        return engines[name]
    if name in KNOWN_ENGINES:
        raise DcganError(f"engine {name!r} is not installed: {KNOWN_ENGINES[name]}")
    raise DcganError(f"unknown engine {name!r}; use auto or an installed engine: {', '.join(sorted(engines))}")
