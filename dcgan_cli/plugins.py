"""The plugin manager: ``dcgan_cli.plugins.pm``.

Built-in modules are registered exactly like third-party plugins; third-party ones come
from the ``dcgan`` entry-point group. The manager loads them on first use (the first time
``pm`` is read), so importing this module costs nothing.

- A built-in plugin that fails to import is a bug in dcgan-cli: ``BuiltinPluginError``,
  which names the module, and the command line stops with exit code 1.
- A third-party plugin that fails to import, to register, or inside a hook is one warning
  naming it; everything else works.

Plugins import nothing heavy (torch, onnx, sklearn) when they register: the command line
builds its help from them and answers in well under a second (benchmarks/cli_startup.py).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pluggy

from dcgan_cli import __version__, hookspecs
from dcgan_cli.core.errors import DcganError, ExitCode

ENTRY_POINT_GROUP = "dcgan"
LOAD_PLUGINS_ENV = "DCGAN_LOAD_PLUGINS"

# Ordinary plugin modules that ship inside dcgan-cli, registered in this order.
BUILTIN_PLUGINS = (
    "dcgan_cli.data.builtin",
    "dcgan_cli.engines.torch_engine",
    "dcgan_cli.latent.window_detector",
    "dcgan_cli.latent.labelers.builtin",
    "dcgan_cli.commands.train",
    "dcgan_cli.commands.sample",
    "dcgan_cli.commands.export",
    "dcgan_cli.commands.bench",
    "dcgan_cli.commands.walk",
    "dcgan_cli.commands.concepts",
    "dcgan_cli.commands.arithmetic",
    "dcgan_cli.commands.invert",
    "dcgan_cli.commands.forget",
    "dcgan_cli.commands.import_weights",
    "dcgan_cli.commands.report",
    "dcgan_cli.commands.datasets",
    "dcgan_cli.commands.plugins",
)


class BuiltinPluginError(DcganError):
    """A built-in plugin module failed to import or register: a bug in dcgan-cli, never hidden."""

    exit_code = ExitCode.INTERNAL


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str
    builtin: bool


@dataclass
class _State:
    pm: pluggy.PluginManager
    info: dict[str, PluginInfo] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


_state: _State | None = None
# Called with each warning that arrives after the command line has shown the first ones.
_listener: Callable[[str], None] | None = None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def allowed_plugins() -> set[str] | None:
    """Names allowed by DCGAN_LOAD_PLUGINS (None when unset: every installed plugin loads)."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_normalise(part) for part in value.split(",") if part.strip()}


def describe_exception(exc: BaseException) -> str:
    """'Type: first line of the message', for one-line reports."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def warn(message: str) -> None:
    """Report a problem with a plugin once; the command line prints it as one 'Warning:' line."""
    state = _get_state()
    if message in state.warnings:
        return
    state.warnings.append(message)
    if _listener is not None:
        _listener(message)


def set_warning_listener(listener: Callable[[str], None] | None) -> None:
    """Send warnings that arrive from now on to ``listener`` (the CLI prints them as they come)."""
    global _listener
    _listener = listener


def _load_builtins(state: _State) -> None:
    for module_name in BUILTIN_PLUGINS:
        try:
            module = importlib.import_module(module_name)
            state.pm.register(module, name=module_name)
        except Exception as exc:
            raise BuiltinPluginError(
                f"built-in plugin {module_name} failed to load ({describe_exception(exc)}); this is a bug in "
                f"dcgan-cli {__version__}: reinstall it, and report it if it persists"
            ) from exc
        state.info[module_name] = PluginInfo(module_name, __version__, "dcgan-cli", True)


def _load_installed(state: _State) -> None:
    allowed = allowed_plugins()
    seen: set[tuple[str, str]] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist is not None else ""
        key = (_normalise(dist_name), ep.name)
        if key in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(key)
        if allowed is not None and _normalise(ep.name) not in allowed and _normalise(dist_name) not in allowed:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            warn(f"plugin {ep.name!r} ({dist_name}) failed to import and is skipped ({describe_exception(exc)})")
            continue
        try:
            state.pm.register(plugin, name=ep.name)
        except Exception as exc:  # a signature that does not match its spec, a duplicate name
            warn(f"plugin {ep.name!r} could not be registered and is skipped ({describe_exception(exc)})")
            continue
        version = ep.dist.version if ep.dist is not None else "unknown"
        state.info[ep.name] = PluginInfo(ep.name, version, dist_name, False)


def reject_unknown_hooks() -> None:
    """Unregister, with a warning, every plugin that implements a hook no spec defines."""
    state = _get_state()
    while True:
        try:
            state.pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = state.pm.get_name(exc.plugin) or repr(exc.plugin)
            if name in BUILTIN_PLUGINS:
                raise BuiltinPluginError(f"built-in plugin {name} implements a hook no spec defines: {exc}") from None
            state.pm.unregister(exc.plugin)
            state.info.pop(name, None)
            warn(f"plugin {name!r} is skipped: {exc}")


def _get_state() -> _State:
    global _state
    if _state is None:
        pm = pluggy.PluginManager("dcgan")
        pm.add_hookspecs(hookspecs)
        _state = _State(pm=pm)
        try:
            _load_builtins(_state)
            _load_installed(_state)
            reject_unknown_hooks()
        except BaseException:
            _state = None  # the next call tries again instead of using half a manager
            raise
    return _state


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading built-in and installed plugins on first use."""
    return _get_state().pm


def __getattr__(name: str):
    # ``plugins.pm`` is the manager itself (the llm/datasette habit: plugins.pm.register(...)),
    # loaded when first read rather than when this module is imported.
    if name == "pm":
        return get_plugin_manager()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def reload() -> pluggy.PluginManager:
    """Forget every plugin and load them again (after changing DCGAN_LOAD_PLUGINS, say)."""
    global _state
    _state = None
    return get_plugin_manager()


def load_warnings() -> list[str]:
    """Warnings collected while loading plugins and calling their hooks."""
    return list(_get_state().warnings)


def call_each(hook_name: str, per_plugin: Callable[[str], dict] | None = None, **kwargs) -> list[tuple[str, object]]:
    """Call every implementation of a hook on its own, so one broken plugin cannot stop the rest.

    ``per_plugin(plugin_name)`` adds arguments made for each plugin (a ``register`` that
    knows who is registering). Returns (plugin name, result) pairs; a third-party plugin
    that raises is reported as a warning, a built-in one is a BuiltinPluginError.
    """
    state = _get_state()
    caller = getattr(state.pm.hook, hook_name)
    results = []
    # Registration order (built-ins first, in BUILTIN_PLUGINS order, then installed plugins),
    # so the first registration of a name wins.
    for impl in caller.get_hookimpls():
        offered = {**kwargs, **(per_plugin(impl.plugin_name) if per_plugin else {})}
        args = {name: offered[name] for name in impl.argnames if name in offered}
        try:
            results.append((impl.plugin_name, impl.function(**args)))
        except Exception as exc:
            if impl.plugin_name in BUILTIN_PLUGINS:
                raise
            warn(f"plugin {impl.plugin_name!r} failed in {hook_name} and is skipped ({describe_exception(exc)})")
    return results


def plugin_name_of(obj: object) -> str | None:
    return _get_state().pm.get_name(obj)


def list_plugins() -> list[dict]:
    """Every registered plugin with its version, distribution and the hooks it implements."""
    state = _get_state()
    rows = []
    for plugin in state.pm.get_plugins():
        name = state.pm.get_name(plugin)
        info = state.info.get(name) or PluginInfo(name, "unknown", "", False)
        callers = state.pm.get_hookcallers(plugin) or []
        rows.append(
            {
                "name": name,
                "version": info.version,
                "distribution": info.distribution,
                "builtin": info.builtin,
                "hooks": sorted(caller.name for caller in callers),
            }
        )
    rows.sort(key=lambda row: (not row["builtin"], row["name"]))
    return rows
