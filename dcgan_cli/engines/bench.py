"""`dcgan bench`: every engine that can run here, images/s and latency per batch size."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import atomic_write_json, sha256_file
from dcgan_cli.core.runs import RunPaths, read_run_config
from dcgan_cli.engines.base import Engine, get_engines
from dcgan_cli.engines.selection import (
    bench_path,
    device_key,
    machine_fingerprint,
    select_engine,
)

BENCH_BATCH_SIZES = (1, 16, 64, 256)
BENCH_FORMAT = "dcgan-cli/bench"


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
    from dcgan_cli.core.prior import seeded_z

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


def bench_cases(engines: dict, names: list[str], precision: str | None) -> list[tuple[str, str]]:
    """(engine, precision) pairs to time: each engine's precisions, or ``precision`` alone."""
    return [
        (name, case)
        for name in names
        if name in engines
        for case in engines[name].PRECISIONS
        if precision is None or case == precision
    ] or [(name, precision) for name in names]


def run_bench(
    run_dir: Path,
    engine_names: list[str] | None = None,
    batch_sizes: tuple[int, ...] = BENCH_BATCH_SIZES,
    *,
    precision: str | None = None,
    device: str = "auto",
    min_time: float = 1.0,
    advance=None,
) -> dict:
    """Every ready engine at every precision (or ``precision`` alone) and batch size; returns (and
    writes to exports/bench.json) the table. A precision an engine runs but the run lacks (no
    int8 export yet) is skipped with the reason."""
    engines = get_engines()
    names = engine_names or sorted(engines, key=lambda n: engines[n].AUTO_PRIORITY)
    rows, skipped = [], []
    for name, case in bench_cases(engines, names, precision):
        try:
            select_engine(name, run_dir, precision=case, device=device)
            engine = engines[name](run_dir, device=device, precision=case)
        except DcganError as exc:
            if engine_names and precision is not None:  # asked for by name: say why it cannot run
                raise
            skipped.append({"engine": name, "precision": case, "reason": str(exc)})
            if advance:
                advance(len(batch_sizes))
            continue
        with engine:
            for batch in batch_sizes:
                images_per_s, latency, calls = time_engine(engine, batch, min_time)
                rows.append(
                    BenchRow(name, engine.describe(), case, device_key(device), batch, images_per_s, latency, calls)
                )
                if advance:
                    advance(1)
    for name in engine_names or []:
        # An engine asked for by name that ran at no precision is refused with its first reason
        # (fp32's: a broken export), rather than an empty table and exit 0.
        reasons = [s["reason"] for s in skipped if s["engine"] == name]
        if reasons and not any(r.engine == name for r in rows):
            raise DcganError(reasons[0])
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
