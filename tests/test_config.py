"""`keiko config check | defaults | schema | docs` and the config reference in docs/config.md."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from keiko import configref
from keiko.cli import main
from keiko.config import load_config
from keiko.reload import flat

ROOT = Path(__file__).resolve().parent.parent


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["config", "check", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keiko.yaml"
    path.write_text(text)
    return path


def test_good_config_is_ok_and_summarised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """
store:
  embedded: {path: /var/lib/keiko, durability: power}
  retention: {max_age: 2d}
api:
  endpoint: 0.0.0.0:9000
  auth: {bearer_tokens: [s3cret]}
receivers:
  otlp:
    http: {enabled: false}
""",
    )
    status, out, err = check(path, capsys)
    assert status == 0, err
    assert out.startswith(f"config OK: {path}")
    assert "store: embedded at /var/lib/keiko (durability power)" in out
    assert "listen: api on http://0.0.0.0:9000" in out
    assert "receivers.otlp.grpc on http://127.0.0.1:4317" in out
    assert "receivers.otlp.http" not in out  # disabled
    assert "api bearer auth: on" in out
    assert "s3cret" not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the key, the bad value and what is allowed
        ("store:\n  backend: sqlite\n", ["store.backend", "'sqlite'", "'embedded' or 'nats'"]),
        (
            "store:\n  retention:\n    max_age: forever\n",
            ["store.retention.max_age", "'forever'", "30s", "7d"],
        ),
        ("api:\n  endpoint: localhost\n", ["api.endpoint", "'localhost'", "host:port"]),
        ("logging:\n  level: loud\n", ["logging.level", "'loud'", "'debug'", "'error'"]),
        ("store:\n  nats:\n    replicas: 9\n", ["store.nats.replicas", "9", "5"]),
        # an unknown key lists the allowed ones
        (
            "store:\n  embeded:\n    path: x\n",
            ["store.embeded: unknown key", "backend, embedded, limits, nats, retention"],
        ),
        (
            "receivers:\n  otlp:\n    grpc:\n      port: 4317\n",
            ["receivers.otlp.grpc.port: unknown key", "enabled, endpoint, tls"],
        ),
        ("receivers:\n  zipkin: {}\n", ["receivers.zipkin: unknown component", "otlp"]),
        (
            "api:\n  tls:\n    cert_file: /nonexistent.pem\n    key_file: /nonexistent.key\n",
            ["api.tls", "cert_file", "/nonexistent.pem", "does not exist"],
        ),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("store: [\n", ["not valid YAML"]),
    ],
)
def test_bad_config_names_key_value_and_what_is_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    status, out, err = check(write(tmp_path, text), capsys)
    assert status == 2
    assert out == ""
    for part in expected:
        assert part in err, f"{part!r} missing from:\n{err}"


def test_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, "api:\n  endpoint: nope\n  shutdown_grace: soon\nlogging:\n  format: xml\n"
    )
    status, _, err = check(path, capsys)
    assert status == 2
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3, err


def test_missing_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = check(tmp_path / "absent.yaml", capsys)
    assert status == 2 and "cannot read the config file" in err


def test_environment_overrides_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "api:\n  endpoint: 127.0.0.1:9000\n")
    monkeypatch.setenv("KEIKO_API__ENDPOINT", "127.0.0.1:9100")
    monkeypatch.setenv("KEIKO_RECEIVERS__OTLP__GRPC__ENABLED", "false")
    status, out, _ = check(path, capsys)
    assert status == 0
    assert "(with KEIKO_API__ENDPOINT, KEIKO_RECEIVERS__OTLP__GRPC__ENABLED)" in out
    assert "api on http://127.0.0.1:9100" in out and "receivers.otlp.grpc" not in out
    monkeypatch.setenv("KEIKO_STORE__LIMITS__RETRY_AFTER", "never")
    status, _, err = check(path, capsys)
    assert status == 2 and "store.limits.retry_after" in err and "KEIKO_STORE__LIMITS" in err


def test_defaults_round_trip_through_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "defaults"]) == 0
    text = capsys.readouterr().out
    assert "# Data directory (created if missing)." in text  # descriptions as comments
    assert "max_age: 7d" in text and "max_bytes: 10GiB" in text  # units people write
    path = write(tmp_path, text)
    status, _, err = check(path, capsys)
    assert status == 0, err
    assert flat(load_config(path, env={})) == flat(load_config(None, env={}))


def test_schema_is_a_json_schema_that_accepts_the_defaults_and_refuses_typos(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    assert validator.is_valid(yaml.safe_load(configref.defaults_yaml()))
    assert validator.is_valid({"receivers": {"otlp": {"grpc": {"endpoint": "0.0.0.0:4317"}}}})
    assert not validator.is_valid({"receivers": {"otlp": {"grcp": {}}}})
    assert not validator.is_valid({"store": {"backend": "sqlite"}})


def test_docs_config_md_is_the_generated_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "docs"]) == 0
    generated = capsys.readouterr().out
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == generated, (
        "docs/config.md is out of date: run `.venv/bin/keiko config docs > docs/config.md`"
    )


def test_docs_cover_every_key_of_the_full_config() -> None:
    text = configref.docs_markdown()
    for key in flat(configref.full_model()()):
        *parents, leaf = key.split(".")
        if not parents:  # a section without installed components
            assert f"## {leaf}\n" in text
            continue
        assert f"## {'.'.join(parents)}\n" in text, f"no section for {key}"
        assert f"| `{leaf}` |" in text, f"{key} is not documented"
