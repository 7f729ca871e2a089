import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import dcgan_cli
from dcgan_cli import plugins
from dcgan_cli.core.errors import DcganError, ExitCode

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"
ROOT = Path(__file__).resolve().parents[1]


def test_registered_plugin_class_adds_a_command_that_runs(registered, cli):
    class Greeter:
        @dcgan_cli.hookimpl
        def dcgan_register_commands(self, app):
            @app.command("greet")
            def greet(name: str) -> None:
                """Greet someone."""
                typer.echo(f"hi {name}")

    registered(Greeter(), "greeter")
    result = cli(["greet", "bob"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "hi bob"
    assert "greeter" in [row["name"] for row in plugins.list_plugins()]


def test_error_inside_a_plugin_command_names_the_plugin(registered, cli):
    class Crashing:
        @dcgan_cli.hookimpl
        def dcgan_register_commands(self, app):
            @app.command("crash")
            def crash() -> None:
                raise ZeroDivisionError("oops")

            @app.command("refuse")
            def refuse() -> None:
                raise DcganError("that input is wrong; do this instead")

    registered(Crashing(), "crasher")
    result = cli(["crash"])
    assert result.exit_code == 1
    assert "plugin 'crasher'" in result.stderr and "ZeroDivisionError: oops" in result.stderr
    assert "Traceback" not in result.output
    result = cli(["refuse"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.strip() == "Error: that input is wrong; do this instead"


def test_plugin_failing_in_registration_is_a_warning_and_the_rest_works(registered, cli):
    class Broken:
        @dcgan_cli.hookimpl
        def dcgan_register_commands(self, app):
            raise RuntimeError("cannot add my commands")

    registered(Broken(), "broken-registration")
    result = cli(["datasets", "--json"])
    assert result.exit_code == 0
    assert "digits" in [row["name"] for row in json.loads(result.stdout)]
    assert any("broken-registration" in w and "cannot add my commands" in w for w in plugins.load_warnings())


def test_hook_implementation_without_spec_is_rejected():
    class Typo:
        @dcgan_cli.hookimpl
        def dcgan_register_comands(self, app):
            pass

    pm = plugins.get_plugin_manager()
    pm.register(Typo(), name="typo-in-test")
    plugins.reject_unknown_hooks()
    assert pm.get_plugin("typo-in-test") is None
    assert any("typo-in-test" in w and "dcgan_register_comands" in w for w in plugins.load_warnings())


# ---------------------------------------------------------------- real installed distributions


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """The fixture plugins installed by pip into a folder, as real distributions."""
    site = tmp_path_factory.mktemp("site")
    sources = tmp_path_factory.mktemp("sources")
    for name in ("hello", "broken", "unknown_hook"):
        source = shutil.copytree(FIXTURES / name, sources / name)  # builds leave no trace in the checkout
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
                str(site),
                str(source),
            ],
            check=True,
            capture_output=True,
        )
    return site


def dcgan(site: Path, *args, load=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(site), "DCGAN_QUIET": "1", "COLUMNS": "200"}
    env.pop("DCGAN_LOAD_PLUGINS", None)
    if load is not None:
        env["DCGAN_LOAD_PLUGINS"] = load
    return subprocess.run([sys.executable, "-m", "dcgan_cli", *args], env=env, cwd=cwd, capture_output=True, text=True)


def test_installed_plugins_load_and_broken_ones_are_one_warning(plugin_site):
    result = dcgan(plugin_site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["hello"]["version"] == "1.2.3"
    assert rows["hello"]["distribution"] == "dcgan-hello"
    assert rows["hello"]["hooks"] == ["dcgan_register_commands", "dcgan_register_datasets"]
    assert not rows["hello"]["builtin"]
    assert "broken" not in rows and "typo" not in rows
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2, result.stderr
    assert any("'broken'" in w and "failed to import" in w and "needs a library" in w for w in warnings)
    assert any("'typo'" in w and "dcgan_register_comands" in w for w in warnings)
    assert "Traceback" not in result.stderr

    result = dcgan(plugin_site, "hello", "--name", "plugins")
    assert result.returncode == 0 and result.stdout.strip() == "hello plugins from dcgan-hello"
    result = dcgan(plugin_site, "datasets", "--json")
    assert "hello-blobs" in [row["name"] for row in json.loads(result.stdout)]


def test_load_plugins_env_limits_what_loads(plugin_site):
    only_hello = dcgan(plugin_site, "plugins", "--json", load="hello")
    names = [row["name"] for row in json.loads(only_hello.stdout)]
    assert "hello" in names
    assert "Warning" not in only_hello.stderr  # broken and typo were never imported

    none = dcgan(plugin_site, "plugins", "--json", load="")
    rows = json.loads(none.stdout)
    assert rows and all(row["builtin"] for row in rows)  # built-ins always load
    assert dcgan(plugin_site, "hello", load="").returncode == 2  # no such command

    by_distribution = dcgan(plugin_site, "hello", load="dcgan-hello, something-else")
    assert by_distribution.returncode == 0
