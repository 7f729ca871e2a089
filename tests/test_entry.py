"""The `dcgan` program's entry point: the CLI's garbage-collector settings, and only in its own process."""

import gc
import importlib.metadata
import subprocess
import sys

import pytest

from dcgan_cli import __version__, cli

PROBE = """
import atexit, gc, sys
from dcgan_cli import cli
atexit.register(lambda: print("gc", *gc.get_threshold(), gc.get_freeze_count() > 0))
sys.argv = ["dcgan", "--version"]
cli.entry()
"""


def test_the_console_script_and_python_m_run_entry():
    (script,) = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == "dcgan"]
    assert script.value == "dcgan_cli.cli:entry"
    out = subprocess.run([sys.executable, "-m", "dcgan_cli", "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def test_entry_raises_the_first_threshold_and_freezes_before_exit():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert __version__ in out.stdout
    threshold, frozen = out.stdout.split("gc ")[1].split()[:3], out.stdout.split()[-1]
    assert tuple(map(int, threshold)) == cli.GC_THRESHOLD
    assert frozen == "True"  # the exit's collection will skip what was alive


def test_main_leaves_the_calling_process_settings_alone():
    before = gc.get_threshold()
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code in (0, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
