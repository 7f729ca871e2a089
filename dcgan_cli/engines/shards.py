"""Many samples to a folder of PNGs, WebDataset tar shards or one .npz: in resumable shards, over processes.

Images 0..N-1 are cut into shards of ``shard_size`` consecutive indices; a shard is the unit of
work and of resumption. Inside a shard, batches start at fixed indices (the shard's first index
plus multiples of ``batch_size``), so image i comes from the same z in the same batch whatever
the number of processes and whether the job was resumed: the same engine writes the same file.

The job's record, ``DIR/.dcgan-sample.json`` (or ``FILE.npz.parts/.dcgan-sample.json``), holds
the plan (run weights, seed, N, shard and batch size, engine, precision, device kind) and the
shards done. Running the same command again continues where the last one stopped; a job with
other settings is refused unless ``force`` starts over. An .npz is assembled from its parts once
every shard is done.

With ``nproc`` > 1 the shards go to plain processes (spawned; torchrun's rendezvous buys nothing
for independent shards), each pinned to its share of the CPUs (its threads = its CPUs) or to one
GPU, round robin. They take shards from a shared queue, die with the parent (PR_SET_PDEATHSIG),
and the parent holds the folder's lock, so two jobs never write the same folder at once.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import queue
import shutil
import signal
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import atomic_output, atomic_write_json, exclusive_lock, read_json
from dcgan_cli.core.images import to_uint8
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.base import Engine
from dcgan_cli.engines.sampling import npy_stream

RECORD_FORMAT = "dcgan-cli/sample-shards"
RECORD_NAME = ".dcgan-sample.json"
LOCK_NAME = ".dcgan-sample.lock"
DEFAULT_SHARD_SIZE = 1024
KINDS = ("png", "tar", "npz")


@dataclass(frozen=True)
class ShardPlan:
    """What decides every output byte: the same plan writes the same files."""

    kind: str  # png (one file per image), tar (WebDataset shards) or npz
    n: int
    seed: int
    shard_size: int
    batch_size: int
    engine: str
    precision: str
    device: str  # cpu or cuda: images computed on another kind of device differ in rounding
    run_id: str
    generator_sha256: str
    nz: int
    prior: str
    size: int
    channels: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown shard kind {self.kind!r}")
        if self.shard_size < 1:
            raise DcganError(f"--shard-size must be at least 1, got {self.shard_size}")

    @property
    def shards(self) -> int:
        return math.ceil(self.n / self.shard_size)

    @property
    def width(self) -> int:
        """Digits of an image's index in file and key names."""
        return max(6, len(str(self.n - 1)))

    def indices(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n))

    def batches(self, shard: int) -> Iterator[range]:
        span = self.indices(shard)
        for start in range(span.start, span.stop, self.batch_size):
            yield range(start, min(start + self.batch_size, span.stop))

    def differences(self, other: ShardPlan) -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{k} {theirs[k]} (now {mine[k]})" for k in mine if mine[k] != theirs[k]]


class ShardJob:
    """A plan and its output: which shards are done, where each goes, the record that survives a kill."""

    def __init__(self, plan: ShardPlan, target: Path):
        self.plan, self.target = plan, Path(target)
        self.folder = self.target if plan.kind != "npz" else self.target.with_name(self.target.name + ".parts")
        self.record = self.folder / RECORD_NAME
        self.done: set[int] = set()

    def previous_plan(self) -> ShardPlan | None:
        """The plan of a job that wrote here before, or None."""
        if not self.record.is_file():
            return None
        data = read_json(self.record, "sampling record")
        try:
            if data["format"] != RECORD_FORMAT:
                raise KeyError
            return ShardPlan(**data["plan"])
        except (KeyError, TypeError, ValueError):
            raise DcganError(
                f"{self.record} is not a record dcgan sample wrote; remove it, or pass --force to start over"
            ) from None

    def open(self, force: bool) -> str:
        """Take up the folder: 'resumed', 'started' (or one clear error). Call under ``lock()``."""
        previous = self.previous_plan()
        if previous is not None and not force:
            changed = self.plan.differences(previous)
            if changed:
                raise DcganError(
                    f"{self.folder} holds samples of other settings ({'; '.join(changed)}); "
                    "run the command as it was to continue, or pass --force to start over"
                )
            done = read_json(self.record, "sampling record").get("done", [])
            self.done = {k for k in done if isinstance(k, int) and 0 <= k < self.plan.shards}
            return "resumed"
        if previous is None and not force and self.plan.kind != "npz" and self._has_files():
            raise DcganError(f"{self.folder} is not empty; pass --force to write into it or choose another folder")
        if force:  # parts and tar shards of the earlier job: none may pass for this one's
            for old in self.folder.glob("shard-*.*"):
                old.unlink(missing_ok=True)
        self.done = set()
        self.save()
        return "started"

    def _has_files(self) -> bool:
        return self.folder.is_dir() and any(p.name != LOCK_NAME for p in self.folder.iterdir())

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.folder / LOCK_NAME, "dcgan sample", f"{self.folder} is being written by"):
            yield

    def save(self) -> None:
        complete = len(self.done) == self.plan.shards
        atomic_write_json(
            self.record,
            {"format": RECORD_FORMAT, "plan": asdict(self.plan), "done": sorted(self.done), "complete": complete},
        )

    def pending(self) -> list[int]:
        return [k for k in range(self.plan.shards) if k not in self.done]

    def images_done(self) -> int:
        return sum(len(self.plan.indices(k)) for k in self.done)

    def mark_done(self, shard: int) -> None:
        self.done.add(shard)
        self.save()

    def shard_file(self, shard: int) -> Path:
        suffix = ".tar" if self.plan.kind == "tar" else ".npy"
        return self.folder / f"shard-{shard:06d}{suffix}"

    def png_path(self, index: int) -> Path:
        return self.folder / f"{index:0{self.plan.width}d}.png"


# ---------------------------------------------------------------------------- one shard


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def _batches(engine: Engine, plan: ShardPlan, shard: int) -> Iterator[tuple[range, np.ndarray]]:
    for span in plan.batches(shard):
        z = seeded_z(plan.seed, len(span), plan.nz, plan.prior, start=span.start)
        yield span, to_uint8(engine.generate(z))


def write_shard(engine: Engine, job: ShardJob, shard: int, advance: Callable[[int], None] = lambda n: None) -> None:
    """Draw shard ``shard`` and write it: its PNGs, its tar file or its .npy part (the last two atomically)."""
    plan = job.plan
    if plan.kind == "png":
        for span, arrays in _batches(engine, plan, shard):
            for index, array in zip(span, arrays, strict=True):
                job.png_path(index).write_bytes(_png_bytes(array))  # a shard cut short is drawn again
            advance(len(span))
        return
    with atomic_output(job.shard_file(shard)) as tmp:
        if plan.kind == "tar":
            # WebDataset layout: members KEY.png, KEY.json, grouped by key; fixed mtime: same plan, same bytes.
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for span, arrays in _batches(engine, plan, shard):
                    for index, array in zip(span, arrays, strict=True):
                        key = f"{index:0{plan.width}d}"
                        meta = f'{{"index": {index}, "seed": {plan.seed}}}'.encode()
                        for name, data in ((f"{key}.png", _png_bytes(array)), (f"{key}.json", meta)):
                            info = tarfile.TarInfo(name)
                            info.size, info.mode, info.mtime = len(data), 0o644, 0
                            tar.addfile(info, io.BytesIO(data))
                    advance(len(span))
        else:
            parts = []
            for span, arrays in _batches(engine, plan, shard):
                parts.append(arrays)
                advance(len(span))
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(parts), allow_pickle=False)


def assemble_npz(job: ShardJob, with_z: bool, engine_name: str) -> None:
    """FILE.npz from the parts of a finished job (images (N, H, W, C) uint8, z when asked), then the parts go."""
    import json

    plan = job.plan
    with atomic_output(job.target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            shape = (plan.n, plan.size, plan.size, plan.channels)
            with npy_stream(zf, "images.npy", np.uint8, shape) as out:
                for shard in range(plan.shards):
                    part = np.load(job.shard_file(shard), mmap_mode="r", allow_pickle=False)
                    if part.shape != (len(plan.indices(shard)), *shape[1:]) or part.dtype != np.uint8:
                        raise DcganError(
                            f"{job.shard_file(shard)} is not the part this job wrote; pass --force to start over"
                        )
                    for i in range(0, len(part), 4096):
                        out.write(np.ascontiguousarray(part[i : i + 4096]).tobytes())
            if with_z:  # z is cheap to draw again from the seed; zipfile writes one member at a time
                with npy_stream(zf, "z.npy", np.float32, (plan.n, plan.nz)) as out:
                    for start in range(0, plan.n, 65536):
                        z = seeded_z(plan.seed, min(65536, plan.n - start), plan.nz, plan.prior, start=start)
                        out.write(z.numpy().astype(np.float32).tobytes())
            meta = io.BytesIO()  # a unicode array: readable with np.load's default allow_pickle=False
            record = {"seed": plan.seed, "n": plan.n, "prior": plan.prior, "engine": engine_name}
            np.save(meta, np.array(json.dumps(record)))
            zf.writestr("meta.npy", meta.getvalue())
    shutil.rmtree(job.folder, ignore_errors=True)


# ---------------------------------------------------------------------------- processes


def placements(nproc: int, device: str) -> list[tuple[str, list[int] | None]]:
    """(device, CPUs to pin or None) of each worker: its share of this process's CPUs, or one GPU each."""
    from dcgan_cli.core.devices import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is not None:
            return [(str(dev), None)] * nproc
        return [(f"cuda:{rank % torch.cuda.device_count()}", None) for rank in range(nproc)]
    cpus = sorted(os.sched_getaffinity(0))
    if nproc > len(cpus):
        raise DcganError(f"--nproc {nproc} is more than the {len(cpus)} CPUs this process may use; use at most that")
    bounds = [round(r * len(cpus) / nproc) for r in range(nproc + 1)]
    return [("cpu", cpus[bounds[r] : bounds[r + 1]]) for r in range(nproc)]


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(Exception):  # Linux only; elsewhere the per-shard check below remains
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker(run_dir: str, plan: dict, target: str, device: str, cpus, tasks, results, parent: int) -> None:
    """One worker process: pin, open the engine, write shards from ``tasks`` until none are left."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
            torch.set_num_threads(len(cpus))
        from dcgan_cli.engines.base import engine_class

        job = ShardJob(ShardPlan(**plan), Path(target))
        with engine_class(job.plan.engine)(run_dir, device=device, precision=job.plan.precision) as engine:
            while True:
                try:
                    shard = tasks.get_nowait()
                except queue.Empty:
                    break
                write_shard(engine, job, shard, lambda n: results.put(("images", n)))
                results.put(("done", shard))
    except DcganError as exc:
        results.put(("error", str(exc)))
    except Exception as exc:  # the parent reports it in one line
        results.put(("error", f"a sampling process failed: {type(exc).__name__}: {exc}"))


def run_job(
    job: ShardJob,
    run_dir: Path,
    *,
    nproc: int = 1,
    device: str = "auto",
    advance: Callable[[int], None] = lambda n: None,
) -> None:
    """Write every pending shard: in this process (``nproc`` 1) or in ``nproc`` pinned worker processes.

    Shards are marked done in the record as they finish, so a killed job loses at most the
    shards in flight.
    """
    from dcgan_cli.engines.base import engine_class

    pending = job.pending()
    where = placements(nproc, device) if nproc > 1 else []  # refuses more processes than CPUs
    if nproc <= 1 or len(pending) <= 1:
        if pending:
            with engine_class(job.plan.engine)(run_dir, device=device, precision=job.plan.precision) as engine:
                for shard in pending:
                    write_shard(engine, job, shard, advance)
                    job.mark_done(shard)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and CUDA state
    tasks, results = context.Queue(), context.Queue()
    for shard in pending:
        tasks.put(shard)
    workers = [
        context.Process(
            target=_worker,
            args=(str(run_dir), asdict(job.plan), str(job.target), device, cpus, tasks, results, os.getpid()),
            daemon=True,
            name=f"dcgan-sample-{rank}",
        )
        for rank, (device, cpus) in enumerate(where[: len(pending)])
    ]
    try:
        for worker in workers:
            worker.start()
        left = set(pending)
        while left:
            try:
                kind, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [w for w in workers if w.exitcode not in (None, 0)]
                if dead or all(w.exitcode is not None for w in workers):
                    codes = ", ".join(str(w.exitcode) for w in dead) or "0"
                    raise DcganError(
                        f"a sampling process ended before its shards were written (exit code {codes}); "
                        "run the same command again to continue"
                    ) from None
                continue
            if kind == "images":
                advance(value)
            elif kind == "done":
                left.discard(value)
                job.mark_done(value)
            else:
                raise DcganError(value)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join()


def make_plan(
    run_dir: Path,
    kind: str,
    *,
    n: int,
    seed: int,
    shard_size: int,
    batch_size: int,
    engine: str,
    precision: str,
    device: str,
) -> ShardPlan:
    """The plan of sampling ``n`` images of ``run_dir``'s current generator."""
    from dcgan_cli.core.devices import resolve_device
    from dcgan_cli.core.files import sha256_file
    from dcgan_cli.core.runs import RunPaths, read_run_config

    config = read_run_config(run_dir)
    model = config["model"]
    generator = RunPaths(run_dir).generator
    return ShardPlan(
        kind=kind,
        n=n,
        seed=seed,
        shard_size=shard_size,
        batch_size=batch_size,
        engine=engine,
        precision=precision,
        device=resolve_device(device).type,
        run_id=str(config.get("run_id", run_dir.name)),
        generator_sha256=sha256_file(generator) if generator.is_file() else "",
        nz=int(model["nz"]),
        prior=str(model["prior"]),
        size=int(model["size"]),
        channels=int(model["channels"]),
    )
