"""Run folders: every path inside one (RunPaths), finding runs, naming new ones, and the run lock."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import exclusive_lock, read_json

RUNS_DIR = Path("runs")
RUN_FORMAT = "dcgan-cli/run"


@dataclass(frozen=True)
class RunPaths:
    """Every path inside one run folder; nothing else spells them (docs/architecture.md, "Run folder")."""

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
        """quality.jsonl: each epoch's thumbnail FD and sample diversity (training/quality.py)."""
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
    def export_record(self) -> Path:
        """exports/export.json: what `dcgan export` wrote, with each file's parity check."""
        return self.exports / "export.json"

    @property
    def bench(self) -> Path:
        """exports/bench.json: `dcgan bench` figures of this machine for these weights."""
        return self.exports / "bench.json"

    @property
    def concepts(self) -> Path:
        return self.root / "concepts.json"

    @property
    def invert_encoder(self) -> Path:
        """invert-encoder.safetensors: `dcgan invert`'s start encoder, trained on this generator's samples."""
        return self.root / "invert-encoder.safetensors"

    @property
    def figures(self) -> Path:
        """figures/: walk-NNN, arithmetic-NNN, invert-NNN and forget figures, each with its JSON record."""
        return self.root / "figures"

    @property
    def analysis(self) -> Path:
        """analysis/: results of analysis plugins (classify-NNN.json and the like) and their caches."""
        return self.root / "analysis"

    @property
    def labelers(self) -> Path:
        """labelers/: labelers trained for this run's data (CelebA attributes and the like)."""
        return self.root / "labelers"

    @property
    def report(self) -> Path:
        """report.html: `dcgan report`, the whole run in one page."""
        return self.root / "report.html"

    @property
    def tensorboard(self) -> Path:
        """tensorboard/: event files, with `dcgan train --tensorboard`."""
        return self.root / "tensorboard"

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
    from dcgan_cli.core.model import DCGANConfig  # torch: only when a run is opened

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
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(RunPaths(root).lock, f"dcgan {purpose}", f"run {root} is in use by"):
        yield
