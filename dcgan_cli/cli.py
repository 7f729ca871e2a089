"""Builds the ``dcgan`` Typer app from the plugin hooks."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from typing import Annotated

import typer
from rich.markup import escape

from dcgan_cli import __version__, plugins
from dcgan_cli.errors import DcganError
from dcgan_cli.progress import err_console

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
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if exc.__class__.__module__.startswith("typer."):  # Typer's own usage errors
                raise
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            origin = "dcgan-cli" if plugin_name.startswith("dcgan_cli.") else f"plugin {plugin_name!r}"
            text = str(exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
            print_error(
                f"command {command_name!r} from {origin} failed unexpectedly ({detail}). "
                f"Set {DEBUG_ENV}=1 to see the traceback, and please report it."
            )
            raise typer.Exit(code=1) from None

    return guarded


def _guard_new_commands(app: typer.Typer, plugin_name: str, seen: set[int]) -> None:
    for info in app.registered_commands:
        if id(info) in seen or info.callback is None:
            continue
        seen.add(id(info))
        name = info.name or info.callback.__name__.replace("_", "-")
        info.callback = _guard(info.callback, plugin_name, name)
    for group in app.registered_groups:
        if group.typer_instance is not None:
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
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
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
            text = str(exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
            plugins._warn(plugins._get_state(), f"plugin {impl.plugin_name!r} failed to add its commands ({detail})")
        # Whatever a plugin managed to add is guarded, so its errors name it.
        _guard_new_commands(app, impl.plugin_name, seen)
    return app


def show_warnings() -> None:
    for message in plugins.load_warnings():
        err_console.print(f"[yellow]Warning:[/] {escape(message)}", soft_wrap=True, highlight=False)


def main(argv: list[str] | None = None) -> None:
    if hasattr(signal, "SIGXFSZ"):
        # Past a file-size limit, fail the write (EFBIG, reported in one line) instead of dying.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    app = build_app()
    show_warnings()
    try:
        app(args=argv, prog_name="dcgan")
    except DcganError as exc:  # raised outside a command (a callback, say)
        print_error(str(exc))
        sys.exit(exc.exit_code)
