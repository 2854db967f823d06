"""StoreFactory: opens started stores of one backend for the store suite (see conftest.py)."""

from __future__ import annotations

from typing import Any

from keiko.store import open_store
from keiko.store.base import Store
from keiko.store.config import StoreConfig


class StoreFactory:
    """Opens started stores of one backend on one data location (dir or stream prefix)."""

    def __init__(self, backend: str, base: dict[str, Any]) -> None:
        self.backend = backend
        self.base = base
        self.opened: list[Store] = []

    def config(self, **overrides: dict[str, Any]) -> StoreConfig:
        """The StoreConfig, with sections (``limits={...}``) merged over the base."""
        merged = {key: dict(value) for key, value in self.base.items() if isinstance(value, dict)}
        merged["backend"] = self.base["backend"]
        for section, values in overrides.items():
            merged.setdefault(section, {}).update(values)
        return StoreConfig.model_validate(merged)

    async def __call__(self, **overrides: dict[str, Any]) -> Store:
        store = open_store(self.config(**overrides))
        await store.start()
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in reversed(self.opened):
            await store.shutdown()
