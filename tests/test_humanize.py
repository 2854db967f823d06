"""keiko/humanize.py and keiko/listeners.py: what people read in the CLI, docs and logs."""

from __future__ import annotations

import pytest

from keiko import humanize
from keiko.config.load import validate
from keiko.listeners import listeners, otel_sdk_hints
from keiko.units import parse_bytes, parse_duration


@pytest.mark.parametrize("value", [0, 1, 1000, 1024, 1536, 10 * 1024**3, 256 * 1024**2 + 1])
def test_sizes_round_trip(value: int) -> None:
    assert parse_bytes(humanize.size(value)) == value


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (604800, "7d"),
        (5400, "1h30m"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (0, "0s"),
        (90061, "1d1h1m1s"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert humanize.duration(seconds) == text
    assert parse_duration(text) == seconds


def test_approx_size_and_times() -> None:
    assert humanize.approx_size(None) == "-"
    assert humanize.approx_size(512) == "512 B"
    assert humanize.approx_size(1536) == "1.5 KiB"
    assert humanize.rfc3339(None) is None
    assert humanize.rfc3339(1_714_557_600_123_456_789) == "2024-05-01T10:00:00.123456Z"


def test_listeners_follow_enabled_flags_and_tls() -> None:
    config = validate(
        {
            "api": {"endpoint": "0.0.0.0:8470"},
            "receivers": {"otlp": {"grpc": {"endpoint": "[::]:4317"}, "http": {"enabled": False}}},
        }
    )
    found = listeners(config)
    assert [(item.name, item.url) for item in found] == [
        ("api", "http://0.0.0.0:8470"),
        ("receivers.otlp.grpc", "http://[::]:4317"),
    ]
    assert found[0].local_url == "http://127.0.0.1:8470"
    assert otel_sdk_hints(found) == ["OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317"]
    disabled = validate({"api": {"enabled": False}, "receivers": {"otlp": {"enabled": False}}})
    assert listeners(disabled) == []
