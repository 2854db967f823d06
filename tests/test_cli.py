"""The `keiko` command line: help at every level, exit statuses, the optional demo command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keiko.cli import build_parser, main

COMMANDS = [
    ["run"],
    ["config"],
    ["config", "check"],
    ["config", "defaults"],
    ["config", "schema"],
    ["config", "docs"],
    ["store"],
    ["store", "stats"],
    ["store", "trace-ids"],
    ["store", "tail"],
]


def test_top_level_help_lists_every_command_with_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "config", "store"):
        assert f"    {command} " in out
    assert "examples:" in out and "keiko config check keiko.yaml" in out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: keiko {' '.join(command)}")
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 5, f"no real description for {command}: {description!r}"
    if command != ["config"] and command != ["store"]:  # groups show their examples above
        assert "example" in out and f"keiko {' '.join(command)}" in out.split("example")[-1]


def test_run_help_says_how_to_stop_reload_and_send_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "SIGTERM" in out and "SIGHUP" in out and "OTEL_EXPORTER_OTLP_ENDPOINT" in out
    assert "--config" in out and "KEIKO_CONFIG" in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: keiko" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["frobnicate"], ["run", "--bogus"], ["config"], ["store", "trace-ids", "--since", "x"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("keiko 0.")


def test_demo_command_is_there_when_its_module_is() -> None:
    try:
        import keiko.demo.command  # noqa: F401
    except ModuleNotFoundError:
        expected = False
    else:
        expected = True
    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert ("demo" in subcommands) is expected


def test_module_and_console_script_entry_points_work() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keiko.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("keiko ")


def test_store_stats_table_shows_groups_lag_and_expiry() -> None:
    from keiko.commands.store import format_stats
    from keiko.store.base import GroupStats, StoreStats, StreamStats

    stats = StoreStats(
        "embedded",
        "/data",
        [
            StreamStats("events", 0, None, 0, 0, 0, None, None),
            StreamStats(
                "traces",
                1204,
                1_204_000,
                3 * 1024**2,
                7,
                1210,
                1_714_557_600_000_000_000,
                1_714_557_660_000_000_000,
                [GroupStats("spanmetrics", 1200, 10, 20480)],
                6,
            ),
        ],
        disk_bytes=5 * 1024**2,
    )
    lines = format_stats(stats).splitlines()
    assert lines[0] == "store: embedded at /data, 5.0 MiB on disk"
    assert lines[2].split() == [
        "STREAM",
        "RECORDS",
        "ITEMS",
        "BYTES",
        "OFFSETS",
        "OLDEST",
        "NEWEST",
    ]
    assert lines[3].split() == ["events", "0", "-", "0", "B", "0-0", "-", "-"]
    assert lines[4].split() == [
        "traces",
        "1,204",
        "1,204,000",
        "3.0",
        "MiB",
        "7-1210",
        "2024-05-01T10:00:00.000000Z",
        "2024-05-01T10:01:00.000000Z",
    ]
    assert lines[5] == "  group spanmetrics: committed 1,200, lag 10 records (20.0 KiB)"
    assert lines[6] == "  6 records expired before a group read them"
