"""Install dcgan-cli and every engine and plugin distribution that can run on this machine.

    python scripts/install.py            # the core, engines/*, plugins/* (editable)
    python scripts/install.py --test     # the same with their test dependencies
    python scripts/install.py --floors   # every dependency at its lowest allowed version (make test-floors)

A distribution whose pyproject.toml says `requires = "nvidia"` under [tool.dcgan-cli]
(TensorRT) is installed only where NVIDIA's driver is present.

ONNX Runtime comes as two packages that install the same `onnxruntime` module: the GPU build
(`onnxruntime-gpu`, which also runs on the CPU) exists for Linux x86-64 and Windows x64 only.
engines/onnxruntime/pyproject.toml picks one by environment markers; this script says which.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A fresh virtual environment has pip and nothing else; pip vendors packaging (and tomli for
# Python 3.10, which has no tomllib), so this script runs before anything is installed.
try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version
try:
    import tomllib
except ModuleNotFoundError:
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def nvidia_present() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()


def distributions() -> list[tuple[Path, str]]:
    """(folder, pyproject text) of each distribution under engines/ and plugins/."""
    found = []
    for pyproject in sorted([*ROOT.glob("engines/*/pyproject.toml"), *ROOT.glob("plugins/*/pyproject.toml")]):
        found.append((pyproject.parent, pyproject.read_text()))
    return found


def needs_nvidia(text: str) -> bool:
    return re.search(r'^\s*requires\s*=\s*"nvidia"', text, re.M) is not None


def runtime_requirements(pyproject: Path) -> list[str]:
    """The [project] dependencies of a pyproject.toml, as written (markers included)."""
    return list(tomllib.loads(pyproject.read_text())["project"].get("dependencies", []))


def floor_pins(pyprojects: list[Path]) -> list[str]:
    """name==floor for every third-party dependency with a >= floor whose markers hold here.

    The floors are the versions the code claims to work with; a constraints file of these
    pins makes pip install exactly them (transitive dependencies stay free)."""
    pins: dict[str, str] = {}
    for pyproject in pyprojects:
        for text in runtime_requirements(pyproject):
            req = Requirement(text)
            if req.name.startswith("dcgan-") or (req.marker is not None and not req.marker.evaluate()):
                continue
            floors = [spec.version for spec in req.specifier if spec.operator == ">="]
            if floors:
                pins[req.name] = max([pins.get(req.name, "0"), *floors], key=Version)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def onnxruntime_package() -> str | None:
    """Which ONNX Runtime package engines/onnxruntime brings on this machine (its markers, evaluated here)."""
    for text in runtime_requirements(ROOT / "engines" / "onnxruntime" / "pyproject.toml"):
        req = Requirement(text)
        if req.name.startswith("onnxruntime") and (req.marker is None or req.marker.evaluate()):
            return req.name
    return None


def main(argv: list[str]) -> int:
    test = "--test" in argv or "--floors" in argv  # the floor job runs tests too
    floors = "--floors" in argv
    targets = ["-e", f"{ROOT}[test]" if test else str(ROOT)]
    pyprojects = [ROOT / "pyproject.toml"]
    for folder, text in distributions():
        if needs_nvidia(text) and not nvidia_present():
            print(f"skipping {folder.relative_to(ROOT)}: it needs NVIDIA's driver and CUDA, not present here")
            continue
        has_test_extra = re.search(r"^\s*test\s*=", text, re.M) is not None
        targets += ["-e", f"{folder}[test]" if test and has_test_extra else str(folder)]
        pyprojects.append(folder / "pyproject.toml")
    package = onnxruntime_package()
    if package == "onnxruntime-gpu":
        print("ONNX Runtime: onnxruntime-gpu (NVIDIA's CUDA and TensorRT providers, and the CPU)")
    elif package is not None:
        print("ONNX Runtime: onnxruntime (the CPU build: no GPU build exists for this platform)")
    command = [sys.executable, "-m", "pip", "install", "--quiet", *targets]
    with tempfile.TemporaryDirectory() as scratch:
        if floors:
            pins = floor_pins(pyprojects)
            constraints = Path(scratch) / "floors.txt"
            constraints.write_text("\n".join(pins) + "\n")
            print("floors: " + " ".join(pins))
            command += ["--constraint", str(constraints)]
        print(" ".join(command))
        return install_with_retries(command)


# A download from the package index can stall for minutes (seen in CI: a 665 MB CUDA wheel of
# the floors' torch cut off at the same byte six times running). pip resumes a cut download
# itself; when it gives up, the wheels already fetched sit in its cache and the next attempt,
# after a pause, fetches only the rest.
PAUSES_S = (20, 60, 180)


def install_with_retries(command: list[str]) -> int:
    if Version(importlib.metadata.version("pip")) >= Version("25.1"):  # the option's first release
        command = [*command, "--resume-retries", "20"]
    for attempt, pause in enumerate((*PAUSES_S, None), start=1):
        code = subprocess.call(command)
        if code == 0 or pause is None:
            return code
        print(
            f"pip failed (exit {code}, attempt {attempt} of {len(PAUSES_S) + 1}); "
            f"trying again in {pause} s with the downloads it finished",
            flush=True,
        )
        time.sleep(pause)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
