"""Checkpoints in a key-value bucket: named parts, compressed, chunked, manifest written last.

A checkpoint is a set of named byte strings (series table, decoder, detectors ...) plus the
stream offset they cover. The parts are concatenated, compressed with zstd and split into
chunks of at most ``chunk_bytes`` (NATS KV values must fit in one message). The chunks of a
new checkpoint go under a new generation's keys, then the manifest (JSON: generation,
offset, part sizes, checksum) replaces the old one, then the old generation's chunks are
deleted. A crash at any point leaves the previous manifest pointing at intact chunks.

Keys: ``<name>/manifest`` and ``<name>/<generation>/<chunk index>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass

import zstandard

from keiko.store.base import KeyValue

log = logging.getLogger(__name__)
FORMAT = 1
ZSTD_LEVEL = 3


class CheckpointError(Exception):
    """A stored checkpoint cannot be used (missing chunk, bad checksum, unknown format)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A restored checkpoint: its parts and the last stream offset their state includes."""

    parts: dict[str, bytes]
    offset: int
    generation: int
    saved_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class Saved:
    """What one save wrote."""

    generation: int
    raw_bytes: int  # the parts before compression
    stored_bytes: int  # compressed, over every chunk
    chunks: int
    seconds: float


class CheckpointStore:
    """Saves and loads the checkpoint ``name`` in a bucket. One writer at a time."""

    def __init__(self, kv: KeyValue, name: str, chunk_bytes: int) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be at least 1")
        self.kv = kv
        self.name = name
        self.chunk_bytes = chunk_bytes
        self.generation = 0  # of the last checkpoint saved or loaded

    @property
    def manifest_key(self) -> str:
        return f"{self.name}/manifest"

    def _chunk_key(self, generation: int, index: int) -> str:
        return f"{self.name}/{generation}/{index}"

    async def save(self, parts: dict[str, bytes], offset: int) -> Saved:
        """Write a new checkpoint; the previous one stays valid until the manifest is."""
        began = time.perf_counter()
        blob = b"".join(parts.values())
        packed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(blob)
        generation = self.generation + 1
        chunks = [packed[i : i + self.chunk_bytes] for i in range(0, len(packed), self.chunk_bytes)]
        for index, chunk in enumerate(chunks):
            await self.kv.put(self._chunk_key(generation, index), chunk)
        manifest = {
            "format": FORMAT,
            "generation": generation,
            "offset": offset,
            "saved_at": time.time(),
            "parts": [[name, len(data)] for name, data in parts.items()],
            "chunks": len(chunks),
            "stored_bytes": len(packed),
            "sha256": hashlib.sha256(packed).hexdigest(),
        }
        await self.kv.put(self.manifest_key, json.dumps(manifest).encode())
        self.generation = generation
        await self._delete_stale(keep=generation)
        return Saved(generation, len(blob), len(packed), len(chunks), time.perf_counter() - began)

    async def load(self) -> Checkpoint | None:
        """The saved checkpoint, None when there is none; CheckpointError when unusable."""
        raw = await self.kv.get(self.manifest_key)
        if raw is None:
            return None
        try:
            manifest = json.loads(raw)
            if manifest.get("format") != FORMAT:
                raise CheckpointError(f"unknown checkpoint format {manifest.get('format')!r}")
            generation = int(manifest["generation"])
            chunks = [
                await self.kv.get(self._chunk_key(generation, i))
                for i in range(int(manifest["chunks"]))
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"unreadable checkpoint manifest: {exc}") from exc
        if any(chunk is None for chunk in chunks):
            raise CheckpointError(f"checkpoint generation {generation}: a chunk is missing")
        packed = b"".join(c for c in chunks if c is not None)
        if hashlib.sha256(packed).hexdigest() != manifest["sha256"]:
            raise CheckpointError(f"checkpoint generation {generation}: checksum mismatch")
        try:
            blob = zstandard.ZstdDecompressor().decompress(packed)
        except zstandard.ZstdError as exc:
            raise CheckpointError(f"checkpoint generation {generation}: {exc}") from exc
        parts, position = {}, 0
        for name, size in manifest["parts"]:
            parts[str(name)] = blob[position : position + int(size)]
            position += int(size)
        if position != len(blob):
            raise CheckpointError(f"checkpoint generation {generation}: part sizes disagree")
        self.generation = generation
        return Checkpoint(parts, int(manifest["offset"]), generation, float(manifest["saved_at"]))

    async def _delete_stale(self, keep: int) -> None:
        """Chunks of other generations (the previous one, or leftovers of a crashed save)."""
        prefix, own = f"{self.name}/", f"{self.name}/{keep}/"
        for key in await self.kv.keys():
            if key.startswith(prefix) and key != self.manifest_key and not key.startswith(own):
                try:
                    await self.kv.delete(key)
                except Exception as exc:  # a leftover costs space, not correctness
                    log.warning("checkpoint: could not delete stale chunk %s: %s", key, exc)
