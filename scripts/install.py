"""Install dcgan-cli and every engine and plugin distribution that can run on this machine.

    python scripts/install.py          # the core, engines/*, plugins/* (editable)
    python scripts/install.py --test   # the same with their test dependencies

A distribution whose pyproject.toml says `requires = "nvidia"` under [tool.dcgan-cli]
(TensorRT) is installed only where NVIDIA's driver is present.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def nvidia_present() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()


def distributions() -> list[tuple[Path, str]]:
    """(folder, pyproject text) of each distribution under engines/ and plugins/."""
    found = []
    for pyproject in sorted([*ROOT.glob("engines/*/pyproject.toml"), *ROOT.glob("plugins/*/pyproject.toml")]):
        found.append((pyproject.parent, pyproject.read_text()))
    return found


def main(argv: list[str]) -> int:
    test = "--test" in argv
    targets = ["-e", f"{ROOT}[test]" if test else str(ROOT)]
    for folder, text in distributions():
        if re.search(r'^\s*requires\s*=\s*"nvidia"', text, re.M) and not nvidia_present():
            print(f"skipping {folder.relative_to(ROOT)}: it needs NVIDIA's driver and CUDA, not present here")
            continue
        has_test_extra = re.search(r"^\s*test\s*=", text, re.M) is not None
        targets += ["-e", f"{folder}[test]" if test and has_test_extra else str(folder)]
    command = [sys.executable, "-m", "pip", "install", "--quiet", *targets]
    print(" ".join(command))
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
