"""ONNX export of a trained generator, and the check that the exported file computes what PyTorch does.

``exports/generator.onnx`` is the fp32 reference every engine starts from: input ``z``
(batch, nz) float32, output ``image`` (batch, channels, size, size) float32 in [-1, 1],
the batch axis dynamic. BatchNorm runs in eval mode: its stored statistics are folded into
the transposed convolutions before export, so the graph is Reshape, then ConvTranspose +
ReLU per block, then ConvTranspose + Tanh. Half-precision models (``generator-fp16.onnx``,
``generator-bf16.onnx``) compute in that type but keep float32 input and output, so every
engine takes and returns the same tensors.

Each file carries metadata properties (format, nz, prior, size, channels, run id, the
generator's sha256, dcgan-cli version, precision) so that a loader can refuse a file that
is not a dcgan generator or that was exported from other weights.
"""

from __future__ import annotations

import copy
import platform
import tempfile
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from dcgan_cli import __version__
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import (
    atomic_output,
    atomic_write_json,
    read_json,
    sha256_file,
)
from dcgan_cli.core.model import DCGANConfig, Generator
from dcgan_cli.core.networks import load_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.core.runs import RunPaths, read_run_config
from dcgan_cli.engines.base import PRECISIONS, check_precision_name, precision_dtype
from dcgan_cli.engines.onnx_files import (
    INPUT_NAME,
    MEAN_TOLERANCES,
    ONNX_FORMAT,
    OUTPUT_NAME,
    TOLERANCES,
    export_record_path,
    onnx_path,
    read_generator_onnx,
)

# ONNX's ConvTranspose accepts bfloat16 only from opset 22; fp32/fp16 use the widely supported 18.
OPSETS = {"fp32": 18, "fp16": 18, "bf16": 22, "int8": 18}
PARITY_SAMPLES = 256  # enough for the quality signal's thumbnail statistics
PARITY_SEED = 0
QUALITY_SEED = 1  # the reference samples the quality signal compares with: other z than the parity batch
QUALITY_FD_MARGIN = 0.25  # an export's thumbnail FD may exceed PyTorch fp32's by this fraction
QUALITY_DIVERSITY_MARGIN = 0.05
MAX_BATCH_DIM = 1 << 20  # upper bound torch.export needs for the symbolic batch size


# ---------------------------------------------------------------------------- the exported module


class ExportedGenerator(nn.Module):
    """The generator as exported: BatchNorm folded into each transposed convolution, computing
    in ``dtype``, float32 in and out.

    Folding happens in float32 before any cast, so half models lose only the final rounding.
    z (N, nz) -> (N, nz, 1, 1) -> [ConvTranspose + ReLU] x n_layers -> ConvTranspose + Tanh.
    """

    def __init__(self, netG: Generator, dtype: torch.dtype = torch.float32):
        super().__init__()
        netG = copy.deepcopy(netG).float().eval()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, block in enumerate(netG.blocks):
            layers[f"block{i}"] = torch.nn.utils.fusion.fuse_conv_bn_eval(block.conv, block.bn, transpose=True)
            layers[f"relu{i}"] = nn.ReLU()
        layers["to_image"] = netG.to_image.conv
        layers["tanh"] = nn.Tanh()
        self.nz = netG.config.nz
        self.dtype = dtype
        self.net = nn.Sequential(layers).to(dtype).eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # (N, nz) -> (N, nz, 1, 1) by appending axes: a reshape to (z.shape[0], nz, 1, 1) puts the
        # symbolic batch size in a shape list, which torch 2.5's exporter cannot translate.
        x = z.to(self.dtype)[:, :, None, None]
        return self.net(x).float()


# ---------------------------------------------------------------------------- metadata and checks


def onnx_metadata(config: DCGANConfig, run_dir: Path, precision: str, generator_sha256: str) -> dict[str, str]:
    run = read_run_config(run_dir)
    return {
        "format": ONNX_FORMAT,
        "nz": str(config.nz),
        "prior": config.prior,
        "size": str(config.size),
        "channels": str(config.channels),
        "ngf": str(config.ngf),
        "run_id": str(run.get("run_id", Path(run_dir).name)),
        "generator_sha256": generator_sha256,
        "precision": precision,
        "dcgan_cli_version": __version__,
        "torch_version": torch.__version__,
    }


def _onnx_model(module: nn.Module, config: DCGANConfig, opset: int):
    """``module`` (z (N, nz) -> image) through the dynamo exporter: input z, output image, dynamic batch."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH_DIM)
    example = seeded_z(PARITY_SEED, 2, config.nz, config.prior)
    with warnings.catch_warnings():
        # The exporter reports its own progress through warnings and prints; neither is for users.
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"z": {0: batch}},
            verbose=False,
        )
    return program.model_proto


def _export_to(netG: Generator, path: Path, precision: str, metadata: dict[str, str]) -> None:
    import onnx

    if precision == "int8":  # rewritten without transposed convolutions, then quantized (int8.py)
        from dcgan_cli.engines.int8 import export_int8

        with tempfile.TemporaryDirectory() as tmp:
            quantized = Path(tmp) / "int8.onnx"
            export_int8(
                netG,
                quantized,
                lambda module, to: onnx.save(_onnx_model(module, netG.config, OPSETS[precision]), str(to)),
            )
            model = onnx.load(str(quantized))
    else:
        model = _onnx_model(ExportedGenerator(netG, precision_dtype(precision)), netG.config, OPSETS[precision])
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (
        f"DCGAN generator exported by dcgan-cli {__version__}: z (batch, nz) -> image (batch, C, H, W) in [-1, 1]"
    )
    onnx.checker.check_model(model)
    with atomic_output(path) as tmp:
        onnx.save(model, str(tmp))


@dataclass
class Parity:
    """How closely an exported model matches the PyTorch fp32 generator on seeded z.

    Pixels (images in [-1, 1]): the max and mean absolute difference. The quality signal the
    trainer computes (training/quality.py: thumbnail FD and diversity) of the export's samples
    and of PyTorch's, both against PyTorch's samples of other z: the export must look like
    the model it came from, to within QUALITY_FD_MARGIN and QUALITY_DIVERSITY_MARGIN.
    """

    runtime: str
    samples: int
    seed: int
    max_abs_diff: float
    tolerance: float
    mean_abs_diff: float = 0.0
    mean_tolerance: float = float("inf")
    quality: dict | None = None  # {"fp32": {"thumb_fd", "diversity"}, "export": {...}}

    @property
    def quality_passed(self) -> bool:
        if self.quality is None:
            return True
        ours, theirs = self.quality["export"], self.quality["fp32"]
        return (
            ours["thumb_fd"] <= theirs["thumb_fd"] * (1 + QUALITY_FD_MARGIN) + 1e-6
            and abs(ours["diversity"] - theirs["diversity"]) <= QUALITY_DIVERSITY_MARGIN
        )

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.mean_abs_diff <= self.mean_tolerance and self.quality_passed

    def summary(self) -> str:
        text = f"max |ONNX - PyTorch| {self.max_abs_diff:.2e} (tolerance {self.tolerance:g}), mean {self.mean_abs_diff:.2e}"
        if self.mean_tolerance != float("inf"):
            text += f" (tolerance {self.mean_tolerance:g})"
        if self.quality is not None:
            ours, theirs = self.quality["export"], self.quality["fp32"]
            text += (
                f"; thumbnail FD {ours['thumb_fd']:.3g} vs fp32 {theirs['thumb_fd']:.3g}, "
                f"diversity {ours['diversity']:.3f} vs {theirs['diversity']:.3f}"
            )
        return f"{text}; over {self.samples} samples of seed {self.seed}"


def verify_onnx(run_dir: Path, path: Path, precision: str, netG: Generator | None = None) -> Parity | None:
    """Run the exported file on ``PARITY_SAMPLES`` seeded z and compare with PyTorch fp32.

    fp32, fp16 and int8 run in ONNX Runtime through the onnxruntime engine plugin (on the CPU,
    so the check is repeatable); bf16, which ONNX Runtime has no kernels for, runs on a few
    samples in ONNX's own reference evaluator (no quality signal). Returns None when no
    runtime can run it here.
    """
    from dcgan_cli.training.quality import QualityProbe

    netG = netG if netG is not None else load_generator(run_dir)
    c = netG.config
    z = seeded_z(PARITY_SEED, PARITY_SAMPLES, c.nz, c.prior)
    with torch.inference_mode():
        expected = netG(z)
    if precision == "bf16":
        from onnx.reference import ReferenceEvaluator

        z = z[:4]  # the reference evaluator is plain numpy: a few samples are enough
        expected = expected[:4]
        got = torch.from_numpy(ReferenceEvaluator(str(path)).run(None, {INPUT_NAME: z.numpy()})[0])
        runtime = "onnx.reference (ONNX Runtime has no bfloat16 kernels)"
    else:
        from dcgan_cli.engines.base import get_engines

        engine_class = get_engines().get("onnxruntime")
        if engine_class is None or not engine_class.is_available()[0]:
            return None
        with engine_class(run_dir, device="cpu", precision=precision, model=path) as engine:
            got = engine.generate(z)
            runtime = engine.describe()
    diff = (got.float() - expected).abs()
    quality = None
    if len(z) == PARITY_SAMPLES:
        with torch.inference_mode():
            probe = QualityProbe.from_images(netG(seeded_z(QUALITY_SEED, PARITY_SAMPLES, c.nz, c.prior)))
        quality = {"fp32": probe.score(expected), "export": probe.score(got.float())}
    return Parity(
        runtime=runtime,
        samples=len(z),
        seed=PARITY_SEED,
        max_abs_diff=float(diff.max()),
        tolerance=TOLERANCES[precision],
        mean_abs_diff=float(diff.mean()),
        mean_tolerance=MEAN_TOLERANCES.get(precision, float("inf")),
        quality=quality,
    )


@dataclass
class ExportResult:
    precision: str
    path: Path
    opset: int
    action: str  # "exported" or "kept" (already exported from these weights)
    sha256: str
    bytes: int
    parity: Parity | None
    seconds: float

    def to_json(self, run_dir: Path) -> dict:
        data = asdict(self)
        data["path"] = str(self.path.relative_to(run_dir)) if self.path.is_relative_to(run_dir) else str(self.path)
        if self.parity is not None:
            data["parity"]["passed"] = self.parity.passed
        return data


def _up_to_date(path: Path, generator_sha256: str, precision: str) -> bool:
    """An existing export made from these weights by this version, with the same opset."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    meta = {p.key: p.value for p in model.metadata_props}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return (
        meta.get("format") == ONNX_FORMAT
        and meta.get("generator_sha256") == generator_sha256
        and meta.get("precision") == precision
        and meta.get("dcgan_cli_version") == __version__
        and opset == OPSETS[precision]
    )


def export_generator(
    run_dir: Path | str, precision: str = "fp32", *, force: bool = False, verify: bool = True
) -> ExportResult:
    """Write (or keep, when it is up to date) the run's ONNX model of ``precision`` and check it.

    An existing file made from other weights is refused without ``force``. A new file that
    fails its parity check is not kept.
    """
    run_dir = Path(run_dir)
    check_precision_name(precision)
    started = time.perf_counter()
    paths = RunPaths(run_dir)
    if not paths.generator.is_file():
        raise DcganError(
            f"run {run_dir} has no generator.safetensors to export: training has not saved one yet; "
            "train it (`dcgan train`) or resume it (`dcgan train --resume`)"
        )
    netG = load_generator(run_dir)
    generator_sha256 = sha256_file(paths.generator)
    path = onnx_path(run_dir, precision)
    if path.exists() and not force and _up_to_date(path, generator_sha256, precision):
        action = "kept"
    else:
        if path.exists() and not force:
            raise DcganError(
                f"{path} exists and was not exported from the run's current generator by this version; "
                "pass --force to replace it"
            )
        metadata = onnx_metadata(netG.config, run_dir, precision, generator_sha256)
        # Export beside the target, verify, then move into place: a failed check keeps the old file.
        staging = path.with_name(f".{path.stem}.staging{path.suffix}")
        try:
            _export_to(netG, staging, precision, metadata)
            read_generator_onnx(staging, netG.config)
            parity = verify_onnx(run_dir, staging, precision, netG) if verify else None
            if parity is not None and not parity.passed:
                raise DcganError(
                    f"the exported {precision} model differs from PyTorch by {parity.max_abs_diff:.3g} "
                    f"(tolerance {parity.tolerance:g}); {path} was left unchanged. Please report this",
                    exit_code=1,
                )
            staging.replace(path)
        finally:
            staging.unlink(missing_ok=True)
        return ExportResult(
            precision,
            path,
            OPSETS[precision],
            "exported",
            sha256_file(path),
            path.stat().st_size,
            parity,
            time.perf_counter() - started,
        )
    parity = verify_onnx(run_dir, path, precision, netG) if verify else None
    if parity is not None and not parity.passed:
        raise DcganError(
            f"{path} differs from PyTorch by {parity.max_abs_diff:.3g} (tolerance {parity.tolerance:g}); "
            "export it again with --force",
        )
    return ExportResult(
        precision,
        path,
        OPSETS[precision],
        action,
        sha256_file(path),
        path.stat().st_size,
        parity,
        time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------- export.json


def record_export(run_dir: Path, results: list[ExportResult], tensorrt: list[dict] | None = None) -> Path:
    """Merge this export into exports/export.json (one entry per precision, the latest wins)."""
    import onnx

    record_path = export_record_path(run_dir)
    old = read_json(record_path, "export record") if record_path.is_file() else {}
    old = old if isinstance(old, dict) else {}
    models = {m.get("precision"): m for m in old.get("models", []) if isinstance(m, dict)}
    for result in results:
        models[result.precision] = result.to_json(run_dir)
    engines = {e.get("precision"): e for e in old.get("tensorrt", []) if isinstance(e, dict)}
    for entry in tensorrt or []:
        engines[entry.get("precision")] = entry
    generator = RunPaths(run_dir).generator
    record = {
        "format": "dcgan-cli/export",
        "run_id": str(read_run_config(run_dir).get("run_id", run_dir.name)),
        "generator_sha256": sha256_file(generator),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {
            "dcgan-cli": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "python": platform.python_version(),
        },
        "models": [models[p] for p in PRECISIONS if p in models],
        "tensorrt": [engines[p] for p in PRECISIONS if p in engines],
    }
    atomic_write_json(record_path, record)
    return record_path
