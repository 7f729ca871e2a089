"""The ONNX Runtime engine for dcgan-cli: runs exports/generator.onnx (or generator-fp16.onnx, generator-int8.onnx).

Registered through the ``dcgan`` entry-point group like any third-party plugin, and built on
dcgan-cli's public API (dcgan_cli.api) alone. numpy, torch and onnxruntime are imported when
an engine runs, never when the plugin registers (every `dcgan` command registers it).
"""

from __future__ import annotations

import importlib.util
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.api import (
    INPUT_NAME,
    OUTPUT_NAME,
    DcganError,
    Engine,
    RunPaths,
    check_onnx_matches_run,
    cpu_threads,
    hookimpl,
    onnx_path,
    read_generator_onnx,
    resolve_device,
)

if TYPE_CHECKING:
    import torch

__version__ = "0.1.0"
__all__ = ["OnnxRuntimeEngine", "providers_for", "session_options"]

# Both packages provide the `onnxruntime` module: installing one over the other breaks it, so the
# hint installs this distribution, whose environment markers pick the right one (pyproject.toml).
INSTALL_HINT = (
    "install it with `pip install -e engines/onnxruntime` (or `python scripts/install.py`), which brings "
    "onnxruntime-gpu on Linux x86-64 and Windows x64 and onnxruntime elsewhere; never install both"
)
TRT_PROFILE = (1, 256, 1024)  # batch sizes of the TensorRT provider's optimisation profile: min, opt, max
STREAM_CHUNK = 32  # images per slice in throughput mode: big enough for efficient kernels, small enough for cache


def _ort():
    import onnxruntime

    return onnxruntime


def session_options(threads: int):
    """Session options tuned for throughput: every graph optimisation, sequential execution
    (the graph is a chain), ``threads`` intra-op threads that sleep rather than spin while
    waiting (spinning threads steal the CPU from the other stream and from other processes;
    on a shared 2-core machine it made batch 256 1.6x slower)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_pattern = True
    options.enable_cpu_mem_arena = True
    options.log_severity_level = 3  # errors only: provider fallbacks are reported by describe()
    return options


def tensorrt_libraries_present() -> bool:
    """ONNX Runtime's TensorRT provider needs NVIDIA's libraries, which the tensorrt wheels bring."""
    return importlib.util.find_spec("tensorrt") is not None or importlib.util.find_spec("tensorrt_libs") is not None


def providers_for(device: torch.device, nz: int, precision: str, cache_dir: Path) -> list:
    """The provider chain for ``device``: TensorRT, CUDA, CPU on a CUDA device; the CPU otherwise."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    import torch

    available = _ort().get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DcganError(
            f"this ONNX Runtime has no CUDA provider, so it cannot run on {device}; pass --device cpu, or replace "
            "the CPU package with the GPU one: `pip uninstall onnxruntime` then `pip install onnxruntime-gpu`"
        )
    index = device.index if device.index is not None else torch.cuda.current_device()
    chain: list = []
    if "TensorrtExecutionProvider" in available and tensorrt_libraries_present():
        low, opt, high = TRT_PROFILE
        chain.append(
            (
                "TensorrtExecutionProvider",
                {
                    "device_id": index,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache_dir),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache_dir),
                    "trt_profile_min_shapes": f"{INPUT_NAME}:{low}x{nz}",
                    "trt_profile_opt_shapes": f"{INPUT_NAME}:{opt}x{nz}",
                    "trt_profile_max_shapes": f"{INPUT_NAME}:{high}x{nz}",
                },
            )
        )
    chain.append(
        (
            "CUDAExecutionProvider",
            {
                "device_id": index,
                # Run on torch's stream, so z written by torch is ready and the images are read after.
                "user_compute_stream": str(torch.cuda.current_stream(device).cuda_stream),
                "cudnn_conv_algo_search": "EXHAUSTIVE",
                "use_tf32": "0" if precision == "fp32" else "1",
            },
        )
    )
    chain.append("CPUExecutionProvider")
    return chain


class OnnxRuntimeEngine(Engine):
    """The exported generator in an ONNX Runtime session.

    On the CPU it runs in throughput mode for batches that fill every CPU: the batch is cut
    into slices of STREAM_CHUNK that one worker per CPU runs at once on a single-threaded
    session (data parallelism, as OpenVINO's throughput streams do: no barrier after each
    operator). Smaller batches run on one session whose operators use every CPU.
    """

    NAME = "onnxruntime"
    DESCRIPTION = "ONNX Runtime on exports/generator.onnx: CUDA/TensorRT providers when present, else the CPU"
    # int8: the QDQ model `dcgan export --precision int8` writes; on AVX512-VNNI CPUs its
    # convolutions run as int8 QLinearConv, 4-5x the example generator's speed (README).
    PRECISIONS = ("fp32", "fp16", "int8")
    AUTO_PRIORITY = 20  # ~3x the torch engine at batch 1 and ~1.5x at 256 on CPUs (README)

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, f"ONNX Runtime is not installed; {INSTALL_HINT}"
        return True, ""

    @classmethod
    def ready(cls, run_dir: Path, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        """Ready when the run's export of ``precision`` reads as a generator of the run's model, in
        that precision, exported from the run's current generator.safetensors."""
        run_dir = Path(run_dir)
        path = onnx_path(run_dir, precision)
        flag = "" if precision == "fp32" else f" --precision {precision}"
        if not path.is_file():
            return (
                False,
                f"{run_dir} has no {path.relative_to(run_dir)}; make it with `dcgan export -r {run_dir}{flag}`",
            )
        from dcgan_cli.api import DCGANConfig, read_run_config  # torch: when a command runs, not at registration

        try:
            config = DCGANConfig.from_dict(read_run_config(run_dir)["model"])

            info = read_generator_onnx(path, config)
            if info.precision != precision:
                raise DcganError(
                    f"{path} holds a {info.precision} model, not {precision}; "
                    f"export again with `dcgan export -r {run_dir}{flag} --force`"
                )
            if not info.generator_sha256:
                raise DcganError(
                    f"{path} does not record the weights it was exported from (not written by `dcgan export`?), "
                    f"so it may not be the run's current generator; export again with `dcgan export -r {run_dir}{flag} --force`"
                )
            check_onnx_matches_run(info, run_dir)
        except DcganError as exc:
            return False, str(exc)
        return True, ""

    def __init__(
        self,
        run_dir,
        *,
        device="auto",
        precision="fp32",
        model: Path | str | None = None,
        threads: int | None = None,
        **options,
    ):
        super().__init__(run_dir, device=device, precision=precision, **options)
        ok, reason = self.is_available()
        if not ok:
            raise DcganError(reason)
        self.device = self._device(device)
        self.path = Path(model) if model is not None else onnx_path(self.run_dir, precision)
        if model is None and not self.path.is_file():
            raise DcganError(self.ready(self.run_dir, precision)[1])
        info = read_generator_onnx(self.path, self.config)
        if info.precision != precision:
            raise DcganError(f"{self.path} holds a {info.precision} model, not {precision}")
        check_onnx_matches_run(info, self.run_dir)
        cache_dir = RunPaths(self.run_dir).exports / "ort-tensorrt"
        providers = providers_for(self.device, self.config.nz, precision, cache_dir)
        if any(isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider" for p in providers):
            cache_dir.mkdir(parents=True, exist_ok=True)
        self.threads = threads or cpu_threads()
        self.session = self._session(providers, self.threads)
        self.provider = self.session.get_providers()[0]
        self.on_cuda = self.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        self.streams = None
        if not self.on_cuda and self.threads > 1:
            self.stream_session = self._session(providers, 1)  # ORT sessions are safe to run from several threads
            self.streams = ThreadPoolExecutor(self.threads, thread_name_prefix="dcgan-ort")
        c = self.config
        self.image_shape = (c.channels, c.size, c.size)

    def _session(self, providers: list, threads: int):
        try:
            return _ort().InferenceSession(str(self.path), sess_options=session_options(threads), providers=providers)
        except Exception as exc:  # ORT raises its own exception types for broken or unsupported graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DcganError(f"ONNX Runtime cannot load {self.path}: {first}") from None

    @staticmethod
    def _device(device: str) -> torch.device:
        import torch

        dev = resolve_device(device)
        if dev.type == "mps":
            return torch.device("cpu")  # ONNX Runtime has no MPS provider: on a Mac it runs on the CPU
        if device == "auto" and dev.type == "cuda" and "CUDAExecutionProvider" not in _ort().get_available_providers():
            return torch.device("cpu")  # a CPU-only onnxruntime on a GPU machine: still works, on the CPU
        return dev

    def describe(self) -> str:
        threads = (
            "" if self.on_cuda else f", {self.threads} threads" + (f" / {self.threads} streams" if self.streams else "")
        )
        return f"onnxruntime {_ort().__version__} ({self.provider}{threads}, {self.precision})"

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import torch

        if self.on_cuda:
            return self._generate_bound(z)
        z = np.ascontiguousarray(z.detach().to("cpu", torch.float32).numpy())
        if self.streams is None or len(z) < 2 * self.threads:
            (images,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: z})
            return torch.from_numpy(images)
        chunk = min(STREAM_CHUNK, math.ceil(len(z) / self.threads))
        slices = [z[i : i + chunk] for i in range(0, len(z), chunk)]
        parts = self.streams.map(lambda part: self.stream_session.run([OUTPUT_NAME], {INPUT_NAME: part})[0], slices)
        return torch.from_numpy(np.concatenate(list(parts)))

    def _generate_bound(self, z: torch.Tensor) -> torch.Tensor:
        """I/O binding: the session reads z from and writes images into torch CUDA tensors."""
        import numpy as np
        import torch

        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        z = z.to(self.device, torch.float32, non_blocking=True).contiguous()
        images = torch.empty((len(z), *self.image_shape), dtype=torch.float32, device=self.device)
        binding = self.session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", index, np.float32, tuple(z.shape), z.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, tuple(images.shape), images.data_ptr())
        self.session.run_with_iobinding(binding)
        return images.cpu()

    def close(self) -> None:
        if self.streams is not None:
            self.streams.shutdown()
            self.streams = None
        self.session = self.stream_session = None


@hookimpl
def dcgan_register_engines(register):
    register(OnnxRuntimeEngine)
