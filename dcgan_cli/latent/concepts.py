"""The concept bank of a run: runs/NAME/concepts.json.

A concept is a name ("thick seven", "smiling woman") and a few exemplar latent vectors,
best first, with where they came from (sample indices of a sheet, or a labeler's scores).
Vector arithmetic uses the mean of a concept's first exemplars.

Several processes may edit one bank at once (two `dcgan concepts add` in parallel, say):
every edit reads, changes and writes the file while holding an exclusive lock on a file
beside it, and the write is atomic, so readers (who take no lock) always see a whole file
and no edit is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import atomic_write_json, read_json
from dcgan_cli.core.runs import RunPaths
from dcgan_cli.latent.expressions import is_valid_name, normalize_name

BANK_FORMAT = "dcgan-cli/concepts"
BANK_VERSION = 1
LOCK_TIMEOUT_S = 60.0


@dataclass
class Concept:
    """A named set of exemplar z, best first."""

    name: str
    z: torch.Tensor  # (K, nz) float32
    source: dict = field(default_factory=dict)  # {"kind": "sheet", ...} or {"kind": "labeler", ...}
    scores: list[float] | None = None  # the labeler's score of each exemplar
    created: str = ""

    def to_json(self) -> dict:
        entry = {"created": self.created, "source": self.source, "z": _float32_lists(self.z)}
        if self.scores is not None:
            entry["scores"] = [round(float(s), 6) for s in self.scores]
        return entry


def _float32_lists(z: torch.Tensor) -> list[list[float]]:
    # The shortest decimal that reads back as the same float32: exact round trip, half the text.
    array = z.detach().cpu().float().numpy()
    return [[float(np.format_float_scientific(v, unique=True, trim="-")) for v in row] for row in array]


def check_name(name: str) -> str:
    """The normalized name, or a clear error when expressions could not refer to it."""
    normal = normalize_name(name)
    if not is_valid_name(normal):
        raise DcganError(
            f"{name!r} cannot be a concept name: use words of letters, digits, '_' and \"'\" "
            '(not starting a word with a number alone), e.g. "thick seven" or "smiling_woman"'
        )
    return normal


def bank_path(run_dir: Path) -> Path:
    return RunPaths(Path(run_dir)).concepts


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def bank_lock(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the bank's lock, waiting up to ``timeout`` seconds for another editor to finish."""
    lock = _lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DcganError(
                        f"the concept bank {path} has been locked by another process for {timeout:.0f} s; "
                        "wait for it to finish and try again"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _damaged(path: Path, detail: str) -> DcganError:
    return DcganError(
        f"the concept bank {path} is damaged ({detail}); restore it from a backup, "
        "or move it away and rebuild it with `dcgan concepts auto` / `dcgan concepts add`"
    )


def read_bank(path: Path) -> dict[str, Concept]:
    """Every concept of a bank file, in file order; a missing file is an empty bank."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = read_json(path, "concept bank")
    except DcganError as exc:
        raise _damaged(path, str(exc).replace(f"concept bank {path} ", "")) from None
    if not isinstance(data, dict) or data.get("format") != BANK_FORMAT or not isinstance(data.get("concepts"), dict):
        raise _damaged(path, f"it is not a {BANK_FORMAT} file")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _damaged(path, f"format_version is {version!r}, not a number")
    if version > BANK_VERSION:
        raise DcganError(
            f"the concept bank {path} was written by a newer dcgan-cli (format {version}); upgrade dcgan-cli"
        )
    bank = {}
    for name, entry in data["concepts"].items():
        bank[name] = _read_concept(path, name, entry)
    return bank


def _read_concept(path: Path, name: str, entry: object) -> Concept:
    """One bank entry, checked as strictly as `dcgan concepts add` writes it."""
    if normalize_name(name) != name or not is_valid_name(name):
        raise _damaged(path, f"{name!r} is not a concept name an expression could use")
    if not isinstance(entry, dict):
        raise _damaged(path, f"concept {name!r} is not a JSON object")
    try:
        z = torch.tensor(entry["z"], dtype=torch.float32)
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError):
        raise _damaged(path, f"concept {name!r} has no readable list of vectors") from None
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0 or not bool(torch.isfinite(z).all()):
        raise _damaged(path, f"concept {name!r} holds no exemplars, ragged ones or non-finite numbers")
    scores = entry.get("scores")
    if scores is not None and not (
        isinstance(scores, list) and len(scores) == len(z) and all(_is_number(s) for s in scores)
    ):
        raise _damaged(path, f"concept {name!r} has scores that are not one number per exemplar")
    source = entry.get("source") or {}
    if not isinstance(source, dict):
        raise _damaged(path, f"concept {name!r} has a source that is not a JSON object")
    return Concept(name, z, source, scores, str(entry.get("created", "")))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_bank(path: Path, bank: dict[str, Concept]) -> None:
    """Write the whole bank atomically (call it inside :func:`bank_lock`)."""
    atomic_write_json(
        path,
        {
            "format": BANK_FORMAT,
            "format_version": BANK_VERSION,
            "concepts": {name: concept.to_json() for name, concept in bank.items()},
        },
    )


@contextlib.contextmanager
def edit_bank(path: Path) -> Iterator[dict[str, Concept]]:
    """Lock, read, let the caller change the dict, write it back (only if no error was raised)."""
    path = Path(path)
    with bank_lock(path):
        bank = read_bank(path)
        yield bank
        write_bank(path, bank)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def add_concepts(path: Path, concepts: list[Concept], *, nz: int, force: bool = False) -> list[str]:
    """Put concepts into the bank; an existing name is replaced only with ``force``.

    Returns the names that replaced earlier concepts. Nothing is written when one is refused.
    """
    for concept in concepts:
        if concept.z.ndim != 2 or concept.z.shape[1] != nz or concept.z.shape[0] == 0:
            raise DcganError(
                f"concept {concept.name!r}: exemplars must be (K, {nz}) vectors for this run, got {tuple(concept.z.shape)}"
            )
        if not bool(torch.isfinite(concept.z).all()):
            raise DcganError(f"concept {concept.name!r}: exemplars hold non-finite numbers")
    with edit_bank(path) as bank:
        taken = [c.name for c in concepts if c.name in bank]
        if taken and not force:
            shown = ", ".join(repr(n) for n in taken[:8]) + (" ..." if len(taken) > 8 else "")
            raise DcganError(f"the bank already has {shown}; pass --force to replace, or `dcgan concepts remove` first")
        for concept in concepts:
            concept.created = concept.created or now()
            bank[concept.name] = concept
    return taken


def remove_concepts(path: Path, names: list[str]) -> None:
    """Remove concepts by name; an unknown name removes nothing and says what is there."""
    with edit_bank(path) as bank:
        unknown = [n for n in names if n not in bank]
        if unknown:
            raise unknown_concept_error(unknown[0], list(bank), path)
        for name in names:
            del bank[name]


def unknown_concept_error(name: str, known: list[str], path: Path) -> DcganError:
    from dcgan_cli.latent.expressions import nearest_names

    if not known:
        return empty_bank_error(path)
    close = nearest_names(name, known)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return DcganError(f"no concept {name!r} in {path}; {hint}known concepts: {', '.join(sorted(known))}")


def empty_bank_error(path: Path) -> DcganError:
    return DcganError(
        f"the concept bank {path} is empty; fill it with `dcgan concepts auto` (labels generated samples) "
        "or `dcgan concepts add NAME --samples 3,17,42` (indices into a sheet from `dcgan sample`)"
    )


def load_concepts(run_dir: Path, nz: int) -> dict[str, Concept]:
    """The run's bank for arithmetic and walks; an empty or missing bank says how to fill it."""
    path = bank_path(run_dir)
    bank = read_bank(path)
    if not bank:
        raise empty_bank_error(path)
    wrong = [c.name for c in bank.values() if c.z.shape[1] != nz]
    if wrong:
        raise DcganError(
            f"concept {wrong[0]!r} in {path} has {bank[wrong[0]].z.shape[1]}-dimensional z, this run's nz is {nz}; "
            "the bank comes from another run: remove it and rebuild it"
        )
    return bank


# ---------------------------------------------------------------------------- samples of a sheet


def parse_indices(text: str) -> list[int]:
    """ "3,17,42" or "3 17 42" or "10-12" -> [3, 17, 42] / [10, 11, 12]."""
    indices: list[int] = []
    for part in text.replace(",", " ").split():
        # ASCII digits, at most 18 (no sheet holds 10**18 samples): int() of thousands of digits raises.
        m = re.fullmatch(r"([0-9]{1,18})(?:-([0-9]{1,18}))?", part)
        if m is None or (m.group(2) is not None and not 0 <= int(m.group(2)) - int(m.group(1)) <= 10_000):
            raise DcganError(f"--samples {text!r}: write sample indices such as 3,17,42 or a range such as 10-12")
        first = int(m.group(1))
        indices.extend(range(first, int(m.group(2) or first) + 1))
    if not indices:
        raise DcganError("--samples is empty; give sample indices such as 3,17,42")
    return indices


def newest_sheet(run_dir: Path) -> Path:
    """The newest sheets/sheet-NNN.z.safetensors of a run (by number)."""
    folder = RunPaths(Path(run_dir)).sheets
    numbered = (
        [(re.fullmatch(r"sheet-(\d+)\.z\.safetensors", p.name), p) for p in folder.glob("sheet-*.z.safetensors")]
        if folder.is_dir()
        else []
    )
    sheets = [p for _, p in sorted((int(m.group(1)), p) for m, p in numbered if m)]  # sheet-1000 after sheet-999
    if not sheets:
        raise DcganError(
            f"run {run_dir} has no saved sheet in {folder}; draw one with `dcgan sample -n 64` "
            "(it saves the z of each image), look at it, then pick sample indices"
        )
    return sheets[-1]


def resolve_sheet(run_dir: Path, sheet: str | Path | None) -> Path:
    """--sheet: a path, a sheet number ("3"), a name ("sheet-003"), or the newest sheet."""
    from dcgan_cli.engines.sampling import z_path_for

    if sheet is None:
        return newest_sheet(run_dir)
    text = str(sheet)
    folder = RunPaths(Path(run_dir)).sheets
    candidates = [Path(text)]
    if re.fullmatch(r"[0-9]{1,9}", text):
        candidates.append(folder / f"sheet-{int(text):03d}.z.safetensors")
    candidates.append(folder / f"{text}.z.safetensors")
    for candidate in candidates:
        if candidate.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            candidate = z_path_for(candidate)  # the picture was named: use its z
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a name too long for the filesystem, or with a NUL byte
            continue
    if len(text) > 200:
        text = f"{text[:60]}... ({len(text)} characters)"
    raise DcganError(
        f"no sheet {text!r}: pass a .z.safetensors file, a sheet picture, or a number of a sheet in {folder}"
    )


def sheet_samples(run_dir: Path, sheet: Path, indices: list[int]) -> tuple[torch.Tensor, dict]:
    """(z of the chosen samples, source record); refuses indices outside the sheet and foreign sheets."""
    from dcgan_cli.core.runs import read_run_config
    from dcgan_cli.engines.sampling import read_sheet

    z, meta = read_sheet(sheet)
    n = z.shape[0]
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DcganError(f"sample index {bad[0]} is outside {sheet} (it holds samples 0..{n - 1})")
    run_id = str(read_run_config(run_dir).get("run_id", Path(run_dir).name))
    if meta.get("run_id") and meta["run_id"] != run_id:
        raise DcganError(
            f"{sheet} was drawn from run {meta['run_id']!r}, not {run_id!r}; its sample numbers show another "
            "generator's images. Use a sheet of this run (`dcgan sample`) or pass -r for that run"
        )
    try:
        shown = os.path.relpath(sheet, run_dir)
    except ValueError:
        shown = str(sheet)
    source = {"kind": "sheet", "sheet": shown, "indices": indices, "seed": meta.get("seed")}
    return z[indices].clone(), source


def image_source(run_dir: Path, record: dict, figure: Path) -> dict:
    """The source record of a concept made of inverted images (`concepts add --image`): the files,
    how well each was matched, and the figure and z sheet of the inversion."""
    try:
        shown = os.path.relpath(figure, run_dir)
    except ValueError:
        shown = str(figure)
    return {
        "kind": "images",
        "images": [row["path"] for row in record["images"]],
        "errors": [row["error"] for row in record["images"]],
        "figure": shown,
        "sheet": str(Path(shown).with_name(record["z"])),
        "loss": record["settings"]["loss"],
        "steps": record["settings"]["steps"],
    }


def mean_of(concept: Concept, exemplars: int) -> torch.Tensor:
    return concept.z[:exemplars].mean(dim=0)


def describe_source(concept: Concept) -> str:
    """One short line saying where a concept's exemplars came from."""
    s = concept.source
    if s.get("kind") == "sheet":
        indices = _texts(s.get("indices"))
        shown = ",".join(indices[:8]) + ("..." if len(indices) > 8 else "")
        return f"{s.get('sheet', 'sheet')} [{shown}]"
    if s.get("kind") == "images":
        names = [Path(p).name for p in _texts(s.get("images"))]
        errors = [e for e in s.get("errors") or [] if _is_number(e)] if isinstance(s.get("errors"), list) else []
        shown = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
        error = (
            f" (error {min(errors):.3f}..{max(errors):.3f})" if errors and all(math.isfinite(e) for e in errors) else ""
        )
        return f"images {shown}{error}"
    if s.get("kind") == "labeler":
        rule = s.get("rule") if isinstance(s.get("rule"), dict) else {}
        parts = [
            *_texts(rule.get("present")),
            *(f"not {a}" for a in _texts(rule.get("absent"))),
            *(f"typical {a}" for a in _texts(rule.get("typical"))),
        ]
        scores = concept.scores or []
        score = (
            f", score {min(scores):.2f}..{max(scores):.2f}" if scores and all(math.isfinite(x) for x in scores) else ""
        )
        return f"labeler {s.get('labeler', '?')}: {' & '.join(parts)}{score}"
    return str(s.get("kind", ""))


def _texts(value: object) -> list[str]:
    # The source record is free-form JSON: show what is there, whatever its shape.
    return [str(v) for v in value] if isinstance(value, list) else []


def points_from_specs(
    run_dir: Path, specs: list[str], sheet: str | None, exemplars: int, nz: int, prior: str
) -> tuple[torch.Tensor, list[list[str]]]:
    """Walk stops from specs such as "3,17,thick seven": sample indices of a sheet, concept names.

    A concept stands for the mean of its first ``exemplars`` exemplars, moved to the prior's
    typical norm for a normal prior (a mean of a few draws is shorter than any draw, and
    its image is washed out). Returns ((walks, points, nz), descriptions).
    """
    from dcgan_cli.core.prior import rescale_to_norm, typical_norm
    from dcgan_cli.latent.expressions import normalize_name

    walks, described = [], []
    bank: dict[str, Concept] | None = None
    sheet_path: Path | None = None
    for spec in specs:
        items = [part.strip() for part in spec.split(",") if part.strip()]
        if len(items) < 2:
            raise DcganError(f'--through {spec!r}: a walk needs at least 2 points, e.g. --through "3,17,42"')
        stops, names = [], []
        for item in items:
            if item.isdigit():
                sheet_path = sheet_path or resolve_sheet(run_dir, sheet)
                z, _ = sheet_samples(run_dir, sheet_path, [int(item)])
                stops.append(z[0])
                names.append(f"{sheet_path.name} sample {item}")
            else:
                if bank is None:
                    bank = load_concepts(run_dir, nz)
                name = normalize_name(item)
                if name not in bank:
                    raise unknown_concept_error(name, list(bank), bank_path(run_dir))
                mean = mean_of(bank[name], exemplars)
                if prior == "normal" and float(mean.norm()) > 1e-6:
                    mean = rescale_to_norm(mean, typical_norm(nz, prior))
                stops.append(mean)
                names.append(f"concept {name!r}")
        walks.append(torch.stack(stops))
        described.append(names)
    if len({len(w) for w in walks}) > 1:
        raise DcganError(
            "every --through walk must have the same number of points, so the walks line up as rows of one grid"
        )
    return torch.stack(walks), described
