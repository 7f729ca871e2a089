"""The plugin manager.

Built-in modules are registered exactly like third-party plugins; third-party ones come
from the ``dcgan`` entry-point group. A plugin that fails to import, to register or inside
a registration hook is reported once as a warning naming it, and everything else works.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from dataclasses import dataclass, field

import pluggy

from dcgan_cli import __version__, hookspecs

ENTRY_POINT_GROUP = "dcgan"
LOAD_PLUGINS_ENV = "DCGAN_LOAD_PLUGINS"

# Ordinary plugin modules that ship inside dcgan-cli.
BUILTIN_PLUGINS = (
    "dcgan_cli.data",
    "dcgan_cli.engines",
    "dcgan_cli.scenes",
    "dcgan_cli.detectors",
    "dcgan_cli.labelers",
    "dcgan_cli.commands.train",
    "dcgan_cli.commands.sample",
    "dcgan_cli.commands.export",
    "dcgan_cli.commands.bench",
    "dcgan_cli.commands.walk",
    "dcgan_cli.commands.concepts",
    "dcgan_cli.commands.arithmetic",
    "dcgan_cli.commands.forget",
    "dcgan_cli.commands.report",
    "dcgan_cli.commands.datasets",
    "dcgan_cli.commands.plugins",
)


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


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def allowed_plugins() -> set[str] | None:
    """Names allowed by DCGAN_LOAD_PLUGINS (None when unset: every installed plugin loads)."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_normalise(part) for part in value.split(",") if part.strip()}


def _warn(state: _State, message: str) -> None:
    if message not in state.warnings:
        state.warnings.append(message)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _register(state: _State, plugin: object, name: str, info: PluginInfo) -> None:
    try:
        state.pm.register(plugin, name=name)
    except Exception as exc:  # a signature that does not match its spec, a duplicate name
        _warn(state, f"plugin {name!r} could not be registered and is skipped ({_describe(exc)})")
        return
    state.info[name] = info


def _load(state: _State) -> None:
    for module_name in BUILTIN_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            _warn(state, f"built-in plugin {module_name!r} failed to import and is skipped ({_describe(exc)})")
            continue
        _register(state, module, module_name, PluginInfo(module_name, __version__, "dcgan-cli", True))

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
            _warn(state, f"plugin {ep.name!r} ({dist_name}) failed to import and is skipped ({_describe(exc)})")
            continue
        version = ep.dist.version if ep.dist is not None else "unknown"
        _register(state, plugin, ep.name, PluginInfo(ep.name, version, dist_name, False))
    reject_unknown_hooks()


def reject_unknown_hooks() -> None:
    """Unregister, with a warning, every plugin that implements a hook no spec defines."""
    state = _get_state()
    while True:
        try:
            state.pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = state.pm.get_name(exc.plugin) or repr(exc.plugin)
            state.pm.unregister(exc.plugin)
            state.info.pop(name, None)
            _warn(state, f"plugin {name!r} is skipped: {exc}")


def _get_state() -> _State:
    global _state
    if _state is None:
        pm = pluggy.PluginManager("dcgan")
        pm.add_hookspecs(hookspecs)
        _state = _State(pm=pm)
        _load(_state)
    return _state


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading built-in and installed plugins on first use."""
    return _get_state().pm


pm = get_plugin_manager  # short alias for plugin authors' tests: dcgan_cli.plugins.pm().register(...)


def reload() -> pluggy.PluginManager:
    """Forget every plugin and load them again (after changing DCGAN_LOAD_PLUGINS, say)."""
    global _state
    _state = None
    return get_plugin_manager()


def load_warnings() -> list[str]:
    """Warnings collected while loading plugins and calling registration hooks."""
    return list(_get_state().warnings)


def call_each(hook_name: str, **kwargs) -> list[tuple[str, object]]:
    """Call every implementation of a hook on its own, so one broken plugin cannot stop the rest.

    Returns (plugin name, result) pairs; a plugin that raises is reported as a warning.
    """
    state = _get_state()
    caller = getattr(state.pm.hook, hook_name)
    results = []
    # Registration order: built-ins first, in BUILTIN_PLUGINS order, then installed plugins.
    for impl in caller.get_hookimpls():
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        try:
            results.append((impl.plugin_name, impl.function(**args)))
        except Exception as exc:
            _warn(state, f"plugin {impl.plugin_name!r} failed in {hook_name} and is skipped ({_describe(exc)})")
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
