"""The streaming store: one interface (keiko.store.base.Store), two backends."""

from __future__ import annotations

from keiko.store.base import Consumer, KeyValue, Store
from keiko.store.config import Backend, StoreConfig


def open_store(config: StoreConfig, *, read_only: bool | None = None) -> Store:
    """Build the configured backend (not started: call ``await store.start()``).

    ``read_only``: embedded only. None opens for writing unless another process owns the
    data directory (then read-only, for `keiko store stats`); False insists on writing.
    """
    if config.backend is Backend.NATS:
        from keiko.store.nats import NatsStore

        return NatsStore(config)
    from keiko.store.embedded import EmbeddedStore

    return EmbeddedStore(config, read_only=read_only)


__all__ = ["Consumer", "KeyValue", "Store", "StoreConfig", "open_store"]
