"""Name -> class registries for agents and dataset makers.

The engine never imports an agent or env module by name: it asks the registry, which
imports `rlcore.agents` / `rlcore.envs` once so that their decorators run.
"""
from __future__ import annotations

import importlib
from typing import Callable, TypeVar

from rlcore.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, KeyError):
    """A name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: dict[str, object] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj
        return decorator

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.package)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str):
        self._load()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


AGENTS = Registry("agent", "rlcore.agents")
DATASETS = Registry("dataset", "rlcore.envs")

register_agent = AGENTS.register
register_dataset = DATASETS.register
