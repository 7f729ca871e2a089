"""Memory over an epoch of LSUN: dcgan-cli's lazy LMDB dataset against loading the database.

Writes an LMDB as LSUN ships it (20,000 records, SHA-1 hex keys -> WebP photos 256 pixels on
the short side, about LSUN bedroom's size), then runs one epoch of the training DataLoader
(`make_loader`: the same sampler, workers and collate function as `dcgan train`, without the
model) and samples the memory of the main process and its workers after every batch. The
references, in the same process afterwards: the same loader over items that do no I/O at
all (what the DataLoader and its workers cost by themselves), and the plain approach the
lazy reader replaces, reading every record into a list before training.

Memory is proportional set size (PSS, /proc/PID/smaps_rollup, so pages shared by the workers
count once), split into anonymous memory (what the processes really hold: the figure that
must stay flat) and file-backed pages (shared libraries, and the database pages LMDB's
memory map has touched: the kernel's page cache, shared, dropped under memory pressure).
Linux only.

    python benchmarks/lsun_memory.py                        # 20,000 images, 2 workers
    python benchmarks/lsun_memory.py --images 5000 --workers 0 --json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MB = 1024 * 1024
DISTINCT = 256  # encoded photos, each stored under many keys (the memory behaviour is the same)


def pss(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) proportional set size of ``pid`` in bytes."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Pss_Anon", "Pss_File", "Pss_Shmem"):
                fields[key] = int(rest.split()[0]) * 1024
    return fields.get("Pss_Anon", 0), fields.get("Pss_File", 0) + fields.get("Pss_Shmem", 0)


def family() -> list[int]:
    """This process and its children (the DataLoader workers)."""
    pids = [os.getpid()]
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return pids


def memory() -> tuple[int, int]:
    anon = file = 0
    for pid in family():
        try:
            a, f = pss(pid)
        except OSError:  # a worker that just exited
            continue
        anon, file = anon + a, file + f
    return anon, file


def write_database(path: Path, images: int, side: int) -> int:
    """An LSUN-style LMDB; returns the size of data.mdb in bytes."""
    import lmdb
    from PIL import Image

    rng = np.random.default_rng(0)
    pool = []
    for _ in range(DISTINCT):
        # A smooth random scene (upsampled noise) at LSUN's size: 256 on the short side, 4:3.
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((side * 4 // 3, side), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "WEBP", quality=75)
        pool.append(buf.getvalue())
    size = sum(len(pool[i % DISTINCT]) for i in range(images))
    env = lmdb.open(str(path), map_size=2 * size + 256 * MB)  # room for page overhead
    with env.begin(write=True) as txn:
        for i in range(images):
            txn.put(hashlib.sha1(f"{i}".encode()).hexdigest().encode(), pool[i % DISTINCT])
    env.close()
    return (path / "data.mdb").stat().st_size


class Blank(torch.utils.data.Dataset):
    """The reference for the loader itself: as many items as the database, no I/O at all."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(3, self.size, self.size)


def epoch(dataset, batch_size: int, workers: int, warm_batches: int) -> dict:
    """One epoch of dcgan-cli's training loader (sampler, workers, collate) over ``dataset``,
    memory sampled after each batch."""
    from dcgan_cli.data.batches import EpochBatchSampler, make_loader

    loader = make_loader(dataset, EpochBatchSampler(len(dataset), batch_size, seed=0, epoch=0), workers)
    samples, main, images, skipped = [], [], 0, 0
    started = time.perf_counter()
    for batch in loader:
        images += batch.images.shape[0]
        skipped += batch.skipped
        samples.append(memory())
        main.append(pss(os.getpid())[0])
    seconds = time.perf_counter() - started
    del loader
    anon = [a for a, _ in samples]
    file = [f for _, f in samples]
    warm = warm_batches - 1
    return {
        "images": images,
        "skipped": skipped,
        "batches": len(samples),
        "images_per_s": images / seconds,
        "anon_warm_mb": anon[warm] / MB,
        "anon_peak_mb": max(anon[warm:]) / MB,
        "anon_end_mb": anon[-1] / MB,
        "anon_growth_mb": (max(anon[warm:]) - anon[warm]) / MB,
        "main_process_growth_mb": (max(main[warm:]) - main[warm]) / MB,
        "file_warm_mb": file[warm] / MB,
        "file_peak_mb": max(file) / MB,
        "anon_per_batch_mb": [round(a / MB, 1) for a in anon],
    }


def eager_reference(path: Path) -> dict:
    """The plain way: every record read into memory first (values only, not even decoded)."""
    from dcgan_cli.data.lsun import shared_env

    anon_before = memory()[0]
    with shared_env(path).begin() as txn:
        values = [value for _, value in txn.cursor()]
    anon_after = memory()[0]
    held = sum(len(v) for v in values)
    del values
    return {"records": held, "anon_growth_mb": (anon_after - anon_before) / MB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--side", type=int, default=256, help="short side of the stored photos (LSUN: 256)")
    parser.add_argument("--size", type=int, default=64, help="training image side (the paper: 64)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warm-batches", type=int, default=5, help="baseline: memory after this many batches")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the database (default: a temp folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="lsun-memory-", dir=args.dir))
    os.environ.setdefault("DCGAN_CACHE_DIR", str(folder / "cache"))
    os.environ.setdefault("DCGAN_QUIET", "1")
    try:
        path = folder / "bedroom_train_lmdb"
        started = time.perf_counter()
        db_bytes = write_database(path, args.images, args.side)
        write_s = time.perf_counter() - started
        from dcgan_cli.data.catalog import DataOptions
        from dcgan_cli.data.loading import load_dataset

        dataset, _ = load_dataset("lsun", DataOptions(data=path, size=args.size))
        lazy = epoch(dataset, args.batch_size, args.workers, args.warm_batches)
        blank = epoch(Blank(len(dataset), args.size), args.batch_size, args.workers, args.warm_batches)
        eager = eager_reference(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    result = {
        "images": args.images,
        "database_mb": db_bytes / MB,
        "write_s": write_s,
        "workers": args.workers,
        "lazy": lazy,
        "blank": {k: v for k, v in blank.items() if k != "anon_per_batch_mb"},
        "eager": eager,
        "peak_over_warm": lazy["anon_peak_mb"] / lazy["anon_warm_mb"],
        "growth_ratio_vs_eager": lazy["anon_growth_mb"] / max(eager["anon_growth_mb"], 1e-9),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"LSUN-style LMDB: {args.images:,} WebP images, {result['database_mb']:.0f} MB (written in {write_s:.0f} s)")
    print(
        f"one epoch, {lazy['batches']} batches of {args.batch_size} at {args.size}x{args.size}, "
        f"{args.workers} workers: {lazy['images_per_s']:,.0f} img/s"
    )
    print("memory = anonymous PSS of the main process + workers")
    print(f"  after {args.warm_batches} batches     : {lazy['anon_warm_mb']:8.1f} MB")
    print(f"  peak during epoch   : {lazy['anon_peak_mb']:8.1f} MB   (growth {lazy['anon_growth_mb']:+.1f} MB)")
    print(f"  end of epoch        : {lazy['anon_end_mb']:8.1f} MB")
    print(f"  ratio peak / warm   : {result['peak_over_warm']:.3f}")
    print(f"  growth in the main process alone: {lazy['main_process_growth_mb']:+.1f} MB")
    print(
        f"  file-backed PSS (libraries, mapped database pages; reclaimable): {lazy['file_warm_mb']:.0f} MB "
        f"after {args.warm_batches} batches, {lazy['file_peak_mb']:.0f} MB at most"
    )
    print(
        f"reference 1, the same loader over items with no I/O: growth {blank['anon_growth_mb']:+.1f} MB "
        f"(peak / warm {blank['anon_peak_mb'] / blank['anon_warm_mb']:.3f})"
    )
    print(f"reference 2, reading the database into a list: {eager['anon_growth_mb']:+.1f} MB anonymous")
    print(f"  ratio lazy epoch growth / reference 2 growth: {result['growth_ratio_vs_eager']:.4f}")


if __name__ == "__main__":
    main()
