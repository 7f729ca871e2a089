"""Choosing an engine: by name, or ``auto`` (the fastest that can run here, from the run's benchmark)."""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dcgan_cli.core.devices import cpu_threads, mps_available, resolve_device
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import read_json, sha256_file
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.engines.base import Engine, engine_class, get_engines, precision_refusal


@dataclass
class Choice:
    engine: type[Engine]
    reason: str  # why auto chose it (empty when the user named the engine)
    # (name, why) of each engine auto would rather have taken (faster, installed, able to run
    # here) that cannot load this run's current weights: no export, a stale or damaged one.
    passed_over: list[tuple[str, str]] = field(default_factory=list)

    @property
    def hint(self) -> str:
        """What would make the fastest passed-over engine usable ('' when none was)."""
        if not self.passed_over:
            return ""
        name, why = self.passed_over[0]
        return f"the {name} engine would likely be faster: {why}"

    def notes(self) -> list[str]:
        """One line per passed-over engine, saying why it was not taken."""
        return [f"Skipped the {name} engine (likely faster): {why}" for name, why in self.passed_over]


def machine_fingerprint() -> dict:
    """What a benchmark's figures depend on: CPU, threads, GPU, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "Apple GPU (MPS)" if mps_available() else None
    return {"cpu": cpu, "threads": cpu_threads(), "gpu": gpu, "torch": torch.__version__}


def device_key(device: str) -> str:
    """'cpu', 'cuda' or 'mps': what a benchmark row was measured on ('auto' resolved)."""
    return resolve_device(device).type


def bench_path(run_dir: Path) -> Path:
    return RunPaths(run_dir).bench


def measured_best(run_dir: Path, candidates: dict[str, type[Engine]], precision: str, device: str, batch_size: int):
    """(engine name, images/s, measured batch) of the fastest candidate in the run's bench.json,
    when it was measured on this machine for these weights; else None."""
    path = bench_path(run_dir)
    if not path.is_file():
        return None
    try:
        bench = read_json(path, "benchmark")
    except DcganError:
        return None
    generator = RunPaths(run_dir).generator
    if (
        not isinstance(bench, dict)
        or bench.get("machine") != machine_fingerprint()
        or not generator.is_file()
        or bench.get("generator_sha256") != sha256_file(generator)
    ):
        return None
    device = device_key(device)
    rows = [
        r
        for r in bench.get("results", [])
        if isinstance(r, dict)
        and r.get("engine") in candidates
        and r.get("precision") == precision
        and r.get("device") == device
    ]
    if not rows:
        return None
    # The nearest measured batch size, on a log scale (1 and 16 are as far apart as 16 and 256).
    nearest = min({r["batch"] for r in rows}, key=lambda b: abs(math.log(b) - math.log(batch_size)))
    best = max((r for r in rows if r["batch"] == nearest), key=lambda r: r["images_per_s"])
    return best["engine"], best["images_per_s"], nearest


def select_engine(
    name: str, run_dir: Path | None = None, *, precision: str = "fp32", device: str = "auto", batch_size: int = 256
) -> Choice:
    """The engine for ``name``; 'auto' picks the fastest that can run here for this run.

    auto: among engines that are available (their libraries and device are present), run
    the precision, and are ready for the run (Engine.ready: what they load exists, reads,
    and was made from the run's current weights on a machine like this one), take
    the fastest at the nearest batch size in the run's exports/bench.json when `dcgan bench`
    measured it on this machine for these weights; otherwise the highest AUTO_PRIORITY
    (tensorrt > onnxruntime > torch: the order measured on CPUs and GPUs, README).
    """
    from dcgan_cli.engines.base import check_precision_name

    check_precision_name(precision)
    if name != "auto":
        cls = engine_class(name)
        ok, reason = cls.is_available()
        if not ok:
            raise DcganError(f"engine {name!r} cannot run here: {reason}")
        if precision not in cls.PRECISIONS:
            raise precision_refusal(name, cls.PRECISIONS, precision)
        if run_dir is not None:
            ok, reason = cls.ready(run_dir, precision, device)
            if not ok:
                raise DcganError(f"engine {name!r} is not ready for {run_dir}: {_said(cls, reason)}")
        return Choice(cls, "")
    engines = get_engines()
    candidates, not_ready = {}, []
    for engine_name, cls in engines.items():
        if precision not in cls.PRECISIONS or not cls.is_available()[0]:
            continue
        if run_dir is not None:
            ok, reason = cls.ready(run_dir, precision, device)
            if not ok:
                not_ready.append((cls, _said(cls, reason)))
                continue
        candidates[engine_name] = cls
    if not candidates:
        if not_ready:  # auto never falls back to another precision: say what would make this one run
            raise DcganError(f"no engine is ready to run {precision} for {run_dir}: {not_ready[0][1]}")
        raise DcganError(f"no generation engine can run {precision} here; try --precision fp32 or --engine torch")
    ranked = sorted(candidates.values(), key=lambda cls: cls.AUTO_PRIORITY, reverse=True)
    best = ranked[0]
    measured = measured_best(run_dir, candidates, precision, device, batch_size) if run_dir is not None else None
    if measured is not None:
        best = candidates[measured[0]]
        reason = f"fastest at batch {measured[2]} in {bench_path(run_dir)} ({measured[1]:,.0f} img/s)"
    else:
        reason = "the fastest kind that can run here (no `dcgan bench` of this machine for the run)"
    faster = sorted(
        ((cls, why) for cls, why in not_ready if cls.AUTO_PRIORITY > best.AUTO_PRIORITY),
        key=lambda item: item[0].AUTO_PRIORITY,
        reverse=True,
    )
    return Choice(best, reason, [(cls.NAME, why) for cls, why in faster])


def _said(cls: type[Engine], reason: str) -> str:
    """An engine's one-line reason, never empty (an empty one is the plugin's bug, not the user's)."""
    text = " ".join(str(reason or "").split())
    return text or f"the {cls.NAME} engine gave no reason (a bug in its plugin; please report it)"


def choose_engine(name: str, run_dir: Path | None = None, **kwargs) -> type[Engine]:
    """The engine class for ``name``; 'auto' picks as select_engine does."""
    return select_engine(name, run_dir, **kwargs).engine


def open_engine(name: str, run_dir: Path | str, *, batch_size: int = 256, **options) -> Engine:
    """Open engine ``name`` ('auto' included) on a run; a line on stderr for each faster engine
    auto passed over, saying why."""
    from dcgan_cli.core.console import note

    choice = select_engine(
        name,
        Path(run_dir),
        precision=options.get("precision", "fp32"),
        device=options.get("device", "auto"),
        batch_size=batch_size,
    )
    for line in choice.notes():
        note(line)
    return choice.engine(run_dir, **options)


class LazyEngine:
    """``open_engine`` deferred to the first ``get()`` and closed on leaving the ``with`` block:
    work that may fail first (a labeler learning the run's labels) fails before any line
    about engines is printed, and no engine is loaded for nothing."""

    def __init__(self, name: str, run_dir: Path | str, *, batch_size: int = 256, **options):
        self._args, self._engine = (name, run_dir, batch_size, options), None

    def get(self) -> Engine:
        if self._engine is None:
            name, run_dir, batch_size, options = self._args
            self._engine = open_engine(name, run_dir, batch_size=batch_size, **options).__enter__()
        return self._engine

    def __enter__(self) -> LazyEngine:
        return self

    def __exit__(self, *exc) -> None:
        if self._engine is not None:
            self._engine.__exit__(*exc)
