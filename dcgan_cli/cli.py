"""Builds the ``dcgan`` Typer app from the plugin hooks.

Building the app imports no torch, onnx or sklearn: every command imports what it runs with
when it runs, so `dcgan --help`, `--version` and `dcgan COMMAND --help` answer at once
(benchmarks/cli_startup.py measures it; tests/test_architecture.py guards it).
"""

import functools
import gc
import os
import signal
import sys
import traceback
from typing import Annotated

import typer
from rich.markup import escape

from dcgan_cli import __version__, plugins
from dcgan_cli.core.console import err_console
from dcgan_cli.core.errors import DcganError, ExitCode

DEBUG_ENV = "DCGAN_DEBUG"


def print_error(message: str) -> None:
    # soft_wrap keeps the message on one line however narrow the terminal is.
    err_console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def _guard(callback, plugin_name: str, command_name: str):
    """Turn errors inside a command into one clear line and an exit code, never a traceback."""

    @functools.wraps(callback)
    def guarded(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except DcganError as exc:
            print_error(str(exc))
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            # Click would print "Aborted!" and exit 1, the code of a bug: say it and exit 130.
            err_console.print("Interrupted.", highlight=False)
            raise typer.Exit(code=ExitCode.INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if exc.__class__.__module__.startswith("typer."):  # Typer's own usage errors
                raise
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            origin = "dcgan-cli" if plugin_name.startswith("dcgan_cli.") else f"plugin {plugin_name!r}"
            print_error(
                f"command {command_name!r} from {origin} failed unexpectedly ({plugins.describe_exception(exc)}). "
                f"Set {DEBUG_ENV}=1 to see the traceback, and please report it."
            )
            raise typer.Exit(code=ExitCode.INTERNAL) from None

    return guarded


# ---------------------------------------------------------------------------- the help screen
#
# Click's plain layout (docs/cli.md, "Help screens"): one line per option with a short value
# placeholder (none for flags), the description beside it in most of the width, an option too
# long for the first column on a line of its own. Rich's option tables squeezed descriptions
# into a third of an 80-column terminal.

OPTION_COLUMN = 24  # the first column's widest entry; a longer one takes a line of its own
# Placeholders by value type, where an option names none itself (RUN, DEVICE, FILE ...).
# (Click names its types integer and text; the Click that Typer >= 0.22 vendors, int and str.)
PLACEHOLDERS = {"integer": "N", "int": "N", "float": "NUM", "path": "PATH", "text": "TEXT", "str": "TEXT"}


def _placeholder(param) -> str | None:
    type_name = getattr(param.type, "name", "")
    if type_name == "choice":
        return None  # Click writes the choices themselves: [fp32|fp16|bf16]
    return PLACEHOLDERS.get(type_name, type_name.upper() or "VALUE")


def _help_classes():
    """(command class, group class) with the help layout above; built on Typer's own classes,
    whichever Click they use (Typer >= 0.22 vendors its own)."""
    from typer.core import TyperCommand, TyperGroup

    base_context = TyperCommand.context_class

    class HelpFormatter(base_context.formatter_class):
        def write_dl(self, rows, col_max: int = OPTION_COLUMN, col_spacing: int = 2) -> None:
            super().write_dl(rows, col_max=min(col_max, OPTION_COLUMN), col_spacing=col_spacing)

    class HelpContext(base_context):
        formatter_class = HelpFormatter

    def name_placeholders(params) -> None:
        for param in params:
            if param.param_type_name == "option" and not param.is_flag and not param.count and param.metavar is None:
                param.metavar = _placeholder(param)

    class DcganCommand(TyperCommand):
        context_class = HelpContext

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            name_placeholders(self.params)

    class DcganGroup(TyperGroup):
        context_class = HelpContext

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            name_placeholders(self.params)

    return DcganCommand, DcganGroup


COMMAND_CLASS, GROUP_CLASS = _help_classes()

EXIT_CODES = (
    "Exit codes: 0 done; 1 internal error (a bug: DCGAN_DEBUG=1 shows the traceback); "
    "2 usage error (the command line); 3 bad input (a file, value or state to fix); "
    "130 interrupted (Ctrl-C); 143 terminated (SIGTERM)."
)


def _guard_new_commands(app: typer.Typer, plugin_name: str, seen: set[int]) -> None:
    for info in app.registered_commands:
        if id(info) in seen or info.callback is None:
            continue
        seen.add(id(info))
        name = info.name or info.callback.__name__.replace("_", "-")
        info.callback = _guard(info.callback, plugin_name, name)
        if info.cls in (None, *COMMAND_CLASS.__bases__):  # a plugin's own command class is its choice
            info.cls = COMMAND_CLASS
    for group in app.registered_groups:
        if group.typer_instance is not None:
            defaults = (None, *GROUP_CLASS.__bases__)  # Typer wraps unset values in a DefaultPlaceholder
            chosen = [getattr(c, "value", c) for c in (group.cls, group.typer_instance.info.cls)]
            if all(c in defaults for c in chosen):
                group.cls = group.typer_instance.info.cls = GROUP_CLASS
            _guard_new_commands(group.typer_instance, plugin_name, seen)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"dcgan-cli {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The Typer app with every command that the registered plugins add."""
    app = typer.Typer(
        name="dcgan",
        help="Train, export and study DCGANs (Radford, Metz, Chintala 2015).",
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # Click's plain help (see the help screen, above)
        cls=GROUP_CLASS,
        epilog=EXIT_CODES,
    )

    @app.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
        ] = False,
    ) -> None:
        """Train, export and study DCGANs (Radford, Metz, Chintala 2015)."""

    seen: set[int] = set()
    pm = plugins.get_plugin_manager()
    for impl in pm.hook.dcgan_register_commands.get_hookimpls():
        try:
            impl.function(app=app)
        except Exception as exc:
            if impl.plugin_name in plugins.BUILTIN_PLUGINS:
                raise plugins.BuiltinPluginError(
                    f"built-in plugin {impl.plugin_name} failed to add its commands ({plugins.describe_exception(exc)}); "
                    "this is a bug in dcgan-cli, please report it"
                ) from exc
            plugins.warn(f"plugin {impl.plugin_name!r} failed to add its commands ({plugins.describe_exception(exc)})")
        # Whatever a plugin managed to add is guarded, so its errors name it.
        _guard_new_commands(app, impl.plugin_name, seen)
    return app


def print_warning(message: str) -> None:
    err_console.print(f"[yellow]Warning:[/] {escape(message)}", soft_wrap=True, highlight=False)


def show_warnings() -> None:
    """Print the plugin warnings so far, and each later one as it comes (a plugin failing in a hook)."""
    for message in plugins.load_warnings():
        print_warning(message)
    plugins.set_warning_listener(print_warning)


def main(argv: list[str] | None = None) -> None:
    if hasattr(signal, "SIGXFSZ"):
        # Past a file-size limit, fail the write (EFBIG, reported in one line) instead of dying.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app = build_app()
    except plugins.BuiltinPluginError as exc:
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        print_error(str(exc))
        sys.exit(exc.exit_code)
    show_warnings()
    try:
        app(args=argv, prog_name="dcgan")
    except DcganError as exc:  # raised outside a command (a callback, say)
        print_error(str(exc))
        sys.exit(exc.exit_code)
    finally:
        plugins.set_warning_listener(None)


# A command that runs torch imports about a million long-lived objects (torch, torchvision).
# With the collector's default first threshold (700 new objects) they are scanned over and
# over while they load, and once more at exit: about 1.9 s of start-up and 0.9 s of exit on our
# 2-core machine (benchmarks/cli_startup.py, "a command that runs torch"). Cycles are still
# collected, only in batches of 50,000 allocations.
GC_THRESHOLD = (50_000, 20, 10)


def entry() -> None:
    """The `dcgan` program (console script and `python -m dcgan_cli`): main() with a CLI's garbage-collector settings.

    Kept out of main() so that a process that calls main() in turn (tests, scripts) keeps its own settings.
    """
    gc.set_threshold(*GC_THRESHOLD)
    try:
        main()
    finally:
        gc.freeze()  # the exit's last collection skips everything alive now: the process is ending
