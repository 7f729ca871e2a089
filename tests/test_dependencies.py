"""The dependencies: every third-party module the code imports is declared by the distribution
that imports it, and the floor job (`make test-floors`) really runs on the floors.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# distribution folder -> its package
PACKAGES = {
    ROOT: ROOT / "dcgan_cli",
    ROOT / "engines" / "onnxruntime": ROOT / "engines" / "onnxruntime" / "dcgan_onnxruntime",
    ROOT / "plugins" / "analysis": ROOT / "plugins" / "analysis" / "dcgan_analysis",
}
FIRST_PARTY = {"dcgan_cli", "dcgan_onnxruntime", "dcgan_tensorrt", "dcgan_analysis"}
# Imported only to use them when present, each behind its own clear message: an extra, not a dependency.
OPTIONAL = {
    "tensorboard": "the [tensorboard] extra",
    "tensorrt": "the dcgan-tensorrt distribution",
    # int8 export quantizes with ONNX Runtime, which the dcgan-onnxruntime distribution installs
    # (the GPU or CPU build by platform); without it the export says so in one line (engines/int8.py).
    "onnxruntime": "the dcgan-onnxruntime distribution",
}


def load_install_script():
    spec = importlib.util.spec_from_file_location("install_script", ROOT / "scripts" / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(package: Path) -> set[str]:
    """Top-level names of every module imported anywhere in ``package`` (inside functions too)."""
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("folder", list(PACKAGES), ids=lambda p: p.relative_to(ROOT).as_posix() or "core")
def test_every_third_party_import_is_declared(folder):
    install = load_install_script()
    declared = {Requirement(text).name.lower() for text in install.runtime_requirements(folder / "pyproject.toml")}
    if folder != ROOT:
        declared |= {
            Requirement(text).name.lower() for text in install.runtime_requirements(ROOT / "pyproject.toml")
        }  # through dcgan-cli
    owners = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(imported_modules(PACKAGES[folder]) - FIRST_PARTY - set(sys.stdlib_module_names)):
        if module in OPTIONAL:
            continue
        distributions = {name.lower() for name in owners.get(module, [module])}
        if not distributions & declared:
            undeclared[module] = sorted(distributions)
    assert not undeclared, f"{folder.name}: imported but not declared in pyproject.toml: {undeclared}"


def test_matplotlib_is_gone_from_the_code_and_the_dependencies():
    install = load_install_script()
    for folder, package in PACKAGES.items():
        assert "matplotlib" not in imported_modules(package), package
        names = {Requirement(text).name for text in install.runtime_requirements(folder / "pyproject.toml")}
        assert "matplotlib" not in names
        if "scipy" in imported_modules(package):  # the core's window detector, the plugin's FID
            assert "scipy" in names, folder


@pytest.mark.skipif(
    not os.environ.get("DCGAN_EXPECT_FLOORS"),
    reason="checks the floor environment only: `make test-floors` sets DCGAN_EXPECT_FLOORS=1",
)
def test_the_floor_environment_holds_exactly_the_floors():
    install = load_install_script()
    pyprojects = [folder / "pyproject.toml" for folder in PACKAGES]
    wrong = {}
    for pin in install.floor_pins(pyprojects):
        name, version = pin.split("==")
        installed = importlib.metadata.version(name)
        if Requirement(pin).specifier.contains(installed, prereleases=True) is False:
            wrong[name] = (version, installed)
    assert not wrong, f"not at their floors (floor, installed): {wrong}"


def test_the_installer_tries_again_after_a_failed_download(tmp_path, monkeypatch):
    """A cut download (pip gives up, exit 1) is tried again; a second failure-free run ends it."""
    install = load_install_script()
    monkeypatch.setattr(install, "PAUSES_S", (0, 0, 0))
    monkeypatch.setattr(install.time, "sleep", lambda seconds: None)
    attempts = tmp_path / "attempts"
    # A real process that fails the first two times it runs, as pip does when a download stalls.
    script = (
        "import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
        "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
        "sys.exit(0 if n >= 2 else 1)"
    )
    assert install.install_with_retries([sys.executable, "-c", script, str(attempts)]) == 0
    assert len(attempts.read_text()) == 3

    attempts.unlink()
    always = [
        sys.executable,
        "-c",
        "import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); sys.exit(7)",
        str(attempts),
    ]
    assert install.install_with_retries(always) == 7  # pip's own exit code, after every attempt
    assert len(attempts.read_text()) == len(install.PAUSES_S) + 1
