"""Generation engines: the Engine base class, the registry, the built-in torch engine,
choosing an engine (``--engine auto``) and measuring them (``dcgan bench``).

An engine loads a trained (or exported) generator and turns batches of z into images.
Engine plugins register their classes through the ``dcgan_register_engines`` hook; the
ONNX Runtime and TensorRT engines live in their own distributions under engines/.
"""

from __future__ import annotations

import abc
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch

from dcgan_cli.checkpoint import RunPaths, atomic_write_json, load_generator, read_json, read_run_config, sha256_file
from dcgan_cli.errors import DcganError
from dcgan_cli.hookspecs import hookimpl
from dcgan_cli.model import DCGANConfig

PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BENCH_BATCH_SIZES = (1, 16, 64, 256)
BENCH_FORMAT = "dcgan-cli/bench"

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


def cpu_threads() -> int:
    """CPUs this process may run on (respects taskset and cgroup CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
        """(True, "") when the run has what this engine loads (an export, a built engine), else why not."""
        return True, ""

    @classmethod
    def build(cls, run_dir: Path, request) -> dict:
        """Build what the engine loads, ahead of time (`dcgan export --trt`); returns its record."""
        raise DcganError(f"engine {cls.NAME!r} has nothing to build ahead of time")

    def __init__(self, run_dir: Path | str, *, device: str = "auto", precision: str = "fp32", **options):
        self.run_dir = Path(run_dir)
        self.config = DCGANConfig.from_dict(read_run_config(self.run_dir)["model"], source=str(self.run_dir / "config.json"))
        self.device_name = device
        if precision not in self.PRECISIONS:
            raise DcganError(
                f"the {self.NAME} engine runs {', '.join(self.PRECISIONS)}; got --precision {precision}"
            )
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


class TorchEngine(Engine):
    """PyTorch generator in eval mode (BatchNorm uses its stored statistics).

    On the CPU: fp32, channels-last, inference mode. On a CUDA device it also runs fp16 or
    bf16, and replays a CUDA graph per batch size (the first call of a size captures it), so
    a fixed-batch sampling loop costs one graph launch per batch instead of one launch per
    kernel.
    """

    NAME = "torch"
    DESCRIPTION = "PyTorch on the CPU or a CUDA device (fp16/bf16 and CUDA graphs on CUDA)"
    PRECISIONS = ("fp32", "fp16", "bf16")
    AUTO_PRIORITY = 10
    MAX_GRAPHS = 8  # batch sizes whose CUDA graph is kept (a sampling run needs 1 or 2)

    def __init__(self, run_dir, *, device="auto", precision="fp32", cuda_graphs: bool = True, **options):
        super().__init__(run_dir, device=device, precision=precision, **options)
        self.device = resolve_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise DcganError(
                f"the torch engine runs {precision} on a CUDA device only; on the CPU use --precision fp32 "
                "(or --engine onnxruntime with an fp16 export)"
            )
        self.dtype = PRECISION_DTYPES[precision]
        netG = load_generator(self.run_dir, device=self.device)
        # channels-last convolutions are faster on both oneDNN (CPU) and cuDNN.
        self.netG = netG.to(dtype=self.dtype, memory_format=torch.channels_last)
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None

    def describe(self) -> str:
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        graphs = ", CUDA graphs" if self.use_graphs else ""
        return f"torch ({where}, {self.precision}, channels-last{graphs})"

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        # fp32 means fp32: no TF32 convolutions, so every engine agrees within fp32 tolerance.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.netG(z)

    def _graph(self, n: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        entry = self._graphs.get(n)
        if entry is not None:
            return entry
        if len(self._graphs) >= self.MAX_GRAPHS:
            self._graphs.pop(next(iter(self._graphs)))
        static_z = torch.zeros(n, self.config.nz, device=self.device, dtype=self.dtype)
        # Warm up on a side stream (cuDNN picks its algorithms) before capturing, as CUDA graphs require.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(static_z)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_out = self._forward(static_z)
        entry = self._graphs[n] = (graph, static_z, static_out)
        return entry

    @torch.inference_mode()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(self.device, self.dtype, non_blocking=True)
        if not self.use_graphs:
            return self._forward(z).float().cpu().contiguous()
        graph, static_z, static_out = self._graph(len(z))
        static_z.copy_(z)
        graph.replay()
        return static_out.float().cpu().contiguous()

    def close(self) -> None:
        self._graphs.clear()


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


def engine_class(name: str) -> type[Engine]:
    """The registered engine ``name``, or one clear error saying how to install it."""
    engines = get_engines()
    if name in engines:
        return engines[name]
    if name in KNOWN_ENGINES:
        raise DcganError(f"engine {name!r} is not installed: {KNOWN_ENGINES[name]}")
    raise DcganError(f"unknown engine {name!r}; installed engines: {', '.join(sorted(engines))}")


# ---------------------------------------------------------------------------- choosing an engine


@dataclass
class Choice:
    engine: type[Engine]
    reason: str  # why auto chose it (empty when the user named the engine)
    hint: str = ""  # what would make a faster engine usable


def machine_fingerprint() -> dict:
    """What a benchmark's figures depend on: CPU, threads, GPU, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "threads": cpu_threads(), "gpu": gpu, "torch": torch.__version__}


def device_key(device: str) -> str:
    """'cpu' or 'cuda': what a benchmark row was measured on ('auto' resolved)."""
    return resolve_device(device).type


def bench_path(run_dir: Path) -> Path:
    return RunPaths(run_dir).exports / "bench.json"


def measured_best(run_dir: Path, candidates: dict[str, type[Engine]], precision: str, device: str, batch_size: int):
    """(engine name, images/s, measured batch) of the fastest candidate in the run's bench.json,
    when it was measured on this machine for these weights; else None."""
    path = bench_path(run_dir)
    if not path.is_file():
        return None
    try:
        bench = read_json(path, "benchmark")
    except DcganError:
        return None
    generator = RunPaths(run_dir).generator
    if (
        not isinstance(bench, dict)
        or bench.get("machine") != machine_fingerprint()
        or not generator.is_file()
        or bench.get("generator_sha256") != sha256_file(generator)
    ):
        return None
    device = device_key(device)
    rows = [
        r
        for r in bench.get("results", [])
        if isinstance(r, dict) and r.get("engine") in candidates and r.get("precision") == precision and r.get("device") == device
    ]
    if not rows:
        return None
    # The nearest measured batch size, on a log scale (1 and 16 are as far apart as 16 and 256).
    nearest = min({r["batch"] for r in rows}, key=lambda b: abs(math.log(b) - math.log(batch_size)))
    best = max((r for r in rows if r["batch"] == nearest), key=lambda r: r["images_per_s"])
    return best["engine"], best["images_per_s"], nearest


def select_engine(
    name: str, run_dir: Path | None = None, *, precision: str = "fp32", device: str = "auto", batch_size: int = 256
) -> Choice:
    """The engine for ``name``; 'auto' picks the fastest that can run here for this run.

    auto: among engines that are available (their libraries and device are present), run
    the precision, and are ready for the run (an export exists, an engine was built), take
    the fastest at the nearest batch size in the run's exports/bench.json when `dcgan bench`
    measured it on this machine for these weights; otherwise the highest AUTO_PRIORITY
    (tensorrt > onnxruntime > torch: the order measured on CPUs and GPUs, README).
    """
    from dcgan_cli.export import check_precision

    check_precision(precision)
    if name != "auto":
        cls = engine_class(name)
        ok, reason = cls.is_available()
        if not ok:
            raise DcganError(f"engine {name!r} cannot run here: {reason}")
        if precision not in cls.PRECISIONS:
            raise DcganError(f"the {name} engine runs {', '.join(cls.PRECISIONS)}; got --precision {precision}")
        if run_dir is not None:
            ok, reason = cls.ready(run_dir, precision, device)
            if not ok:
                raise DcganError(f"engine {name!r} is not ready for {run_dir}: {reason}")
        return Choice(cls, "")
    engines = get_engines()
    candidates, not_ready = {}, []
    for engine_name, cls in engines.items():
        if precision not in cls.PRECISIONS or not cls.is_available()[0]:
            continue
        if run_dir is not None:
            ok, reason = cls.ready(run_dir, precision, device)
            if not ok:
                not_ready.append((cls, reason))
                continue
        candidates[engine_name] = cls
    if not candidates:
        raise DcganError(f"no generation engine can run {precision} here; try --precision fp32 or --engine torch")
    ranked = sorted(candidates.values(), key=lambda cls: cls.AUTO_PRIORITY, reverse=True)
    best = ranked[0]
    measured = measured_best(run_dir, candidates, precision, device, batch_size) if run_dir is not None else None
    if measured is not None:
        best = candidates[measured[0]]
        reason = f"fastest at batch {measured[2]} in {bench_path(run_dir)} ({measured[1]:,.0f} img/s)"
    else:
        reason = "the fastest kind that can run here (no `dcgan bench` of this machine for the run)"
    faster = [(cls, why) for cls, why in not_ready if cls.AUTO_PRIORITY > best.AUTO_PRIORITY]
    hint = f"the {faster[0][0].NAME} engine would likely be faster: {faster[0][1]}" if faster else ""
    return Choice(best, reason, hint)


def choose_engine(name: str, run_dir: Path | None = None, **kwargs) -> type[Engine]:
    """The engine class for ``name``; 'auto' picks as select_engine does."""
    return select_engine(name, run_dir, **kwargs).engine


def open_engine(name: str, run_dir: Path | str, *, batch_size: int = 256, **options) -> Engine:
    """Open engine ``name`` ('auto' included) on a run."""
    cls = choose_engine(
        name, Path(run_dir), precision=options.get("precision", "fp32"), device=options.get("device", "auto"), batch_size=batch_size
    )
    return cls(run_dir, **options)


# ---------------------------------------------------------------------------- benchmarks


@dataclass
class BenchRow:
    engine: str
    description: str
    precision: str
    device: str
    batch: int
    images_per_s: float
    latency_ms: float  # median time of one call of `batch` images
    calls: int


def time_engine(engine: Engine, batch_size: int, min_time: float = 1.0, min_calls: int = 3) -> tuple[float, float, int]:
    """(images/s, latency in ms, calls) of ``engine.generate`` on seeded batches, from the median call."""
    from dcgan_cli.latent import seeded_z

    z = seeded_z(0, batch_size, engine.config.nz, engine.config.prior)
    engine.generate(z)  # warm-up: lazy initialisation, CUDA graph capture, allocator growth
    engine.generate(z)
    times = []
    started = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < min_time:
        t = time.perf_counter()
        engine.generate(z)
        times.append(time.perf_counter() - t)
    # The median call, not the mean: on a shared machine a few calls stall, and one stall
    # would otherwise decide the figure.
    median = statistics.median(times)
    return batch_size / median, 1000 * median, len(times)


def run_bench(
    run_dir: Path,
    engine_names: list[str] | None = None,
    batch_sizes: tuple[int, ...] = BENCH_BATCH_SIZES,
    *,
    precision: str = "fp32",
    device: str = "auto",
    min_time: float = 1.0,
    advance=None,
) -> dict:
    """Every ready engine at every batch size; returns (and writes to exports/bench.json) the table."""
    engines = get_engines()
    names = engine_names or sorted(engines, key=lambda n: engines[n].AUTO_PRIORITY)
    rows, skipped = [], []
    for name in names:
        try:
            select_engine(name, run_dir, precision=precision, device=device)
            engine = engines[name](run_dir, device=device, precision=precision)
        except DcganError as exc:
            if engine_names:  # asked for by name: say why it cannot run
                raise
            skipped.append({"engine": name, "reason": str(exc)})
            if advance:
                advance(len(batch_sizes))
            continue
        with engine:
            for batch in batch_sizes:
                images_per_s, latency, calls = time_engine(engine, batch, min_time)
                rows.append(BenchRow(name, engine.describe(), precision, device_key(device), batch, images_per_s, latency, calls))
                if advance:
                    advance(1)
    generator = RunPaths(run_dir).generator
    result = {
        "format": BENCH_FORMAT,
        "run_id": str(read_run_config(run_dir).get("run_id", run_dir.name)),
        "generator_sha256": sha256_file(generator) if generator.is_file() else "",
        "machine": machine_fingerprint(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "min_time_s": min_time,
        "results": [asdict(r) for r in rows],
        "skipped": skipped,
    }
    atomic_write_json(bench_path(run_dir), result)
    return result


@hookimpl
def dcgan_register_engines(register):
    register(TorchEngine)
