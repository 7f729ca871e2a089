"""One way to collect named things from plugins (datasets, engines, labelers, detectors).

Each registration hook receives a ``register`` function; what it registers lands in a
Registry, which applies one rule to every kind:

- a name is registered once: the first plugin to register it keeps it (built-in plugins
  are called first, so an installed plugin cannot silently replace a built-in);
- registering the same object again under the same name is harmless (one distribution
  found twice on sys.path);
- a different object under a taken name is refused with one warning naming both plugins,
  and the rest of that plugin's registrations still count.

A registration the hook gets wrong (no name, a wrong argument) raises ``RegistrationError``;
the plugin manager reports it as a warning naming the plugin and skips the rest of its hook.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class RegistrationError(ValueError):
    """A plugin called ``register`` with something that cannot be registered."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    item: T
    plugin: str  # the plugin that registered it (its pluggy name)


class Registry(Generic[T]):
    """Things of one ``kind`` by name, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._identity: dict[str, object] = {}
        self.warnings: list[str] = []

    def add(self, name: str, item: T, plugin: str, identity: object | None = None) -> bool:
        """Register ``item`` as ``name`` for ``plugin``; False (and a warning) when the name is taken.

        ``identity`` is what makes two registrations "the same" (the registered class or
        function, when ``item`` wraps it); by default ``item`` itself.
        """
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RegistrationError(
                f"{self.kind} name {name!r} is not a valid name (letters, digits, '_', '.', '+', '-'; at most 64)"
            )
        identity = item if identity is None else identity
        held = self._entries.get(name)
        if held is not None:
            if self._identity[name] is identity:
                return True
            self.warnings.append(
                f"plugin {plugin!r} registers {self.kind} {name!r}, which plugin {held.plugin!r} already "
                f"registered; {held.plugin!r} keeps it (uninstall one of them, or rename the {self.kind})"
            )
            return False
        self._entries[name] = Entry(name, item, plugin)
        self._identity[name] = identity
        return True

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self._entries[name].item

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, default: T | None = None) -> T | None:
        entry = self._entries.get(name)
        return default if entry is None else entry.item

    def plugin_of(self, name: str) -> str:
        return self._entries[name].plugin

    def items(self) -> list[tuple[str, T]]:
        return [(name, entry.item) for name, entry in self._entries.items()]

    def as_dict(self) -> dict[str, T]:
        return dict(self.items())


def collect(hook_name: str, kind: str, make_entry: Callable[..., tuple[str, T, object]]) -> Registry[T]:
    """Call every implementation of ``hook_name`` with a ``register`` built from ``make_entry``.

    ``make_entry(*args, **kwargs)`` turns one call of ``register`` into (name, item, identity),
    raising RegistrationError for a call it cannot accept.
    """
    from dcgan_cli import plugins

    registry: Registry[T] = Registry(kind)

    def register_for(plugin_name: str):
        def register(*args, **kwargs) -> None:
            try:
                name, item, identity = make_entry(*args, **kwargs)
            except TypeError as exc:  # a wrong argument to register()
                raise RegistrationError(f"register() of a {kind}: {exc}") from None
            registry.add(name, item, plugin_name, identity)

        return register

    plugins.call_each(hook_name, per_plugin=lambda plugin_name: {"register": register_for(plugin_name)})
    for message in registry.warnings:
        plugins.warn(message)
    return registry
