"""The TensorRT engine for dcgan-cli.

`dcgan export --trt` builds a serialized engine from the run's ONNX model with TensorRT's
Python API (an optimisation profile over the batch, a persisted timing cache) and saves it
with a JSON record of what it was built for. `dcgan sample --engine tensorrt` loads it,
refusing an engine built on another GPU, another TensorRT or from another ONNX file, and
runs it on torch CUDA tensors: named tensor addresses and ``execute_async_v3`` on torch's
stream, no pycuda.

Precision lives in the network (a strongly typed network built from generator.onnx,
generator-fp16.onnx or generator-bf16.onnx): NVIDIA's recommended mode, the only one in
TensorRT 11, where the FP16/BF16 builder flags are gone.

Everything that does not need TensorRT or a GPU (paths, metadata, cache keys, checks and
messages) is importable and tested without them; ``tensorrt`` is imported only to build or run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.api import (
    INPUT_NAME,
    OUTPUT_NAME,
    BuildRequest,
    DcganError,
    Engine,
    RunPaths,
    atomic_write_bytes,
    atomic_write_json,
    check_onnx_matches_run,
    export_generator,
    hookimpl,
    onnx_path,
    read_generator_onnx,
    read_json,
    sha256_file,
)
from dcgan_tensorrt.cuda import CudaDevices

if TYPE_CHECKING:
    import torch

__version__ = "0.1.0"

ENGINE_FORMAT = "dcgan-cli/tensorrt-engine"
CACHE_ENV = "DCGAN_CACHE_DIR"
INSTALL_HINT = (
    "install NVIDIA's TensorRT 10 wheels with `pip install tensorrt` (or `pip install -e engines/tensorrt`); "
    "they need an NVIDIA GPU with its driver"
)
WORKSPACE_BYTES = 1 << 30  # the generator's layers need far less; a cap keeps the build polite on shared GPUs


# ---------------------------------------------------------------------------- what needs no TensorRT


def engine_paths(run_dir: Path | str, precision: str) -> tuple[Path, Path]:
    """exports/generator-<precision>.engine and its JSON record."""
    exports = RunPaths(Path(run_dir)).exports
    return exports / f"generator-{precision}.engine", exports / f"generator-{precision}.engine.json"


def cache_root() -> Path:
    """Where timing caches persist across runs: $DCGAN_CACHE_DIR, else $XDG_CACHE_HOME/dcgan-cli, else ~/.cache/dcgan-cli."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dcgan-cli"


def timing_cache_key(tensorrt_version: str, gpu_name: str, compute_capability: str) -> str:
    """A timing cache is valid for one TensorRT version on one kind of GPU; its file name says which."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    return f"trt{tensorrt_version}-sm{compute_capability.replace('.', '')}-{gpu}"


def timing_cache_path(tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
    return (
        cache_root() / "tensorrt" / f"{timing_cache_key(tensorrt_version, gpu_name, compute_capability)}.timing-cache"
    )


def engine_metadata(
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    opt_batch: int,
    max_batch: int,
    onnx_file: Path,
    onnx_sha256: str,
    engine_sha256: str,
    build_seconds: float,
    timing_cache: Path | None,
) -> dict:
    """The JSON written beside an engine: what it was built for, from what."""
    return {
        "format": ENGINE_FORMAT,
        "tensorrt": tensorrt_version,
        "gpu": {"name": gpu_name, "compute_capability": compute_capability},
        "precision": precision,
        "batch": {"min": 1, "opt": opt_batch, "max": max_batch},
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "onnx": {"file": onnx_file.name, "sha256": onnx_sha256},
        "engine_sha256": engine_sha256,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "build_seconds": round(build_seconds, 2),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dcgan_tensorrt": __version__,
    }


def metadata_mismatches(
    meta: dict, *, tensorrt_version: str, gpu_name: str, compute_capability: str, onnx_sha256: str, precision: str
) -> list[str]:
    """How an engine's record differs from this machine and ONNX file, one phrase per difference."""
    found = []
    if meta.get("format") != ENGINE_FORMAT:
        return [f"it is not a dcgan-cli TensorRT engine record (format {meta.get('format')!r})"]
    malformed = record_problems(meta)
    if malformed:
        return malformed
    if meta.get("tensorrt") != tensorrt_version:
        found.append(f"it was built with TensorRT {meta.get('tensorrt')}, this machine has {tensorrt_version}")
    gpu = meta.get("gpu") or {}
    if gpu.get("name") != gpu_name or gpu.get("compute_capability") != compute_capability:
        found.append(
            f"it was built for {gpu.get('name')} (compute capability {gpu.get('compute_capability')}), "
            f"this machine has {gpu_name} ({compute_capability})"
        )
    if (meta.get("onnx") or {}).get("sha256") != onnx_sha256:
        found.append("it was built from another ONNX file than the run's current export")
    if meta.get("precision") != precision:
        found.append(f"it is a {meta.get('precision')} engine, {precision} was asked for")
    return found


def record_problems(meta: dict) -> list[str]:
    """Fields of an engine record that are missing or of the wrong kind (a hand-edited or foreign
    record): everything loading reads from it is checked before the engine is deserialised."""
    found = []
    for key in ("gpu", "onnx", "batch"):
        if not isinstance(meta.get(key), dict):
            found.append(f"its record has no {key!r} object")
    if found:
        return found
    gpu, batch = meta["gpu"], meta["batch"]
    if not all(isinstance(gpu.get(k), str) for k in ("name", "compute_capability")):
        found.append("its record's 'gpu' lacks a name or compute capability")
    if not isinstance(meta["onnx"].get("sha256"), str):
        found.append("its record's 'onnx' lacks the sha256 of the ONNX file")
    sizes = [batch.get(k) for k in ("min", "opt", "max")]
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes)
        or not 1 <= sizes[0] <= sizes[1] <= sizes[2]
    ):
        found.append(f"its record's 'batch' is not whole numbers 1 <= min <= opt <= max (got {batch})")
    for key in ("tensorrt", "precision", "engine_sha256"):
        if not isinstance(meta.get(key), str):
            found.append(f"its record has no {key!r}")
    return found


def mismatch_error(engine_path: Path, run_dir: Path, precision: str, problems: list[str]) -> DcganError:
    return DcganError(
        f"refusing TensorRT engine {engine_path}: {'; '.join(problems)}. Rebuild it with "
        f"`dcgan export -r {run_dir} --trt --precision {precision} --rebuild`"
    )


def read_engine_record(path: Path) -> dict:
    record = read_json(path, "TensorRT engine record")
    if not isinstance(record, dict):
        raise DcganError(f"{path} is not a TensorRT engine record (a JSON object)")
    return record


def summary(action: str, engine_path: Path, record: dict) -> str:
    """One line for `dcgan export --trt`: what was built or kept, for what."""
    batch = record.get("batch", {})
    gpu = record.get("gpu", {})
    return (
        f"{action} {engine_path} (TensorRT {record.get('tensorrt')}, {gpu.get('name')} sm_{str(gpu.get('compute_capability')).replace('.', '')}, "
        f"{record.get('precision')}, batch 1..{batch.get('max')} tuned for {batch.get('opt')}, {record.get('build_seconds')} s to build)"
    )


CUDA = CudaDevices()  # tests swap in a CPU stand-in


def cuda_missing() -> str:
    """Why TensorRT cannot run here, or '' when a CUDA device is present."""
    return CUDA.missing()


def tensorrt_missing() -> str:
    if importlib.util.find_spec("tensorrt") is None:
        return f"TensorRT is not installed; {INSTALL_HINT}"
    return ""


def missing_files(run_dir: Path, precision: str) -> str:
    """What is missing of the run's engine of ``precision`` (the engine, or the record written
    after it), with the command that makes it; '' when both files are there."""
    engine_path, record_path = engine_paths(run_dir, precision)
    build = f"dcgan export -r {run_dir} --trt --precision {precision}"
    if not engine_path.is_file():
        return f"{run_dir} has no TensorRT engine {engine_path.name}; build it with `{build}`"
    if not record_path.is_file():
        # The record is written after the engine: a build that stopped in between, or a copied engine.
        return (
            f"{engine_path} has no record {record_path.name} beside it (a build that did not finish, or an "
            f"engine copied without it), so what it was built for is unknown; rebuild it with `{build} --rebuild`"
        )
    return ""


def checked_engine(run_dir: Path, precision: str, machine: tuple[str, str, str]) -> tuple[dict, bytes]:
    """(record, engine bytes) of the run's engine, refused unless it was built on a machine
    like ``machine`` (TensorRT version, GPU name, compute capability), from the run's
    current ONNX file, and is the file its record describes."""
    run_dir = Path(run_dir)
    engine_path, record_path = engine_paths(run_dir, precision)
    missing = missing_files(run_dir, precision)
    if missing:
        raise DcganError(missing)
    onnx_file = onnx_path(run_dir, precision)
    if not onnx_file.is_file():
        raise DcganError(
            f"{onnx_file} is gone, so {engine_path} cannot be checked against it; "
            f"run `dcgan export -r {run_dir} --trt --precision {precision} --rebuild`"
        )
    check_onnx_matches_run(read_generator_onnx(onnx_file), run_dir)
    try:
        record = read_engine_record(record_path)
    except DcganError as exc:
        raise mismatch_error(engine_path, run_dir, precision, [str(exc).rstrip(".")]) from None
    version, gpu, capability = machine
    problems = metadata_mismatches(
        record,
        tensorrt_version=version,
        gpu_name=gpu,
        compute_capability=capability,
        onnx_sha256=sha256_file(onnx_file),
        precision=precision,
    )
    data = engine_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.get("engine_sha256"):
        problems.append("the engine file does not match its record (damaged or replaced)")
    if problems:
        raise mismatch_error(engine_path, run_dir, precision, problems)
    return record, data


# ---------------------------------------------------------------------------- TensorRT itself


def _trt():
    import tensorrt

    return tensorrt


def _logger():
    trt = _trt()
    return trt.Logger(trt.Logger.WARNING)


def this_machine(device: torch.device | None = None) -> tuple[str, str, str]:
    """(TensorRT version, GPU name, compute capability 'major.minor') of ``device`` (the current one by default)."""
    return CUDA.machine(device if device is not None else CUDA.device("auto"))


def build_engine(
    onnx_file: Path, engine_path: Path, *, nz: int, precision: str, opt_batch: int, max_batch: int
) -> dict:
    """Parse ``onnx_file`` into a strongly typed network, build it for batches 1..max_batch
    (tuned for opt_batch) with the persisted timing cache, save the engine and its record."""
    trt = _trt()
    logger = _logger()
    version, gpu_name, capability = this_machine()
    started = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no detail"
        raise DcganError(f"TensorRT cannot parse {onnx_file}: {errors}; `dcgan export --force` writes it afresh")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 engines stay within fp32 tolerance of PyTorch
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, nz), (opt_batch, nz), (max_batch, nz))
    config.add_optimization_profile(profile)
    cache_file = timing_cache_path(version, gpu_name, capability)
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DcganError(
            f"TensorRT could not build an engine from {onnx_file} (its log above says why); "
            "--engine onnxruntime or --engine torch run the same model meanwhile"
        )
    data = bytes(serialized)
    atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    atomic_write_bytes(engine_path, data)
    meta = engine_metadata(
        tensorrt_version=version,
        gpu_name=gpu_name,
        compute_capability=capability,
        precision=precision,
        opt_batch=opt_batch,
        max_batch=max_batch,
        onnx_file=onnx_file,
        onnx_sha256=sha256_file(onnx_file),
        engine_sha256=hashlib.sha256(data).hexdigest(),
        build_seconds=time.perf_counter() - started,
        timing_cache=cache_file,
    )
    return meta


class TensorRTEngine(Engine):
    """A serialized TensorRT engine run on torch CUDA tensors."""

    NAME = "tensorrt"
    DESCRIPTION = "TensorRT engine built by `dcgan export --trt` (NVIDIA GPUs)"
    # int8: built from generator-int8.onnx, the QDQ model ONNX Runtime quantized; a strongly typed
    # network takes its Q/DQ scales as they are (explicit quantization: no calibrator here).
    PRECISIONS = ("fp32", "fp16", "bf16", "int8")
    AUTO_PRIORITY = 30
    BUILDS_AHEAD = True

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        missing = [m for m in (tensorrt_missing(), cuda_missing()) if m]
        return (not missing), "; and ".join(missing)

    @classmethod
    def ready(cls, run_dir: Path, precision: str = "fp32", device: str = "auto") -> tuple[bool, str]:
        """Ready when the run's engine and its record are there and, where TensorRT and CUDA are,
        the record matches this machine, the engine file and the run's current ONNX export."""
        run_dir = Path(run_dir)
        missing = missing_files(run_dir, precision)
        if missing:
            return False, missing
        if not cls.is_available()[0]:
            return True, ""  # nothing here to check the record against; is_available says why it cannot run
        try:
            checked_engine(run_dir, precision, this_machine(CUDA.device(device)))
        except DcganError as exc:
            return False, str(exc)
        return True, ""

    @classmethod
    def build(cls, run_dir: Path, request: BuildRequest) -> dict:
        """Export (or reuse) the ONNX model of the precision, then build the engine unless an
        up-to-date one exists. A stale engine needs --rebuild."""
        request.validate()
        ok, reason = cls.is_available()
        if not ok:
            raise DcganError(f"cannot build a TensorRT engine: {reason}")
        run_dir = Path(run_dir)
        export_generator(run_dir, request.precision, verify=False)  # `dcgan export` has just verified it
        onnx_file = onnx_path(run_dir, request.precision)
        info = read_generator_onnx(onnx_file)
        engine_path, record_path = engine_paths(run_dir, request.precision)
        if engine_path.is_file() and record_path.is_file() and not request.rebuild:
            record, _ = checked_engine(run_dir, request.precision, this_machine())
            batch = record.get("batch") or {}
            if (batch.get("opt"), batch.get("max")) != (request.opt_batch, request.max_batch):
                raise mismatch_error(
                    engine_path,
                    run_dir,
                    request.precision,
                    [
                        f"its batch profile is opt {batch.get('opt')}, max {batch.get('max')}; asked for opt {request.opt_batch}, max {request.max_batch}"
                    ],
                )
            return {
                **record,
                "action": "kept",
                "engine": engine_path.name,
                "summary": summary("kept", engine_path, record),
            }
        meta = build_engine(
            onnx_file,
            engine_path,
            nz=info.nz,
            precision=request.precision,
            opt_batch=request.opt_batch,
            max_batch=request.max_batch,
        )
        atomic_write_json(record_path, meta)
        return {**meta, "action": "built", "engine": engine_path.name, "summary": summary("built", engine_path, meta)}

    def __init__(self, run_dir, *, device="auto", precision="fp32", **options):
        super().__init__(run_dir, device=device, precision=precision, **options)
        ok, reason = self.is_available()
        if not ok:
            raise DcganError(f"engine 'tensorrt' cannot run here: {reason}")
        self.device = CUDA.device(device)
        record, data = checked_engine(self.run_dir, precision, this_machine(self.device))
        trt = _trt()
        self.placement = CUDA.placement(self.device)
        with self.placement.current():
            self.runtime = trt.Runtime(_logger())
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise mismatch_error(
                    engine_paths(self.run_dir, precision)[0],
                    self.run_dir,
                    precision,
                    ["TensorRT could not deserialize it"],
                )
            self.context = self.engine.create_execution_context()
        self.max_batch = int(record["batch"]["max"])
        self.record = record
        c = self.config
        self.image_shape = (c.channels, c.size, c.size)

    def describe(self) -> str:
        return f"tensorrt {self.record['tensorrt']} ({self.record['gpu']['name']}, {self.precision}, batch <= {self.max_batch})"

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        import torch

        outputs = []
        device = self.placement.device
        # The engine's device and stream current, whichever the caller had: TensorRT runs on the
        # current device's context. Batches beyond the profile's max run in slices of max_batch.
        with torch.inference_mode(), self.placement.current():
            for start in range(0, len(z), self.max_batch):
                chunk = z[start : start + self.max_batch]
                z_dev = chunk.to(device, torch.float32, non_blocking=True).contiguous()
                images = torch.empty((len(chunk), *self.image_shape), dtype=torch.float32, device=device)
                if not self.context.set_input_shape(INPUT_NAME, tuple(z_dev.shape)):
                    raise DcganError(
                        f"TensorRT refused a batch of {len(chunk)} z of length {z_dev.shape[1]}: pass z of "
                        f"length {self.config.nz} (the engine takes 1..{self.max_batch} at a time)",
                        exit_code=1,
                    )
                self.context.set_tensor_address(INPUT_NAME, z_dev.data_ptr())
                self.context.set_tensor_address(OUTPUT_NAME, images.data_ptr())
                if not self.context.execute_async_v3(self.placement.stream_handle):
                    raise DcganError(
                        f"TensorRT failed to run the engine on a batch of {len(chunk)} on {device} "
                        "(TensorRT's log above says why); try --engine onnxruntime or --engine torch",
                        exit_code=1,
                    )
                outputs.append(images.to("cpu", non_blocking=False))
            self.placement.synchronize()
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def close(self) -> None:
        self.context = None
        self.engine = None


@hookimpl
def dcgan_register_engines(register):
    register(TensorRTEngine)
