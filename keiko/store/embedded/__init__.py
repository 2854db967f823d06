"""The embedded store backend (SQLite WAL segments on local disk)."""

from keiko.store.embedded.store import EmbeddedStore

__all__ = ["EmbeddedStore"]
