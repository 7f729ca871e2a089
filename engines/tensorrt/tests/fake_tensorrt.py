"""A stand-in for NVIDIA's ``tensorrt`` module, for tests on machines without TensorRT or a GPU.

It implements the part of TensorRT 10's Python API that dcgan_tensorrt calls, records every
call in ``calls``, and behaves like TensorRT where the engine's own control flow depends on
it: the builder parses a real ONNX file and serialises a "plan" holding it (with the
optimisation profile); the runtime deserialises only such plans; an execution context
refuses input shapes outside the profile and, in ``execute_async_v3``, reads z from the
address bound to "z" and writes the images to the address bound to "image", computing them
with ONNX Runtime (or ONNX's reference evaluator) on the CPU. The addresses are those of
torch CPU tensors standing in for device memory (``CpuDevices`` below stands in for the
engine's CUDA seam, ``dcgan_tensorrt.CUDA``). A timing cache remembers how many builds
went into it, so a test can tell a reused cache from a fresh one.

Load it under the name ``tensorrt`` (see conftest.py); each load is a fresh module with an
empty call log. Set ``fail_execute = True`` or ``fail_build = True`` to make those calls fail
as TensorRT reports failure (a False return, a None plan).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json

import numpy as np

__version__ = "10.9.0.34"

calls: list[tuple] = []
fail_execute = False
fail_build = False
PLAN_FORMAT = "fake-tensorrt-plan"


def _record(*call) -> None:
    calls.append(call)


def names(kind: str) -> list[tuple]:
    """The recorded calls named ``kind``."""
    return [c for c in calls if c[0] == kind]


class Logger:
    WARNING = 2

    def __init__(self, severity=WARNING):
        self.severity = severity


class NetworkDefinitionCreationFlag:
    STRONGLY_TYPED = 1


class BuilderFlag:
    TF32 = "TF32"


class MemoryPoolType:
    WORKSPACE = "WORKSPACE"


class TimingCache:
    def __init__(self, data: bytes):
        self.builds = json.loads(data)["builds"] if data else 0

    def serialize(self) -> bytes:
        return json.dumps({"builds": self.builds}).encode()


class OptimizationProfile:
    def __init__(self):
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name, low, opt, high):
        _record("set_shape", name, tuple(low), tuple(opt), tuple(high))
        self.shapes[name] = (tuple(low), tuple(opt), tuple(high))


class BuilderConfig:
    def __init__(self):
        self.profiles: list[OptimizationProfile] = []
        self.cleared: list[str] = []
        self.cache: TimingCache | None = None

    def set_memory_pool_limit(self, pool, size):
        _record("set_memory_pool_limit", pool, size)

    def clear_flag(self, flag):
        _record("clear_flag", flag)
        self.cleared.append(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def create_timing_cache(self, data: bytes):
        _record("create_timing_cache", bytes(data))
        return TimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        _record("set_timing_cache", ignore_mismatch)
        self.cache = cache

    def get_timing_cache(self):
        return self.cache


class Network:
    def __init__(self, flags: int):
        self.flags = flags
        self.onnx: bytes | None = None


class OnnxParser:
    def __init__(self, network: Network, logger: Logger):
        self.network = network
        self.errors: list[str] = []

    def parse_from_file(self, path: str) -> bool:
        import onnx

        _record("parse_from_file", path)
        data = open(path, "rb").read()
        try:
            onnx.checker.check_model(onnx.load_from_string(data))
        except Exception as exc:
            self.errors.append(f"ModelImporter: {type(exc).__name__}")
            return False
        self.network.onnx = data
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]


class Builder:
    def __init__(self, logger: Logger):
        _record("Builder")

    def create_network(self, flags: int) -> Network:
        _record("create_network", flags)
        return Network(flags)

    def create_builder_config(self) -> BuilderConfig:
        return BuilderConfig()

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    def build_serialized_network(self, network: Network, config: BuilderConfig):
        _record("build_serialized_network", network.flags, tuple(config.cleared))
        if fail_build:
            return None
        if config.cache is not None:
            config.cache.builds += 1
        (profile,) = config.profiles
        plan = {
            "format": PLAN_FORMAT,
            "onnx": base64.b64encode(network.onnx).decode(),
            "profile": {name: list(shapes) for name, shapes in profile.shapes.items()},
        }
        return memoryview(json.dumps(plan).encode())


class Runtime:
    def __init__(self, logger: Logger):
        _record("Runtime")

    def deserialize_cuda_engine(self, data: bytes):
        _record("deserialize_cuda_engine", len(data))
        try:
            plan = json.loads(bytes(data))
            assert plan["format"] == PLAN_FORMAT
        except Exception:
            return None  # TensorRT logs the reason and returns None
        return CudaEngine(plan)


class CudaEngine:
    def __init__(self, plan: dict):
        self.onnx = base64.b64decode(plan["onnx"])
        self.profile = {name: [tuple(s) for s in shapes] for name, shapes in plan["profile"].items()}

    def create_execution_context(self):
        _record("create_execution_context")
        return ExecutionContext(self)


class ExecutionContext:
    def __init__(self, engine: CudaEngine):
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self._run = None

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(shape)
        _record("set_input_shape", name, shape)
        low, _, high = self.engine.profile[name]
        if len(shape) != len(low) or not all(a <= s <= b for a, s, b in zip(low, shape, high)):
            return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        _record("set_tensor_address", name)
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        _record("execute_async_v3", stream_handle, self.shapes.get("z"))
        if fail_execute:
            return False
        shape = self.shapes["z"]
        count = int(np.prod(shape))
        z = np.frombuffer((ctypes.c_float * count).from_address(self.addresses["z"]), dtype=np.float32)
        images = np.ascontiguousarray(self._runner()(z.reshape(shape).copy()), dtype=np.float32)
        ctypes.memmove(self.addresses["image"], images.ctypes.data, images.nbytes)
        return True

    def _runner(self):
        if self._run is None:
            try:
                import onnxruntime

                session = onnxruntime.InferenceSession(self.engine.onnx, providers=["CPUExecutionProvider"])
                self._run = lambda z: session.run(["image"], {"z": z})[0]
            except ImportError:
                from onnx.reference import ReferenceEvaluator

                evaluator = ReferenceEvaluator(self.engine.onnx)
                self._run = lambda z: evaluator.run(["image"], {"z": z})[0]
        return self._run


# ---------------------------------------------------------------------------- the CUDA seam, on the CPU


class CpuPlacement:
    """Stands in for dcgan_tensorrt.cuda.CudaPlacement: the CPU as the device, a stream handle, and
    a record of when the engine made it current."""

    stream_handle = 7  # any number: the fake's execute_async_v3 records it

    def __init__(self, device):
        import torch

        self.device = torch.device("cpu")
        self.requested = device

    @contextlib.contextmanager
    def current(self):
        _record("device_current", str(self.requested))
        try:
            yield
        finally:
            _record("device_released", str(self.requested))

    def synchronize(self) -> None:
        _record("synchronize")


class CpuDevices:
    """Stands in for dcgan_tensorrt.cuda.CudaDevices: a 'GPU' that is the CPU, named ``machine``."""

    def __init__(self, machine: tuple[str, str, str]):
        self.gpu_name, self.capability = machine[1], machine[2]

    def missing(self) -> str:
        return ""

    def device(self, name: str = "auto"):
        import torch

        from dcgan_cli.api import DcganError

        if name in ("auto", "cuda"):
            return torch.device("cuda", 0)
        device = torch.device(name)
        if device.type != "cuda":
            raise DcganError(
                f"the tensorrt engine runs on CUDA devices only, not {name!r}; use --device cuda or cuda:N"
            )
        return device

    def machine(self, device) -> tuple[str, str, str]:
        return __version__, self.gpu_name, self.capability

    def placement(self, device) -> CpuPlacement:
        return CpuPlacement(device)
