"""Installs on every platform users have: the dependency set resolved per platform.

The pyproject files choose ONNX Runtime by environment markers: the GPU build where NVIDIA
publishes one (Linux x86-64, Windows x64), the CPU build everywhere else, never both (they
install the same `onnxruntime` module). pip's own `--platform` evaluates markers against the
machine it runs on, not the target, so the resolution here is done with the same library pip
uses (packaging): markers evaluated in each target platform's environment, then every
selected requirement matched against the wheels PyPI has for that platform's tags and Python
version. A marker that picks a package with no wheel for a platform fails.

The first test needs no network. The second asks PyPI's index (one small request per
project) and skips, saying so, when the index cannot be reached.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest
from packaging import tags
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# What `python scripts/install.py` installs everywhere (TensorRT only where NVIDIA's driver is).
DISTRIBUTIONS = ("pyproject.toml", "engines/onnxruntime/pyproject.toml", "plugins/analysis/pyproject.toml")
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
INDEX = "https://pypi.org/simple"


def manylinux(arch: str, glibc_minor: int = 28) -> list[str]:
    """Platform tags a glibc 2.<minor> Linux accepts, newest first (legacy aliases included)."""
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    found = []
    for minor in range(glibc_minor, 4, -1):
        found.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            found.append(f"{legacy[minor]}_{arch}")
    return found


def marker_environment(python: str, sys_platform: str, system: str, machine: str) -> dict[str, str]:
    major, minor = python.split(".")
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": sys_platform,
        "platform_system": system,
        "platform_machine": machine,
        "os_name": "nt" if sys_platform == "win32" else "posix",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": f"{major}.{minor}.0",
    }


# name: (sys_platform, platform_system, platform_machine, wheel platform tags, the ONNX Runtime package)
PLATFORMS = {
    "linux-x86_64": ("linux", "Linux", "x86_64", manylinux("x86_64"), "onnxruntime-gpu"),
    "linux-aarch64": ("linux", "Linux", "aarch64", manylinux("aarch64"), "onnxruntime"),
    "macos-arm64": ("darwin", "Darwin", "arm64", list(tags.mac_platforms((14, 0), "arm64")), "onnxruntime"),
    "macos-x86_64": ("darwin", "Darwin", "x86_64", list(tags.mac_platforms((13, 0), "x86_64")), "onnxruntime"),
    "windows-x64": ("win32", "Windows", "AMD64", ["win_amd64"], "onnxruntime-gpu"),
    "windows-arm64": ("win32", "Windows", "ARM64", ["win_arm64"], "onnxruntime"),
}
# PyPI has no torch wheel at our floor for these (torch's last Intel-Mac wheel is 2.2; none for
# Windows on ARM). README, "Install", says so; on every other platform everything must resolve.
NO_TORCH = {"macos-x86_64": "torch stopped Intel-Mac wheels after 2.2", "windows-arm64": "no torch wheels"}
TORCH_FAMILY = {"torch", "torchvision"}


def requirements() -> list[Requirement]:
    found = []
    for relative in DISTRIBUTIONS:
        project = tomllib.loads((ROOT / relative).read_text())["project"]
        found += [Requirement(text) for text in project.get("dependencies", [])]
    return [req for req in found if not req.name.startswith("dcgan-")]  # ours come from this checkout


def selected(platform: str, python: str) -> list[Requirement]:
    sys_platform, system, machine, _, _ = PLATFORMS[platform]
    env = marker_environment(python, sys_platform, system, machine)
    return [req for req in requirements() if req.marker is None or req.marker.evaluate(env)]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_markers_pick_exactly_one_onnxruntime_per_platform(platform, python):
    names = [req.name for req in selected(platform, python)]
    runtimes = [name for name in names if name in ("onnxruntime", "onnxruntime-gpu")]
    assert runtimes == [PLATFORMS[platform][4]], f"{platform}: {runtimes}"
    assert "matplotlib" not in names  # the figures are drawn with Pillow
    assert "scipy" in names  # the core imports it (the window detector)


def test_a_platform_no_one_listed_still_gets_one_onnxruntime():
    env = marker_environment("3.12", "freebsd14", "FreeBSD", "amd64")
    names = [req.name for req in requirements() if req.marker is None or req.marker.evaluate(env)]
    assert [n for n in names if n.startswith("onnxruntime")] == ["onnxruntime"]


# ---------------------------------------------------------------------------- against PyPI


@cache
def index_files(project: str) -> tuple[tuple[Version, frozenset, SpecifierSet | None], ...]:
    """(version, tags, requires-python) of each wheel PyPI lists for ``project`` (PEP 691 JSON API)."""
    request = urllib.request.Request(f"{INDEX}/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        files = json.load(response)["files"]
    wheels = []
    for file in files:
        if file.get("yanked") or not file["filename"].endswith(".whl"):
            continue
        try:
            _, version, _, wheel_tags = parse_wheel_filename(file["filename"])
            requires = SpecifierSet(file["requires-python"]) if file.get("requires-python") else None
        except (InvalidWheelFilename, InvalidVersion, InvalidSpecifier):
            continue
        wheels.append((version, wheel_tags, requires))
    return tuple(wheels)


@cache
def accepted_tags(python: str, platform: str) -> frozenset:
    """Wheel tags CPython ``python`` installs on ``platform``."""
    version = tuple(int(part) for part in python.split("."))
    platform_tags = PLATFORMS[platform][3]
    return frozenset(
        [
            *tags.cpython_tags(version, platforms=platform_tags),
            *tags.compatible_tags(version, f"cp{version[0]}{version[1]}", platform_tags),
        ]
    )


def wheel_versions(wheels, python: str, platform: str) -> set[Version]:
    """Versions with a wheel that installs on CPython ``python`` on ``platform``."""
    accepted = accepted_tags(python, platform)
    return {
        version
        for version, wheel_tags, requires in wheels
        if (requires is None or requires.contains(f"{python}.0")) and not wheel_tags.isdisjoint(accepted)
    }


@pytest.fixture(scope="module")
def pypi():
    """Every project's file list, fetched once and in parallel; skip when PyPI cannot be reached."""
    names = sorted({req.name for req in requirements()})
    try:
        with ThreadPoolExecutor(8) as pool:
            files = dict(zip(names, pool.map(index_files, names)))
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        pytest.skip(f"PyPI's index ({INDEX}) cannot be reached from here, so wheels cannot be checked: {exc}")
    return files


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_every_selected_requirement_has_a_wheel_for_the_platform(pypi, platform):
    missing = []  # (name, requirement, python)
    for python in PYTHONS:
        for req in selected(platform, python):
            available = wheel_versions(pypi[req.name], python, platform)
            if not any(req.specifier.contains(v, prereleases=False) for v in available):
                missing.append((req.name, f"{req.name}{req.specifier}", python))
    names = {name for name, _, _ in missing}
    if platform in NO_TORCH:
        # No dcgan there without torch; what must hold is that the marker picks an ONNX Runtime that exists.
        assert names & TORCH_FAMILY, f"{platform}: torch resolves now; drop it from NO_TORCH and update the README"
        runtime = PLATFORMS[platform][4]
        assert {python for name, _, python in missing if name == runtime} != set(PYTHONS), missing
    else:
        assert not missing, f"{platform}: no wheel on PyPI for {missing}"
