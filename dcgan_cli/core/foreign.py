"""DCGAN weights trained elsewhere, brought into a run folder (`dcgan import`).

Reads the most common DCGAN checkpoints there are: the PyTorch example's and tutorial's
netG/netD state dicts (`torch.save(netG.state_dict(), "netG_epoch_24.pth")`, one
`nn.Sequential` called ``main``), plain state dicts with the same layout under another
prefix (or wrapped by DataParallel: ``module.``), and the same in safetensors files, ours
included. The architecture is inferred from the tensor shapes alone:

    generator      main.0.weight  (nz, ngf*8, 4, 4)   ConvTranspose2d, then BatchNorm2d main.1
                   main.3.weight  (ngf*8, ngf*4, 4, 4) ... each layer halves the width
                   main.12.weight (ngf, nc, 4, 4)      the output layer: no BatchNorm, Tanh
    discriminator  main.0.weight  (ndf, nc, 4, 4)      Conv2d, no BatchNorm
                   main.2.weight  (ndf*2, ndf, 4, 4)   then BatchNorm2d main.3 ... doubling
                   main.11.weight (1, ndf*8, 4, 4)     the logit (the example adds a Sigmoid)

The number of convolutions gives the image size (5 each at 64x64; 4 at 32, 6 at 128).

``.pth`` files are read with ``torch.load(weights_only=True)``: tensors and plain containers
only. A pickle that would build any other object, run code included, is refused unread.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dcgan_cli import __version__
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import atomic_write_json, read_safetensors
from dcgan_cli.core.model import SIZES, DCGANConfig, Discriminator, Generator
from dcgan_cli.core.networks import check_state_dict, save_discriminator, save_generator
from dcgan_cli.core.runs import RunPaths, run_lock

BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
# Containers in a checkpoint dict that may hold a network's state dict.
CONTAINER_KEYS = ("state_dict", "model", "netG", "netD", "generator", "discriminator", "G", "D")


@dataclass
class Layer:
    """One module of the foreign network: a convolution (4-d weight) or a BatchNorm."""

    path: str  # e.g. "main.3"
    kind: str  # "conv" or "bn"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ForeignNetwork:
    kind: str  # "generator" or "discriminator"
    config: DCGANConfig  # ngf (generator) or ndf (discriminator) from this network; the rest inferred
    state: dict[str, torch.Tensor]  # in dcgan-cli's names, ready for Generator/Discriminator
    layout: str  # what the file looked like, for the report
    source: Path


# ---------------------------------------------------------------------------- reading files


def read_weights(path: Path, what: str = "a netG/netD .pth or .safetensors file") -> dict[str, object]:
    """The top-level object of a .pth/.pt file (weights_only) or the tensors of a safetensors file."""
    path = Path(path)
    if not path.exists():
        raise DcganError(f"{path} does not exist; pass {what}")
    if path.is_dir():
        raise DcganError(f"{path} is a folder; pass {what}")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(head):
        tensors, _ = read_safetensors(path, "weights file")
        return dict(tensors)
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are not for users
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _is_pickle_container(head):  # weights_only refused what the pickle would build
            raise DcganError(
                f"{path} is a pickle that holds more than tensors (objects or code), and dcgan never unpickles "
                "those: save the network's state_dict() with torch.save (or use safetensors)"
            ) from None
        raise DcganError(f"{path} is not a PyTorch weights file ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise DcganError(f"{path} is not a PyTorch weights file or is damaged ({_first_line(exc)})") from None
    if isinstance(loaded, torch.nn.Module):  # cannot happen with weights_only, kept for clarity
        loaded = loaded.state_dict()
    if not isinstance(loaded, dict):
        raise DcganError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors")
    return loaded


def _is_pickle_container(head: bytes) -> bool:
    """torch.save's zip file, or a pickle (protocol 2 and later start with 0x80)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_state_dict(path: Path, what: str = "a weights file") -> dict[str, torch.Tensor]:
    """The tensors of a state dict saved with torch.save (read with weights_only: no code runs)
    or with safetensors; ``module.`` prefixes (DataParallel) removed."""
    found = candidate_state_dicts(read_weights(path, what))
    if not found:
        raise DcganError(f"{path} holds no tensors; pass {what}")
    return {_strip(key): value for key, value in found[0][1].items()}


def _strip(key: str) -> str:
    for prefix in PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def candidate_state_dicts(loaded: dict[str, object]) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(where, state dict) of every state dict in a file: the file itself, or one it nests
    (checkpoints often hold {"netG": ..., "netD": ..., "optimizer": ...})."""
    found = []
    tensors = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if tensors:
        found.append(("", tensors))
    for key in CONTAINER_KEYS:
        value = loaded.get(key)
        if isinstance(value, dict):
            nested = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
            if nested:
                found.append((key, nested))
    return found


# ---------------------------------------------------------------------------- the architecture


# Within a block of dcgan-cli's own layout the convolution comes before its BatchNorm.
NAMED_ORDER = {"conv": 0, "bn": 1}


def _natural(path: str) -> list:
    """Sort key: numbers as numbers (main.2 before main.10), conv before bn."""
    return [(0, int(part), "") if part.isdigit() else (1, NAMED_ORDER.get(part, 2), part) for part in path.split(".")]


def layers_of(state: dict[str, torch.Tensor], source: Path) -> tuple[list[Layer], str]:
    """The network's modules in order, and the prefix their names share ("main." in the example)."""
    names = {_strip(key): value for key, value in state.items()}
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in names.items():
        path, _, param = key.rpartition(".")
        modules.setdefault(path, {})[param] = value
    layers = []
    for path in sorted(modules, key=_natural):
        tensors = modules[path]
        if "running_mean" in tensors:
            layers.append(Layer(path, "bn", tensors))
        elif set(tensors) == {"weight"} and tensors["weight"].dim() == 4:
            layers.append(Layer(path, "conv", tensors))
        elif "bias" in tensors and tensors.get("weight") is not None and tensors["weight"].dim() == 4:
            raise DcganError(
                f"{source}: the convolution {path} has a bias; DCGAN's convolutions have none (BatchNorm follows "
                "them), so this is another architecture than dcgan imports"
            )
        else:
            shapes = ", ".join(f"{path}.{k} {tuple(v.shape)}" for k, v in list(tensors.items())[:2])
            raise DcganError(
                f"{source} is not a DCGAN network: it has {shapes}, which is neither a 4x4 convolution nor a "
                "BatchNorm (dcgan imports the PyTorch example's layout: main.0.weight ... main.12.weight)"
            )
    common = _common_prefix([layer.path for layer in layers])
    return layers, common


def _common_prefix(paths: list[str]) -> str:
    parts = [p.split(".") for p in paths]
    prefix = []
    for group in zip(*parts):
        if len(set(group)) != 1:
            break
        prefix.append(group[0])
    return ".".join(prefix) + "." if prefix else ""


def _expect(condition: bool, source: Path, kind: str, detail: str) -> None:
    if not condition:
        raise DcganError(f"{source} is not a DCGAN {kind}: {detail}")


def _size_for(convs: int, source: Path, kind: str) -> int:
    size = 2 ** (convs + 1)  # 5 convolutions: 4x4 up to 64x64
    if size not in SIZES:
        raise DcganError(
            f"{source}: a DCGAN {kind} with {convs} convolutions draws {size}x{size} images; "
            f"dcgan supports {', '.join(map(str, SIZES))} (4, 5 or 6 convolutions)"
        )
    return size


def _bn(layer: Layer, width: int, source: Path, kind: str) -> dict[str, torch.Tensor]:
    tensors = dict(layer.tensors)
    tensors.setdefault("num_batches_tracked", torch.tensor(0))  # older torch saves lack it
    for name in BN_PARAMS[:4]:
        _expect(name in tensors, source, kind, f"the BatchNorm {layer.path} has no {name}")
        _expect(
            tuple(tensors[name].shape) == (width,),
            source,
            kind,
            f"{layer.path}.{name} has shape {tuple(tensors[name].shape)}, the convolution before it makes {width} maps",
        )
    return {name: tensors[name] for name in BN_PARAMS}


def _check_kernel(conv: Layer, source: Path, kind: str) -> torch.Tensor:
    weight = conv.tensors["weight"]
    _expect(
        tuple(weight.shape[2:]) == (4, 4),
        source,
        kind,
        f"{conv.path}.weight has a {tuple(weight.shape[2:])} kernel, not 4x4",
    )
    return weight


def _chain(state: dict[str, torch.Tensor], source: Path, kind: str, pattern: str, expected: str):
    """(layers, prefix, convolutions, BatchNorms, conv weights, image size) of a network whose
    sequence of convolutions (c) and BatchNorms (b) must match ``pattern``."""
    layers, prefix = layers_of(state, source)
    found = "".join("c" if layer.kind == "conv" else "b" for layer in layers)
    _expect(re.fullmatch(pattern, found) is not None, source, kind, expected)
    convs = [layer for layer in layers if layer.kind == "conv"]
    bns = [layer for layer in layers if layer.kind == "bn"]
    size = _size_for(len(convs), source, kind)
    return layers, prefix, convs, bns, [_check_kernel(conv, source, kind) for conv in convs], size


def as_generator(state: dict[str, torch.Tensor], source: Path, prior: str = "normal") -> ForeignNetwork:
    """A foreign generator's config and weights under dcgan-cli's names (see the module docstring)."""
    kind = "generator"
    layers, prefix, convs, bns, weights, size = _chain(
        state,
        source,
        kind,
        r"(cb)+c",
        "expected transposed convolutions each followed by a BatchNorm, and a last one without "
        "(the PyTorch example's main.0 ... main.12)",
    )
    nz, channels, ngf = weights[0].shape[0], weights[-1].shape[1], weights[-1].shape[0]
    _expect(channels in (1, 3), source, kind, f"its last layer draws {channels} channels; images have 1 or 3")
    state_out: dict[str, torch.Tensor] = {}
    for i, (weight, bn) in enumerate(zip(weights[:-1], bns)):
        width = ngf * 2 ** (len(weights) - 2 - i)
        _expect(
            tuple(weight.shape[1:2]) == (width,) and (i == 0 or weight.shape[0] == 2 * width),
            source,
            kind,
            f"{convs[i].path}.weight has shape {tuple(weight.shape)}; with ngf {ngf} the layer makes {width} "
            "maps (each layer halves the width)",
        )
        state_out[f"blocks.{i}.conv.weight"] = weight
        for name, value in _bn(bn, width, source, kind).items():
            state_out[f"blocks.{i}.bn.{name}"] = value
    _expect(
        weights[-1].shape[0] == ngf and (len(weights) < 2 or weights[-2].shape[1] == ngf),
        source,
        kind,
        "the output layer does not take the last hidden layer's maps",
    )
    state_out["to_image.conv.weight"] = weights[-1]
    config = _config(source, size=size, channels=channels, nz=nz, ngf=ngf, ndf=ngf, prior=prior)
    net = Generator(config)
    check_state_dict(net, state_out, str(source))
    return ForeignNetwork(kind, config, state_out, _layout(prefix, layers), source)


def as_discriminator(state: dict[str, torch.Tensor], source: Path) -> ForeignNetwork:
    """A foreign discriminator's config and weights under dcgan-cli's names."""
    kind = "discriminator"
    layers, prefix, convs, bns, weights, size = _chain(
        state,
        source,
        kind,
        r"c(cb)+c",
        "expected a convolution, convolutions each followed by a BatchNorm, and a last one to one logit",
    )
    ndf, channels = weights[0].shape[0], weights[0].shape[1]
    _expect(channels in (1, 3), source, kind, f"its first layer reads {channels} channels; images have 1 or 3")
    _expect(
        tuple(weights[-1].shape[:1]) == (1,),
        source,
        kind,
        f"its last layer makes {weights[-1].shape[0]} maps, not one logit",
    )
    state_out = {"blocks.0.conv.weight": weights[0]}
    for i in range(1, len(weights) - 1):
        width = ndf * 2**i
        _expect(
            tuple(weights[i].shape[:2]) == (width, width // 2),
            source,
            kind,
            f"{convs[i].path}.weight has shape {tuple(weights[i].shape)}; with ndf {ndf} the layer makes {width} "
            "maps (each layer doubles the width)",
        )
        state_out[f"blocks.{i}.conv.weight"] = weights[i]
        for name, value in _bn(bns[i - 1], width, source, kind).items():
            state_out[f"blocks.{i}.bn.{name}"] = value
    state_out["to_logit.weight"] = weights[-1]
    config = _config(source, size=size, channels=channels, nz=100, ngf=ndf, ndf=ndf, prior="normal")
    net = Discriminator(config)
    check_state_dict(net, state_out, str(source))
    return ForeignNetwork(kind, config, state_out, _layout(prefix, layers), source)


def _config(source: Path, **values) -> DCGANConfig:
    values = {k: int(v) if k != "prior" else v for k, v in values.items()}
    return DCGANConfig(**values).validate(str(source))


def _layout(prefix: str, layers: list[Layer]) -> str:
    if prefix == "blocks." or layers[0].path.startswith("blocks."):
        return "dcgan-cli's layout"
    where = prefix.rstrip(".") or "top level"
    return f"one nn.Sequential ({where}: {layers[0].path} ... {layers[-1].path}), as the PyTorch DCGAN example"


def _parse(kind: str, state: dict[str, torch.Tensor], path: Path, prior: str) -> ForeignNetwork:
    return as_generator(state, path, prior) if kind == "generator" else as_discriminator(state, path)


def read_network(path: Path, kind: str, prior: str = "normal") -> ForeignNetwork:
    """The generator (or discriminator) in ``path``; a file that holds the other one says so."""
    path = Path(path)
    candidates = candidate_state_dicts(read_weights(path))
    if not candidates:
        raise DcganError(f"{path} holds no tensors; pass a netG/netD state dict saved with torch.save")
    errors = []
    for _, state in candidates:
        try:
            return _parse(kind, state, path, prior)
        except DcganError as exc:
            errors.append(exc)
    other = "discriminator" if kind == "generator" else "generator"
    for where, state in candidates:  # netD given as netG (or the other way round): say so
        try:
            _parse(other, state, path, prior)
        except DcganError:
            continue
        how = "--netd FILE" if kind == "generator" else "NETG, the first argument"
        inside = f" (under {where!r})" if where else ""
        raise DcganError(f"{path}{inside} holds a DCGAN {other}, not a {kind}; pass it as {how}")
    raise errors[0]


# ---------------------------------------------------------------------------- the run folder


@dataclass
class ImportResult:
    run: Path
    config: DCGANConfig
    generator: ForeignNetwork
    discriminator: ForeignNetwork | None


def import_run(
    netg: Path,
    out: Path,
    netd: Path | None = None,
    *,
    prior: str = "normal",
    dataset: str | None = None,
    force: bool = False,
) -> ImportResult:
    """Write a run folder holding the foreign generator (and discriminator), usable like any run.

    Everything is read and checked before the folder is touched: a refused file writes nothing.
    """
    generator = read_network(netg, "generator", prior)
    discriminator = read_network(netd, "discriminator") if netd is not None else None
    config = generator.config
    if discriminator is not None:
        d = discriminator.config
        if (d.size, d.channels) != (config.size, config.channels):
            raise DcganError(
                f"{netd} is a discriminator for {d.size}x{d.size}x{d.channels} images, but {netg} draws "
                f"{config.size}x{config.size}x{config.channels}; pass the pair trained together"
            )
        config = DCGANConfig(config.size, config.channels, config.nz, config.ngf, d.ndf, config.prior).validate()
    paths = RunPaths(out)
    if paths.root.exists() and not paths.root.is_dir():
        raise DcganError(f"--out {out} is a file; choose a folder for the new run")
    if paths.root.is_dir() and any(p.name != ".lock" for p in paths.root.iterdir()) and not force:
        raise DcganError(f"{out} already exists; pass --force to replace it or choose another --out")
    record = {
        "generator": str(Path(netg).resolve()),
        "discriminator": str(Path(netd).resolve()) if netd is not None else None,
        "layout": generator.layout,
        "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    paths.root.mkdir(parents=True, exist_ok=True)
    with run_lock(paths.root, "import"):
        if force:
            import shutil

            for child in paths.root.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        meta = {"imported_from": record}
        save_generator(paths.root, generator.state, config, meta)
        if discriminator is not None:
            save_discriminator(paths.root, discriminator.state, config, meta)
        atomic_write_json(
            paths.config,
            {
                "format": "dcgan-cli/run",
                "format_version": 1,
                "run_id": paths.root.name,
                "created": record["imported"],
                "model": config.to_dict(),
                "dataset": {"name": dataset} if dataset else {},
                "import": record,
                "versions": {"dcgan-cli": __version__, "torch": torch.__version__},
            },
        )
    return ImportResult(paths.root, config, generator, discriminator)


def describe(network: ForeignNetwork, config: DCGANConfig) -> str:
    """One line: what was found in a file."""
    c = config
    width = f"ngf {c.ngf}" if network.kind == "generator" else f"ndf {c.ndf}"
    extra = f"nz {c.nz}, " if network.kind == "generator" else ""
    params = sum(
        t.numel()
        for k, t in network.state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    return (
        f"{network.source.name}: {network.kind}, {c.size}x{c.size}x{c.channels}, {extra}{width} "
        f"({params:,} parameters; {network.layout})"
    )


def summary(result: ImportResult) -> dict:
    """The import as JSON (what `dcgan import --json` prints)."""
    return {
        "run": str(result.run),
        "model": result.config.to_dict(),
        "generator": describe(result.generator, result.config),
        "discriminator": describe(result.discriminator, result.config) if result.discriminator else None,
    }
