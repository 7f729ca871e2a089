"""Files that survive crashes and refuse what is not ours: atomic writes, JSON, hashing, safetensors.

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
from pathlib import Path
from typing import TYPE_CHECKING

from dcgan_cli.core.errors import DcganError

if TYPE_CHECKING:
    import torch

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


@contextlib.contextmanager
def exclusive_lock(path: Path, holder: str, busy: str) -> Iterator[None]:
    """Hold ``path`` locked (flock) for one writer; the OS drops the lock when its holder dies.

    ``holder`` is written into the file for the next one to read; a held lock is one
    DcganError: "``busy`` HOLDER; wait for it to finish ...".
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            raise DcganError(
                f"{busy} {f.read().strip() or 'another process'}; wait for it to finish "
                "(the lock goes away when it exits)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{holder} (pid {os.getpid()})")
        f.flush()
        yield
    finally:
        f.close()


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
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
        raise DcganError(
            f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:  # thousands of nested brackets
        raise DcganError(
            f"{what} {path} is not a file dcgan-cli wrote: its JSON is nested too deeply to read"
        ) from None
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
    from safetensors import (  # imports torch: only when weights are read
        SafetensorError,
        safe_open,
    )

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DcganError(f"{what} {path} is damaged or incomplete ({first}); use an intact copy") from None
    return tensors, metadata


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save as safetensors_save

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
