"""The help screens and the conventions every command follows (docs/cli.md).

Every command's `--help` (built-in, the analysis plugin's, the concepts group's) is rendered
at 80 columns and must read well there: flags without a value placeholder, placeholders in
capitals, descriptions in a wide column, nothing past the edge. Across commands the same idea
has the same option name and short letter, every command that prints a result takes --json,
and the exit codes tell a usage error, bad input, an interruption and a bug apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from dcgan_cli.cli import build_app
from dcgan_cli.core.errors import DcganError, ExitCode

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = 80
DESCRIPTION_COLUMN = 28  # descriptions start here at the latest: at least 50 columns of text
# One idea, one spelling: (long name, short letter or None) wherever the option appears.
SHARED = {
    "--run": "-r",
    "--out": "-o",
    "--num-samples": "-n",
    "--dataset": "-d",
    "--labels-per-class": "-k",
    "--samples": "-s",
    "--device": None,
    "--engine": None,
    "--precision": None,
    "--seed": None,
    "--batch-size": None,
    "--json": None,
    "--force": None,
}
# Options whose help must be word for word the same wherever they appear (the shared definitions).
SAME_HELP = ("--run", "--device", "--engine", "--json")


def commands() -> dict[str, object]:
    """Every leaf command of the app, by its full name ("concepts add")."""
    root = typer.main.get_command(build_app())
    found = {}

    def walk(group, prefix):
        for name, command in group.commands.items():
            full = f"{prefix}{name}"
            if hasattr(command, "commands"):
                walk(command, f"{full} ")
            else:
                found[full] = command

    walk(root, "")
    return found


def help_screen(*words: str) -> str:
    result = CliRunner().invoke(build_app(), [*words, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout


def options_of(command) -> list:
    return [p for p in command.params if p.param_type_name == "option" and p.name != "help"]


def test_every_command_is_covered():
    names = set(commands())
    # The built-in commands, the analysis plugin's and the concepts group's are all here.
    assert {"train", "sample", "export", "bench", "walk", "arithmetic", "forget", "report", "import"} <= names
    assert {"classify", "inspect", "neighbours", "fid", "concepts add", "concepts auto"} <= names


@pytest.mark.parametrize("name", sorted(commands()) + [""])
def test_the_help_screen_reads_well_at_80_columns(name):
    screen = help_screen(*name.split())
    lines = screen.splitlines()
    too_long = [line for line in lines if len(line) > WIDTH]
    assert not too_long, too_long
    assert not re.search(r"<(bool|boolean|int|integer|str|text|path|float)>|\bBOOLEAN\b", screen), screen
    in_table = False
    for line in lines:
        if line in ("Options:", "Arguments:", "Commands:"):
            in_table = True
            continue
        if not line.strip() or not line.startswith("  "):
            in_table = False
            continue
        if not in_table:
            continue
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if indent > 2:  # a description carried over to the next line
            assert indent <= DESCRIPTION_COLUMN, f"description squeezed to column {indent}: {line!r}"
        else:  # "  -r, --run RUN   Run folder ...": the description (if any) starts by the column
            gap = re.search(r"\S\s{2,}(\S)", line)
            if gap:
                assert gap.start(1) <= DESCRIPTION_COLUMN, f"description squeezed: {line!r}"


@pytest.mark.parametrize("name", sorted(commands()))
def test_flags_show_no_placeholder_and_values_show_one(name):
    command = commands()[name]
    ctx = command.make_context(name, [], resilient_parsing=True)
    for option in options_of(command):
        record, help_text = option.get_help_record(ctx)
        assert help_text.strip(), f"{name} {option.opts}: no help"
        written = [part.strip() for part in record.split(" / ")]
        names = set(option.opts) | set(option.secondary_opts)
        if option.is_flag:
            # each part is only option names: "--force", "--compile / --no-compile"
            assert all(set(re.split(r",\s*", part)) <= names for part in written), record
        else:
            placeholder = record.split(" ")[-1]
            # a name in capitals (RUN, N, N,N,..., HOST:PORT, N[:MAX]) or the choices (fp32|fp16, [a|b], <a|b>)
            choices = r"[a-z0-9]+(\|[a-z0-9]+)+"
            assert re.fullmatch(rf"[A-Z][A-Z0-9_.,:\[\]]*|{choices}|\[{choices}\]|<{choices}>", placeholder), (
                name,
                record,
            )


def test_the_same_idea_has_the_same_name_and_short_letter_everywhere():
    short_of: dict[str, set] = {}
    long_of: dict[str, set] = {}
    helps: dict[str, set] = {}
    for command in commands().values():
        for option in options_of(command):
            longs = [o for o in option.opts if o.startswith("--")]
            shorts = [o for o in option.opts if not o.startswith("--")]
            for long in longs:
                short_of.setdefault(long, set()).add(shorts[0] if shorts else None)
                helps.setdefault(long, set()).add(option.help)
            for short in shorts:
                long_of.setdefault(short, set()).update(longs)
    for long, short in SHARED.items():
        assert short_of.get(long, {short}) == {short}, f"{long}: short letters {short_of[long]}"
    for short, longs in long_of.items():
        assert len(longs) == 1, f"{short} means {sorted(longs)}"
    for long in SAME_HELP:
        assert len(helps[long]) == 1, f"{long} has {len(helps[long])} different help texts"
    assert "--real" not in short_of and "--n" not in short_of  # the old spellings are gone


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_that_prints_a_result_takes_json(name):
    assert "--json" in {o for option in options_of(commands()[name]) for o in option.opts}, name


def test_precision_choices_follow_the_engines_and_the_trainer():
    from dcgan_cli.commands import Precision
    from dcgan_cli.commands.train import TrainingPrecision
    from dcgan_cli.engines.base import PRECISIONS
    from dcgan_cli.training.config import TRAINING_PRECISIONS

    assert tuple(p.value for p in Precision) == PRECISIONS
    assert tuple(p.value for p in TrainingPrecision) == TRAINING_PRECISIONS


# ---------------------------------------------------------------------------- exit codes


def test_exit_codes_tell_usage_bad_input_interruption_and_bugs_apart(cli, registered, tmp_path, monkeypatch):
    from dcgan_cli.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def dcgan_register_commands(self, app):
            @app.command("bug")
            def bug() -> None:
                raise ZeroDivisionError("oops")

            @app.command("stop")
            def stop() -> None:
                raise KeyboardInterrupt

            @app.command("refuse")
            def refuse() -> None:
                raise DcganError("that file is wrong; use another")

    registered(Plugin(), "exit-codes")
    monkeypatch.chdir(tmp_path)
    codes = {
        "usage": cli(["sample", "--no-such-option"]).exit_code,
        "bad input": cli(["refuse"]).exit_code,
        "missing run": cli(["sample", "-r", "nowhere"]).exit_code,
        "interrupted": cli(["stop"]).exit_code,
        "internal": cli(["bug"]).exit_code,
        "unknown device": cli(["sample", "--device", "tpu"]).exit_code,
        "bad choice": cli(["sample", "--precision", "fp8"]).exit_code,
    }
    assert codes == {
        "usage": ExitCode.USAGE,
        "bad input": ExitCode.BAD_INPUT,
        "missing run": ExitCode.BAD_INPUT,
        "interrupted": ExitCode.INTERRUPTED,
        "internal": ExitCode.INTERNAL,
        "unknown device": ExitCode.BAD_INPUT,
        "bad choice": ExitCode.USAGE,
    }
    assert len({getattr(ExitCode, k) for k in ("INTERNAL", "USAGE", "BAD_INPUT", "INTERRUPTED")}) == 4
    interrupted = cli(["stop"])
    assert interrupted.stderr.strip() == "Interrupted." and "Traceback" not in interrupted.output


def test_exit_codes_are_documented_in_the_docs_and_the_root_help():
    docs = DOCS.read_text()
    screen = " ".join(help_screen().split())
    for name in ("OK", "INTERNAL", "USAGE", "BAD_INPUT", "INTERRUPTED", "TERMINATED"):
        code = getattr(ExitCode, name)
        assert re.search(rf"\|\s*`?{code}`?\s*\|\s*`{name}`", docs), f"docs/cli.md: exit code {code} ({name})"
        assert f"{code} " in screen
    assert "Command-line conventions" in docs


def test_json_goes_to_stdout_alone(cli, trained_run):
    sample = cli(["sample", "-n", "4", "--out", "g.png", "--json"])
    assert sample.exit_code == 0, sample.output
    assert json.loads(sample.stdout) == {
        "images": 4,
        "seed": 0,
        "engine": json.loads(sample.stdout)["engine"],
        "precision": "fp32",
        "out": "g.png",
        "z": None,
    }
    report = cli(["report", "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["path"].endswith("report.html")
    sheet = cli(["sample", "-n", "2", "--json"])  # no --out: a numbered sheet in the run
    assert json.loads(sheet.stdout)["z"].endswith(".z.safetensors")
    added = cli(["concepts", "add", "first", "--samples", "0,1", "--json"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["samples"] == [0, 1]
    removed = cli(["concepts", "remove", "first", "--json"])
    assert json.loads(removed.stdout)["removed"] == ["first"]
