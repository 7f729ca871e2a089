"""Exported generator files: where they live, what they must look like, and whether they are current.

Reading an export needs no torch (the onnx package is imported when a file is read), so
engine plugins can import this at registration. Writing them is export.py's work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import sha256_file
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.engines.base import check_precision_name

if TYPE_CHECKING:
    from dcgan_cli.core.model import DCGANConfig

ONNX_FORMAT = "dcgan-cli/generator-onnx"
INPUT_NAME = "z"
OUTPUT_NAME = "image"
# Max |ONNX - PyTorch fp32| on images in [-1, 1]. One 8-bit grey level is 2/255 ~ 7.8e-3;
# fp16 (10-bit mantissa) stays well under it, bf16 (7-bit mantissa) within a few levels.
# int8 (256 levels per layer's activations) moves single saturated pixels by up to ~16 grey
# levels (0.13 measured on the trained digits fixture) while the mean stays under one level:
# its max is bounded loosely, its mean tightly.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 6e-2, "int8": 0.25}
MEAN_TOLERANCES = {"int8": 2e-2}


def onnx_path(run_dir: Path | str, precision: str = "fp32") -> Path:
    """exports/generator.onnx (fp32) or exports/generator-fp16.onnx / generator-bf16.onnx."""
    check_precision_name(precision)
    name = "generator.onnx" if precision == "fp32" else f"generator-{precision}.onnx"
    return RunPaths(Path(run_dir)).exports / name


def export_record_path(run_dir: Path | str) -> Path:
    return RunPaths(Path(run_dir)).export_record


@dataclass(frozen=True)
class GeneratorOnnx:
    """What a generator ONNX file says about itself, after checking that it is one."""

    path: Path
    nz: int
    channels: int
    size: int
    precision: str
    metadata: dict[str, str]

    @property
    def generator_sha256(self) -> str:
        return self.metadata.get("generator_sha256", "")


def _dims(value_info) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def read_generator_onnx(path: Path | str, config: DCGANConfig | None = None) -> GeneratorOnnx:
    """Check that ``path`` is a generator ONNX file (input z (batch, nz), output image
    (batch, C, S, S), float32) and, given ``config``, that it fits that model. One clear
    error otherwise."""
    import onnx

    from dcgan_cli.core.model import CHANNELS, SIZES

    path = Path(path)
    if not path.is_file():
        raise DcganError(f"{path} does not exist; export the generator with `dcgan export`")
    try:
        # The graph's structure is all we need; the weights stay on disk.
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise DcganError(
            f"{path} is not a readable ONNX file ({type(exc).__name__}); export it again with `dcgan export --force`"
        ) from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    what = f"{path} is not a dcgan generator"
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise DcganError(
            f"{what}: its inputs are {names}, expected one input 'z' of shape [batch, nz]; export one with `dcgan export`"
        )
    if len(graph.output) != 1 or graph.output[0].name != OUTPUT_NAME:
        names = ", ".join(repr(o.name) for o in graph.output) or "none"
        raise DcganError(f"{what}: its outputs are {names}, expected one output 'image' of shape [batch, C, H, W]")
    z_dims, image_dims = _dims(inputs[0]), _dims(graph.output[0])
    float32 = onnx.TensorProto.FLOAT
    if inputs[0].type.tensor_type.elem_type != float32 or graph.output[0].type.tensor_type.elem_type != float32:
        raise DcganError(f"{what}: input 'z' and output 'image' must be float32 tensors")
    if len(z_dims) != 2 or not isinstance(z_dims[1], int) or z_dims[1] < 1:
        raise DcganError(f"{what}: input 'z' has shape {z_dims}, expected [batch, nz] with a fixed nz")
    if (
        len(image_dims) != 4
        or image_dims[1] not in CHANNELS
        or image_dims[2] not in SIZES
        or image_dims[2] != image_dims[3]
    ):
        raise DcganError(
            f"{what}: output 'image' has shape {image_dims}, expected [batch, 1 or 3, S, S] with S in {SIZES}"
        )
    metadata = {p.key: p.value for p in model.metadata_props}
    info = GeneratorOnnx(
        path=path,
        nz=z_dims[1],
        channels=image_dims[1],
        size=image_dims[2],
        precision=metadata.get("precision", "fp32"),
        metadata=metadata,
    )
    if config is not None and (info.nz, info.channels, info.size) != (config.nz, config.channels, config.size):
        raise DcganError(
            f"{path} takes z of {info.nz} and draws {info.channels}x{info.size}x{info.size} images, but the run's "
            f"model has nz={config.nz}, {config.channels}x{config.size}x{config.size}; it was exported from another "
            "model: run `dcgan export --force` for this run"
        )
    return info


def check_onnx_matches_run(info: GeneratorOnnx, run_dir: Path) -> None:
    """Refuse an export made from other weights than the run's generator.safetensors."""
    generator = RunPaths(run_dir).generator
    if info.generator_sha256 and generator.is_file() and sha256_file(generator) != info.generator_sha256:
        flag = "" if info.precision == "fp32" else f" --precision {info.precision}"
        raise DcganError(
            f"{info.path} was exported from other weights than {generator} (training went on since?); "
            f"export again with `dcgan export -r {run_dir}{flag} --force`"
        )


# ---------------------------------------------------------------------------- export


@dataclass
class BuildRequest:
    """What `dcgan export --trt` asks an ahead-of-time engine to build."""

    precision: str = "fp32"
    opt_batch: int = 256
    max_batch: int = 1024
    rebuild: bool = False
    extra: dict = field(default_factory=dict)

    def validate(self) -> BuildRequest:
        check_precision_name(self.precision)
        if self.max_batch < 1 or self.opt_batch < 1:
            raise DcganError(
                f"--opt-batch and --max-batch must be at least 1, got {self.opt_batch} and {self.max_batch}"
            )
        if self.opt_batch > self.max_batch:
            raise DcganError(
                f"--opt-batch {self.opt_batch} is larger than --max-batch {self.max_batch}; use an --opt-batch from 1 to {self.max_batch}"
            )
        return self
