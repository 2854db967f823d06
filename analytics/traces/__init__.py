"""Spans: decoding, trace assembly and per-trace analysis (critical path, self-time,
error origin)."""
