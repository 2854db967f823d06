"""keiko's Grafana dashboards: the committed JSON is what the code generates, and every
panel's PromQL, run by a real Prometheus scraping a real `keiko run` fed by `keiko demo`
(a cart latency fault after 35 s, so anomalies, an incident, SLO burn and alerts exist),
parses, returns data (unless the generator marks it ``may_be_empty`` with a reason) and
names only metrics keiko exports.

One keiko, one Prometheus and one demo serve every dashboard's test (module scope): the
demo alone takes about 80 s.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fixtures.cgroups import CGROUP_FS, cgroup
from fixtures.keiko import KeikoProcess, free_port
from fixtures.prometheus import Prometheus

from dashboards.build import generate
from dashboards.panels import BOARDS
from dashboards.render import REF_IDS
from dashboards.spec import Board, Query, TextVariable, Variable
from ebpf.diagnose import bpf_unusable_reason

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
# Grafana's own variables, as Grafana would expand them for a dashboard over the demo: a
# window long enough to cover the whole run, so rates and quantiles have points.
BUILTINS = {"$__rate_interval": "3m", "$__interval": "15s", "$__range": "5m"}
V1_MEMORY_ROOT = CGROUP_FS / "memory"
HOG = "b = bytearray(b'x') * (200 << 20)"  # 200 MiB of RSS: OOM-killed under a 32 MiB limit


# -- the committed JSON ----------------------------------------------------------------------


def test_committed_files_are_what_the_code_generates(tmp_path: Path) -> None:
    written = generate(tmp_path, "http://prometheus:9090", "/var/lib/grafana/dashboards/keiko")
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    committed = {
        p.relative_to(DASHBOARDS).as_posix()
        for sub in ("json", "provisioning")
        for p in (DASHBOARDS / sub).rglob("*")
        if p.is_file()
    }
    assert committed == names, "run `.venv/bin/python -m dashboards.build` and commit"
    for name in sorted(names):
        assert (DASHBOARDS / name).read_text() == (tmp_path / name).read_text(), (
            f"dashboards/{name} differs from what dashboards/panels/*.py generates: run "
            "`.venv/bin/python -m dashboards.build` and commit"
        )


def test_dashboards_use_the_provisioned_datasource_and_unique_ids() -> None:
    datasource = yaml.safe_load((DASHBOARDS / "provisioning/datasources/keiko.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for path in sorted((DASHBOARDS / "json").glob("*.json")):
        board = json.loads(path.read_text())
        assert path.stem == board["uid"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == uid, (path.name, panel["title"])


# -- metric names in PromQL ------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label names and
    string arguments left out)."""
    bare = _LABEL_LISTS.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub('""', expr)))
    return {
        m.group(1)
        for m in _IDENT.finditer(bare)
        if not m.group(2) and m.group(1).lower() not in _KEYWORDS
    }


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, pod) (rate(a_bucket{x=~"$y", le!="1"}[5m]))', {"a_bucket"}),
        ('label_replace(b, "stage", "$1", "c", "(.*)") or d{e="f"} * 0', {"b", "d"}),
        ("time() - keiko_x_seconds", {"keiko_x_seconds"}),
        ("topk(10, max by (s) (m)) / on (s) group_left n", {"m", "n"}),
    ],
)
def test_metric_names_finds_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def exported_names(exposition: str) -> set[str]:
    """Every series name keiko's /metrics declares (# TYPE), histogram suffixes included."""
    names = set()
    for name, kind in _TYPE.findall(exposition):
        names.add(name)
        names.update(name + s for s in _SUFFIXES.get(kind, ()))
        if kind == "counter" and not name.endswith("_total"):
            names.add(name + "_total")
    return names


def declared_ebpf_counters() -> set[str]:
    """Counters keiko's eBPF probes declare (``"keiko.ebpf.tcp.retransmits"`` ->
    ``keiko_ebpf_tcp_retransmits_total``): the agent exports a family only once it has a
    point, so a quiet node (no retransmit, no OOM kill) lacks them on /metrics."""
    text = "\n".join(p.read_text() for p in (ROOT / "ebpf").rglob("*.py"))
    return {
        name.replace(".", "_") + "_total" for name in re.findall(r'"(keiko\.ebpf\.[a-z_.]+)"', text)
    }


EBPF_DECLARED = declared_ebpf_counters()


# -- the live stack ----------------------------------------------------------------------------


@dataclass
class Live:
    """What the dashboards' queries run against."""

    prometheus: Prometheus
    exported: set[str]
    oom_killed: bool


def keiko_config(receiver_port: int) -> dict[str, Any]:
    """deploy/keiko-demo.yaml (incidents to the demo's webhook) plus SLOs, a threshold rule,
    a dry-run remediation hook and the scaling advisor, so every dashboard has data."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy/keiko-demo.yaml").read_text())
    router = config["alerting"]["router"]
    hook = f"http://127.0.0.1:{receiver_port}/keiko-demo"
    for receiver in router["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = hook
    router["route"]["routes"][0]["remediation"] = ["demo-hook"]
    router["remediation"] = {
        "actions": [{"name": "demo-hook", "type": "webhook", "url": hook, "verify_after": "5s"}]
    }
    config["alerting"]["slo"] = {
        "objectives": {
            "cart-availability": {"service": "cart", "kind": "availability", "target": 0.999},
            "checkout-latency": {
                "service": "checkout",
                "kind": "latency",
                "target": 0.99,
                "threshold": "100ms",
            },
        },
        "rules": {
            "inflight": {"metric": "demo.service.inflight", "op": ">=", "threshold": 0},
        },
    }
    config["analytics"] = {
        "scaling": {"enabled": True, "advisor": {"step_s": 2}},
        "incidents": {"settle": "5s"},
    }
    return config


def oom_kill() -> bool:
    """Get one process OOM-killed in a memory-limited v1 cgroup; whether it happened."""
    if os.geteuid() != 0 or not (V1_MEMORY_ROOT / "memory.limit_in_bytes").exists():
        return False
    with cgroup(V1_MEMORY_ROOT) as memory:
        (memory.path / "memory.limit_in_bytes").write_text(str(32 << 20))
        hog = subprocess.run(
            ["sh", "-c", memory.shell_enter() + 'exec "$@"', "sh", sys.executable, "-c", HOG],
            capture_output=True,
            timeout=60,
        )
    return hog.returncode == -signal.SIGKILL


def wait_for(prometheus: Prometheus, expr: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not prometheus.query(expr):
        assert time.monotonic() < deadline, f"Prometheus never had {expr}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("dashboards")
    receiver = free_port()
    kp = KeikoProcess(tmp / "keiko", keiko_config(receiver))
    scrape = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "keiko",
                "scrape_interval": "1s",
                # the `node` label deploy/'s ServiceMonitor relabels from the pod's node
                "static_configs": [
                    {"targets": [f"127.0.0.1:{kp.ports['api']}"], "labels": {"node": "node-1"}}
                ],
            }
        ],
    }
    try:
        kp.start()
        with Prometheus(tmp / "prometheus", scrape) as prometheus:
            bpf = bpf_unusable_reason() is None
            if bpf:  # the proc probe must be loaded to see the OOM kill
                wait_for(prometheus, 'keiko_ebpf_probe_up{probe="proc"} == 1')
            oom_killed = bpf and oom_kill()
            demo = subprocess.run(
                [
                    *(sys.executable, "-m", "keiko.cli", "demo"),
                    *("--api", kp.api_url, "--otlp-endpoint", f"http://{kp.otlp_grpc}"),
                    *("--fault", "cart:latency=200ms,after=35s", "--duration", "50"),
                    *("--receiver", f"127.0.0.1:{receiver}"),
                ],
                capture_output=True,
                text=True,
                timeout=150,
                stdin=subprocess.DEVNULL,
            )
            assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
            # The incident's analysis and the remediation's verification are the last to
            # land; then two more scrapes so Prometheus has keiko's final state.
            wait_for(prometheus, "keiko_incident_root_cause_score")
            wait_for(prometheus, "keiko_remediation_verified_total")
            time.sleep(2.5)
            exposition = httpx.get(kp.api_url + "/metrics", timeout=10).text
            yield Live(prometheus, exported_names(exposition), oom_killed)
    finally:
        if kp.running:
            kp.stop()
        print(f"--- {kp.log_path} ---\n{kp.log_text()[-4000:]}")


# -- the queries -----------------------------------------------------------------------------


def instant(prometheus: Prometheus, expr: str) -> dict[str, Any]:
    """Prometheus' answer to an instant query, errors included (not raised)."""
    r = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
    return dict(r.json())


def variable_values(live: Live, v: Variable) -> list[str]:
    """The values Grafana would offer for ``v``: its label_values query, then its regex."""
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", v.query)
    assert m, f"${v.name}: not label_values(metric, label): {v.query}"
    r = httpx.get(
        f"{live.prometheus.url}/api/v1/series", params={"match[]": m.group(1)}, timeout=10
    )
    assert r.json()["status"] == "success", r.text
    values = sorted({s[m.group(2)] for s in r.json()["data"] if s.get(m.group(2))})
    if v.regex:
        pattern = re.compile(v.regex.strip("/"))
        values = sorted({g.group(1) for x in values if (g := pattern.search(x))})
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's variables replaced, ``${name}`` and ``$name`` forms."""
    for name, value in sorted({**values, **BUILTINS}.items(), key=lambda kv: -len(kv[0])):
        bare = name.removeprefix("$")
        expr = expr.replace("${" + bare + "}", value).replace("$" + bare, value)
    return expr


def marks(board: Board) -> dict[str, Query]:
    """The generator's queries by expression: where ``may_be_empty`` is said."""
    return {q.expr: q for q in board.queries()}


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one series with a number (NaN from a quantile over no samples is not)."""
    return any(not math.isnan(float(s["value"][1])) for s in result)


def check_board(live: Live, board: Board) -> list[str]:
    """Every problem with the board's queries, one line each."""
    problems: list[str] = []
    values = {}
    for v in board.variables:
        if isinstance(v, TextVariable):
            continue
        found = variable_values(live, v)
        # a real value where the demo has one, All (.*) where it has none (e.g. namespace:
        # host processes have an empty namespace label)
        # (escaped as Grafana escapes a value inside a PromQL regex string)
        values[v.name] = re.escape(found[0]).replace("\\", "\\\\") if found else ".*"
    specs = marks(board)
    data = json.loads((DASHBOARDS / "json" / f"{board.uid}.json").read_text())
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            where = f"{board.uid} / {panel['title']} / {target['refId']}"
            spec = specs.get(target["expr"])
            if spec is None:
                problems.append(f"{where}: not in dashboards/panels (regenerate the JSON)")
                continue
            expr = substitute(target["expr"], values)
            known = live.exported | (EBPF_DECLARED if spec.may_be_empty else set())
            unknown = metric_names(expr) - known
            if unknown:
                problems.append(f"{where}: keiko exports no {sorted(unknown)}")
            answer = instant(live.prometheus, expr)
            if answer.get("status") != "success":
                problems.append(f"{where}: {answer.get('error')}\n    {expr}")
            elif not has_data(answer["data"]["result"]):
                if spec.may_be_empty is None:
                    problems.append(f"{where}: no data\n    {expr}")
                else:  # shown with -s / -rP: which marked panels were empty in this run
                    print(f"{where}: empty, as allowed: {spec.may_be_empty}")
    return problems


NON_EBPF = [b for b in BOARDS if b.uid != "keiko-nodes"]


@pytest.mark.slow
@pytest.mark.parametrize("board", NON_EBPF, ids=[b.uid for b in NON_EBPF])
def test_panel_queries_parse_return_data_and_name_exported_metrics(
    live: Live, board: Board
) -> None:
    assert not [q for q in board.queries() if "keiko_ebpf_" in q.expr], "eBPF outside nodes"
    problems = check_board(live, board)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_node_panels_against_the_ebpf_agent(live: Live) -> None:
    reason = bpf_unusable_reason()
    if reason is not None:
        pytest.skip(f"the eBPF agent cannot run here, so its panels have no data: {reason}")
    (board,) = [b for b in BOARDS if b.uid == "keiko-nodes"]
    problems = check_board(live, board)
    assert not problems, "\n".join(problems)
    if live.oom_killed:  # then the OOM panel, empty in a quiet cluster, must show it
        (oom,) = [q for q in board.queries() if "oom_kills" in q.expr]
        values = {"node": ".*", "namespace": ".*"}
        result = instant(live.prometheus, substitute(oom.expr, values))["data"]["result"]
        assert has_data(result), "the OOM kill the test caused is not on the OOM panel"


@pytest.mark.slow
def test_every_variable_offers_values(live: Live) -> None:
    # The demo's services are host processes: no pod, so no eBPF namespace to offer.
    exempt = {("keiko-nodes", "namespace")}
    if bpf_unusable_reason() is not None:
        exempt |= {("keiko-nodes", "node")}
    empty = [
        f"{b.uid} ${v.name}: {v.query}"
        for b in BOARDS
        for v in b.variables
        if isinstance(v, Variable)
        and (b.uid, v.name) not in exempt
        and not variable_values(live, v)
    ]
    assert not empty, "\n".join(empty)


def test_ref_ids_are_unique_per_panel() -> None:
    for board in BOARDS:
        for panel in board.panels():
            refs = [q.ref or REF_IDS[i] for i, q in enumerate(panel.queries)]
            assert len(refs) == len(set(refs)), (board.uid, panel.title)
