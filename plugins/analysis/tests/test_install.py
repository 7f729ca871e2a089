"""The plugin as a real installed distribution: present, it adds its four commands; absent, only they go.

"Absent" is this very environment with dcgan-analysis uninstalled: every folder on the
import path that holds its files (dist-info, egg-info, editable-install hooks, the
package) is replaced by a view of that folder without them. "Present" is the same plus a
folder into which pip installed plugins/analysis.
"""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
TOY_EXTRACTOR = Path(__file__).parent / "fixtures" / "toy_extractor"
ANALYSIS_COMMANDS = {"classify", "inspect", "neighbours", "fid"}

# Run `python -m dcgan_cli` in a chosen environment: no site processing at start, then
# the site folders (shadowed where needed) are added the way Python adds them, .pth files
# and all, so editable installs of dcgan-cli and other plugins keep working.
BOOT = """
import json, os, runpy, site, sys
env = json.loads(os.environ["DCGAN_TEST_ENV"])
sys.path[:] = env["base"]
for folder in env["site_dirs"]:
    site.addsitedir(folder)
sys.path[:] = env["front"] + [env["shadows"].get(p, p) for p in sys.path]
runpy.run_module("dcgan_cli", run_name="__main__", alter_sys=True)
"""


def _holds_analysis(folder: Path) -> bool:
    try:
        return any("dcgan_analysis" in child.name.lower().replace("-", "_") for child in folder.iterdir())
    except OSError:
        return False


def _shadow(folder: Path, where: Path) -> Path:
    """A folder of links to everything in ``folder`` except dcgan-analysis's own files."""
    where.mkdir(parents=True)
    for child in folder.iterdir():
        if "dcgan_analysis" not in child.name.lower().replace("-", "_"):
            (where / child.name).symlink_to(child)
    return where


@pytest.fixture(scope="module")
def environments(tmp_path_factory):
    """(without, with): environment descriptions for BOOT."""
    tmp = tmp_path_factory.mktemp("envs")
    site_dirs = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    base = [p for p in sys.path if p and not any(p.startswith(s) for s in site_dirs) and "site-packages" not in p]
    shadows = {}
    for i, entry in enumerate(dict.fromkeys([*site_dirs, *sys.path])):
        if entry and Path(entry).is_dir() and _holds_analysis(Path(entry)):
            shadows[entry] = str(_shadow(Path(entry), tmp / f"shadow-{i}"))
    without = {"base": base, "site_dirs": [shadows.get(s, s) for s in site_dirs], "front": [], "shadows": shadows}

    target = tmp / "site"
    for source in (PLUGIN_ROOT, TOY_EXTRACTOR):
        # Built from a copy: pip builds in the source folder, and the checkout stays clean.
        copy = shutil.copytree(
            source,
            tmp / "src" / source.name,
            ignore=shutil.ignore_patterns("build", "*.egg-info", "tests", "__pycache__"),
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--target",
                str(target),
                str(copy),
            ],
            check=True,
            capture_output=True,
        )
    return without, {**without, "front": [str(target)]}


def dcgan(env: dict, *args, cwd=None):
    variables = {**os.environ, "DCGAN_TEST_ENV": json.dumps(env), "DCGAN_QUIET": "1", "COLUMNS": "200"}
    variables.pop("DCGAN_LOAD_PLUGINS", None)
    variables.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-S", "-c", BOOT, *args], env=variables, cwd=cwd, capture_output=True, text=True
    )


def command_names(help_text: str) -> set[str]:
    """The commands listed under "Commands:" in `dcgan --help` (one per line, indented two spaces)."""
    names, listing = set(), False
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            listing = True
        elif listing and not line.strip():
            break
        elif listing and line.startswith("  ") and not line.startswith("   "):
            names.add(line.split()[0])
    return names


def test_installing_adds_exactly_the_four_commands_and_uninstalling_removes_only_them(environments):
    without, with_plugin = environments
    absent, present = dcgan(without, "--help"), dcgan(with_plugin, "--help")
    assert absent.returncode == 0 and present.returncode == 0, absent.stderr + present.stderr
    before, after = command_names(absent.stdout), command_names(present.stdout)
    assert {"train", "sample", "plugins"} <= before
    assert after - before == ANALYSIS_COMMANDS
    assert before == after - ANALYSIS_COMMANDS  # nothing else appears or goes
    assert "Warning" not in present.stderr and "Traceback" not in present.stderr

    rows = {row["name"]: row for row in json.loads(dcgan(with_plugin, "plugins", "--json").stdout)}
    assert rows["analysis"]["distribution"] == "dcgan-analysis" and rows["analysis"]["version"] == "0.1.0"
    assert rows["analysis"]["hooks"] == ["dcgan_register_commands"] and not rows["analysis"]["builtin"]


def test_a_package_adds_a_fid_extractor_through_its_entry_point(environments, run_dir):
    _, with_plugin = environments
    result = dcgan(
        with_plugin,
        "fid",
        "-r",
        str(run_dir),
        "--dataset",
        "digits",
        "--extractor",
        "toy",
        "-n",
        "60",
        "--max-real",
        "80",
        "--kid-subsets",
        "2",
        "--kid-subset-size",
        "30",
        cwd=Path.cwd(),
    )
    assert result.returncode == 0, result.stderr
    assert "extractor: toy extractor: mean brightness of every row and column" in result.stdout
    report = json.loads((run_dir / "analysis" / "fid-001.json").read_text())
    assert report["extractor"] == "toy" and report["dims"] == 64
