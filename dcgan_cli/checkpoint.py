"""Run folders, safetensors checkpoints, atomic writes, and loading a trained generator.

Nothing here ever unpickles: tensors live in safetensors files, everything else in JSON.
Every write goes to a temporary file in the same folder, is flushed to disk, and is renamed
into place, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from dcgan_cli.errors import DcganError
from dcgan_cli.model import DCGANConfig, Discriminator, Generator

RUNS_DIR = Path("runs")
RUN_FORMAT = "dcgan-cli/run"
CHECKPOINT_FORMAT = "dcgan-cli/checkpoint"
GENERATOR_FORMAT = "dcgan-cli/generator"
DISCRIMINATOR_FORMAT = "dcgan-cli/discriminator"
CHECKPOINT_RE = re.compile(r"^step-(\d{7,})\.safetensors$")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
# Far beyond any JSON file dcgan-cli writes (a concept bank of 10,000 exemplars is ~20 MB);
# a larger one is refused before it is read into memory.
MAX_JSON_BYTES = 256 * 1024 * 1024


# ---------------------------------------------------------------------------- atomic writes


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_failed(path: Path, exc: OSError) -> DcganError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = " Free some disk space and try again." if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
    return DcganError(f"could not write {path}: {reason}; the previous version of the file is untouched.{hint}")


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is flushed and renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name no reader mistakes for the real thing: hidden, and not ending like the target.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _write_failed(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-\d+$")


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files left in ``folder`` by writers that died (SIGKILL, power loss)."""
    removed = 0
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        m = TEMP_RE.match(p.name)
        if not m or not p.is_file():
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path | str, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> object:
    """The JSON data of ``path``, with one clear error for a missing, unreadable, oversized or invalid file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DcganError(
                f"{what} {path} is too large ({size / 2**20:,.0f} MiB; at most {max_bytes / 2**20:,.0f} MiB is read): "
                "it is not a file dcgan-cli wrote; restore the right file"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DcganError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DcganError(f"cannot read {what} {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DcganError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:  # thousands of nested brackets
        raise DcganError(f"{what} {path} is not a file dcgan-cli wrote: its JSON is nested too deeply to read") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise DcganError(f"{what} {path} is not a file dcgan-cli wrote: {str(exc).split(';')[0]}") from None


# ---------------------------------------------------------------------------- safetensors


def _refuse_non_safetensors(path: Path, head: bytes, size: int) -> None:
    """Recognise safetensors by its layout (8-byte header length, then JSON); name what else it is."""
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and header_len <= min(size - 8, MAX_HEADER_BYTES):
            return
    if head[:2] == b"PK":
        kind = "a zip archive, as torch.save writes (it would contain a pickle)"
    elif head[:1] == b"\x80":
        kind = "a Python pickle"
    elif len(head) < 9:
        raise DcganError(f"{path} is truncated or empty ({size} bytes); it is not a safetensors file")
    else:
        raise DcganError(f"{path} is not a safetensors file (or is truncated); expected weights written by dcgan-cli")
    raise DcganError(
        f"{path} is {kind}, not safetensors; dcgan-cli never loads pickles because they can run code. "
        "Convert the weights to safetensors with a tool you trust."
    )


def read_safetensors(path: Path | str, what: str = "weights file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, with one clear error for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except FileNotFoundError:
        raise DcganError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise DcganError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise DcganError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    _refuse_non_safetensors(path, head, size)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DcganError(f"{what} {path} is damaged or incomplete ({first}); use an intact copy") from None
    return tensors, metadata


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    # safetensors wants contiguous CPU tensors that share no storage.
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return safetensors_save(plain, metadata=metadata)


def write_safetensors(path: Path | str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Write atomically; returns the file's sha256."""
    data = safetensors_bytes(tensors, metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- run folders


@dataclass(frozen=True)
class RunPaths:
    """Where everything of one run lives (see DESIGN.md, "Run folder")."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.root / "latest.json"

    @property
    def generator(self) -> Path:
        return self.root / "generator.safetensors"

    @property
    def discriminator(self) -> Path:
        return self.root / "discriminator.safetensors"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def sheets(self) -> Path:
        return self.root / "sheets"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def losses(self) -> Path:
        return self.root / "losses.png"

    @property
    def quality(self) -> Path:
        """quality.jsonl: each epoch's thumbnail FD and sample diversity (dcgan_cli.quality)."""
        return self.root / "quality.jsonl"

    @property
    def best(self) -> Path:
        """best.json: the epoch with the lowest thumbnail FD and its checkpoint (kept from pruning)."""
        return self.root / "best.json"

    @property
    def best_generator(self) -> Path:
        """generator-best.safetensors: the generator of the best epoch, loadable like generator.safetensors."""
        return self.root / "generator-best.safetensors"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def concepts(self) -> Path:
        return self.root / "concepts.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


def read_run_config(root: Path | str) -> dict:
    """config.json of a run, with its model section validated."""
    paths = RunPaths(Path(root))
    try:
        data = read_json(paths.config, "run config")
    except DcganError as exc:
        if not paths.config.is_file():
            raise
        raise DcganError(f"{exc}; `dcgan train` wrote it: restore it from a backup or a copy of the run") from None
    if not isinstance(data, dict) or "model" not in data:
        raise DcganError(f"{paths.config} is not a dcgan-cli run config (no 'model' section)")
    DCGANConfig.from_dict(data["model"], source=str(paths.config))
    return data


def _run_mtime(root: Path) -> float:
    for name in ("latest.json", "generator.safetensors", "config.json"):
        with contextlib.suppress(OSError):
            return (root / name).stat().st_mtime
    return 0.0


def newest_run(base: Path = RUNS_DIR) -> Path | None:
    if not base.is_dir():
        return None
    runs = [p for p in base.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return max(runs, key=_run_mtime) if runs else None


def resolve_run(run: Path | str | None, base: Path = RUNS_DIR) -> Path:
    """The run folder named by ``--run``, or the newest one under ./runs."""
    if run is None:
        found = newest_run(base)
        if found is None:
            raise DcganError(f"no run found under ./{base}; train one with `dcgan train`, or pass --run/-r PATH")
        return found
    path = Path(run)
    if not path.exists():
        hint = ""
        if not path.is_absolute() and (base / path).is_dir():
            hint = f"; did you mean {base / path}?"
        raise DcganError(f"run folder {path} does not exist{hint}")
    if path.is_file() and path.suffix == ".safetensors":
        path = path.parent
    if not path.is_dir():
        raise DcganError(f"{path} is not a run folder; pass the folder that `dcgan train` wrote")
    if not (path / "config.json").is_file():
        raise DcganError(
            f"{path} is not a run folder: it has no config.json; pass a folder written by `dcgan train` "
            "or one holding generator.safetensors and config.json"
        )
    return path


def new_run_dir(dataset: str, base: Path = RUNS_DIR) -> Path:
    """A fresh, unused run folder name such as runs/digits-20261128-181500."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base / f"{dataset}-{stamp}"
    n = 2
    while candidate.exists():
        candidate = base / f"{dataset}-{stamp}-{n}"
        n += 1
    return candidate


def next_numbered(folder: Path, stem: str, suffixes: tuple[str, ...] = (".png", ".json")) -> Path:
    """folder/stem-NNN (no suffix) for the first NNN where no stem-NNN<suffix> exists yet."""
    n = 1
    while any((folder / f"{stem}-{n:03d}{suffix}").exists() for suffix in suffixes):
        n += 1
    return folder / f"{stem}-{n:03d}"


@contextlib.contextmanager
def run_lock(root: Path, purpose: str) -> Iterator[None]:
    """Hold the run folder for one writer. The OS drops the lock when its holder dies."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    lock_path = RunPaths(root).lock
    f = open(lock_path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise DcganError(
                f"run {root} is in use by {holder}; wait for it to finish (the lock goes away when it exits)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"dcgan {purpose} (pid {os.getpid()})")
        f.flush()
        yield
    finally:
        f.close()


# ---------------------------------------------------------------------------- checkpoints


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.safetensors"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file, newest first. Temporary files never match."""
    folder = RunPaths(root).checkpoints
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def save_checkpoint(
    root: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict, keep_last: int = 3, keep: set[int] = frozenset()
) -> Path:
    """Write checkpoints/step-N.safetensors, then point latest.json at it, then prune old ones."""
    paths = RunPaths(root)
    path = paths.checkpoints / checkpoint_name(step)
    digest = write_safetensors(path, tensors, {"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta)})
    atomic_write_json(
        paths.latest,
        {"checkpoint": f"checkpoints/{path.name}", "step": step, "sha256": digest, "written": time.time()},
    )
    if keep_last > 0:
        for old_step, old_path in list_checkpoints(root)[keep_last:]:
            if old_step not in keep:
                with contextlib.suppress(OSError):
                    old_path.unlink()
    return path


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, metadata = read_safetensors(path, "checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise DcganError(f"{path} is not a dcgan-cli training checkpoint (format {metadata.get('format')!r})")
    try:
        meta = json.loads(metadata["meta"])
    except (KeyError, json.JSONDecodeError):
        raise DcganError(f"checkpoint {path} has no readable metadata; use an intact copy") from None
    return tensors, meta


def latest_checkpoint(root: Path) -> tuple[Path, dict[str, torch.Tensor], dict] | None:
    """The newest checkpoint that reads back whole, or None when the run has none.

    latest.json names it in the normal case; after a crash between writing a checkpoint and
    updating latest.json, the newer complete file wins. Damaged files are passed over.
    """
    problems = []
    for _, path in list_checkpoints(root):
        try:
            tensors, meta = load_checkpoint(path)
        except DcganError as exc:
            problems.append(str(exc))
            continue
        return path, tensors, meta
    if problems:
        raise DcganError(f"no intact checkpoint in {RunPaths(root).checkpoints}: {problems[0]}")
    return None


# ---------------------------------------------------------------------------- generator


def save_generator(root: Path, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    """generator.safetensors: the generator alone, carrying its model arguments."""
    _save_network(RunPaths(root).generator, GENERATOR_FORMAT, state, config, meta)


def save_best_generator(root: Path, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    """generator-best.safetensors: the generator of the run's best epoch (see dcgan_cli.quality)."""
    _save_network(RunPaths(root).best_generator, GENERATOR_FORMAT, state, config, meta)


def save_discriminator(root: Path, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    """discriminator.safetensors: the discriminator alone, for feature extraction."""
    _save_network(RunPaths(root).discriminator, DISCRIMINATOR_FORMAT, state, config, meta)


def _save_network(path: Path, fmt: str, state: dict[str, torch.Tensor], config: DCGANConfig, meta: dict) -> None:
    write_safetensors(path, state, {"format": fmt, "model": json.dumps(config.to_dict()), "meta": json.dumps(meta)})


def _network_files(path: Path, filename: str) -> tuple[Path, Path | None]:
    if path.is_dir():
        weights = path / filename
        if not weights.exists():
            if (path / "config.json").exists():
                raise DcganError(
                    f"run {path} has no {filename} yet: training has not written a checkpoint; "
                    "train longer or resume it with `dcgan train --resume`"
                )
            raise DcganError(f"{path} holds no {filename}; pass a run folder written by `dcgan train`")
        config = path / "config.json"
    else:
        weights = path
        config = path.parent / "config.json"
    return weights, (config if config.is_file() else None)


def _load_network(path: Path | str, filename: str, cls: type, device) -> torch.nn.Module:
    path = Path(path)
    if not path.exists():
        raise DcganError(f"{path} does not exist; pass a run folder or a {filename} file")
    weights, config_path = _network_files(path, filename)
    tensors, metadata = read_safetensors(weights, f"{cls.__name__.lower()} weights")
    if config_path is not None:
        config = DCGANConfig.from_dict(read_run_config(config_path.parent)["model"], source=str(config_path))
    elif "model" in metadata:
        try:
            model = json.loads(metadata["model"])
        except json.JSONDecodeError:
            raise DcganError(f"{weights} has unreadable model arguments in its metadata") from None
        config = DCGANConfig.from_dict(model, source=f"{weights} metadata")
    else:
        raise DcganError(f"{weights} carries no model arguments and no config.json lies beside it")
    net = cls(config)
    check_state_dict(net, tensors, str(weights))
    net.load_state_dict(tensors)
    return net.to(device).eval()


def load_generator(path: Path | str, device: str | torch.device = "cpu") -> Generator:
    """A trained generator in eval mode, from a run folder or a generator.safetensors file."""
    return _load_network(path, "generator.safetensors", Generator, device)


def load_discriminator(path: Path | str, device: str | torch.device = "cpu") -> Discriminator:
    """A trained discriminator in eval mode, from a run folder or a discriminator.safetensors file."""
    return _load_network(path, "discriminator.safetensors", Discriminator, device)


def check_state_dict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights whose names, shapes or dtypes do not fit ``module``, in one line."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        raise DcganError(
            f"{source} does not match the model in config.json: tensors {', '.join(parts)}; "
            "is the config from another run?"
        )
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise DcganError(
                f"{source} does not match the model in config.json: {key} has shape {tuple(got.shape)}, "
                f"the config implies {tuple(want.shape)}; is the config from another run?"
            )
        # Another float precision (fp16, bf16, fp64) is the same weights: load_state_dict casts it.
        # Anything else (int8 for float, float for a step counter) is not these weights.
        if got.dtype != want.dtype and not (got.is_floating_point() and want.is_floating_point()):
            raise DcganError(
                f"{source}: {key} has dtype {got.dtype}, expected {want.dtype}; the file does not hold this model's weights"
            )
        # Checked in the model's dtype: a finite float64 of 1e300 is infinite once cast to float32.
        if got.is_floating_point() and not torch.isfinite(got.to(want.dtype)).all():
            raise DcganError(f"{source}: {key} holds NaN or infinite values (in {want.dtype}); the weights are unusable")
