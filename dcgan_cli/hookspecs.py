"""Every hook of the "dcgan" pluggy project. Built-in and third-party plugins use the same ones."""

import pluggy

hookspec = pluggy.HookspecMarker("dcgan")
hookimpl = pluggy.HookimplMarker("dcgan")


@hookspec
def dcgan_register_commands(app):
    """Add commands or sub-apps to the ``typer.Typer`` app."""


@hookspec
def dcgan_register_engines(register):
    """Register generation engines: ``register(EngineClass)`` (an ``dcgan_cli.api.Engine`` subclass)."""


@hookspec
def dcgan_register_datasets(register):
    """Register datasets: ``register(name, factory, description=..., expects=..., size=..., channels=..., downloads=...)``."""


@hookspec
def dcgan_register_labelers(register):
    """Register attribute labelers that score images, used to build concepts: ``register(name, labeler)``."""


@hookspec
def dcgan_register_detectors(register):
    """Register object detectors that draw boxes on generated images: ``register(name, detector)``."""


@hookspec
def dcgan_report_sections(run_dir):
    """Add sections to ``dcgan report``: return a ``dcgan_cli.api.ReportSection``, a list of them, or None."""
