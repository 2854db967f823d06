#!/usr/bin/env python3
"""Evaluate keiko's root-cause ranking live: inject faults into `keiko demo`'s shop.

For each fault, a fresh `keiko run` starts (its own temp data dir, free loopback ports),
`keiko demo --duration 50 --fault TARGET:SPEC,after=35s --json` sends the shop's traces,
metrics and logs to it (the detectors learn 35 s of healthy traffic, then the fault
begins), and the script reads every version of every incident from keiko's events stream
(``GET /api/v1/streams/events/records``), waiting for one that keiko analysed. Then keiko
is stopped with SIGTERM and the next case starts. This is the multi-signal evaluation of
issue 5: metrics (the SDK's HTTP and gen_ai histograms) and traces together, on a system
the RCA was not tuned on case by case.

Recorded per case: whether an incident holds the fault's anomalies (those stamped at or
after the fault start, less 1 s of slack; the start is when the demo announces its first
request, plus ``after``), the rank of the faulty target among its ranked root causes (1
= first; missing = not in the top 5 keiko returns), the top 3 names, the detection delay
(fault start -> the first such anomaly) and the time to an answer (fault start -> the
``time`` of the first analysed version that holds them). The rank is that of this first
answer, what an operator sees first; the latest version read (keiko re-analyses as
anomalies join, at most once a minute) is recorded too. An incident can be opened before
the fault by an anomaly of the healthy period and then absorb the fault's anomalies
(they are near in time and in the call graph): it is still the one evaluated, and how
early it opened is shown. Incidents that never hold an anomaly of the fault are counted
as false alarms. Because such an incident can be kept open by noise alone (its ranking
then comes from the traces), two columns say what the detectors saw: "own", the first
anomaly of the faulty service itself (or of the caller that records an uninstrumented
dependency) after the fault began, and "hlth", the anomalies of the healthy period.

What counts as correct:

* checkout, cart, payment, llm-agent: the ranked service must be that service.
* redis (cart's fake Redis) and model-api (llm-agent's external LLM API) are not
  instrumented: they send nothing, and show only as their caller's CLIENT spans (with
  ``peer.service``), which keiko's service graph turns into a virtual node. A root cause
  naming the dependency itself, or its only caller (cart for redis, llm-agent for
  model-api: where its time and errors are recorded), is correct. The table marks which
  of the two was named.
* frontend, the entry point, is not in the default list (every request passes through
  it, so the fault would be both cause and symptom); ``--faults frontend:...`` still runs it.

AC@k = the share of cases whose faulty target is among the first k root causes of the
evaluated incident (a case with no incident counts as a miss).

    .venv/bin/python benchmarks/rca_live_eval.py                      # 12 cases, ~13 min
    .venv/bin/python benchmarks/rca_live_eval.py --faults cart:latency=200ms payment:errors=0.3
    .venv/bin/python benchmarks/rca_live_eval.py --repeat 3 --json > out.json

Each case's keiko config and log, the demo's output and the incident events read are kept
under ``benchmarks/out/rca_live_eval/<UTC start time>/`` (``--out`` to choose).
Exit codes: 0 every case ran, 1 a case could not run (keiko did not start, the demo
failed to send), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "rca_live_eval"
HOST = "127.0.0.1"
KEIKO = [sys.executable, "-m", "keiko.cli"]
TARGETS = ("frontend", "checkout", "cart", "payment", "llm-agent", "redis", "model-api")
DEFAULT_TARGETS = ("checkout", "cart", "payment", "llm-agent", "redis", "model-api")
DEFAULT_SPECS = ("latency=200ms", "errors=0.3")
# Uninstrumented dependencies: their caller is where their time and errors are recorded.
CALLER = {"redis": "cart", "model-api": "llm-agent"}
TOP_SHOWN = 3
KS = (1, 3)


@dataclass(frozen=True)
class Settings:
    """How each case runs."""

    duration: float = 50.0
    after: float = 35.0
    rate: float = 10.0
    wait: float = 60.0  # after the demo exits, how long to wait for an analysed incident
    keep_data: bool = False


@dataclass
class Result:
    """One case: a fault and what keiko made of it."""

    fault: str
    target: str
    run: int
    incident: bool = False
    rank: int | None = None  # 1-based, in the first analysis that holds the fault
    named: str = ""  # the accepted name found at that rank (the target or its caller)
    rank_last: int | None = None  # in the latest version read
    top: list[str] = field(default_factory=list)
    top_scores: list[float] = field(default_factory=list)
    detect_s: float | None = None  # fault start -> its first anomaly in the incident
    answer_s: float | None = None  # fault start -> first analysis that holds the fault
    opened_early_s: float | None = None  # the incident was opened this long before the fault
    own_s: float | None = None  # fault start -> the first anomaly of the target (or caller)
    healthy: int = 0  # anomaly events of the healthy period (before the fault)
    fault_at: float = 0.0  # unix seconds
    versions: int = 0
    incidents: int = 0  # incidents opened after the fault began
    false_alarms: int = 0  # incidents opened before it
    summary: str = ""
    top_evidence: list[str] = field(default_factory=list)
    demo_exit: int | None = None
    wall_s: float = 0.0
    error: str = ""


# -- keiko as a subprocess ------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Keiko:
    """One `keiko run` with its own config, temp data directory and log file."""

    def __init__(self, log_dir: Path) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="keiko-rca-live-"))
        self.ports = {"api": free_port(), "grpc": free_port(), "http": free_port()}
        self.config = log_dir / "keiko.yaml"
        self.log = log_dir / "keiko.log"
        p = self.ports
        config = {
            "store": {"embedded": {"path": str(self.data / "data")}},
            "api": {"endpoint": f"{HOST}:{p['api']}", "shutdown_grace": "5s"},
            "receivers": {
                "otlp": {
                    "grpc": {"endpoint": f"{HOST}:{p['grpc']}"},
                    "http": {"endpoint": f"{HOST}:{p['http']}"},
                }
            },
        }
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.ports['api']}"

    @property
    def otlp(self) -> str:
        return f"http://{HOST}:{self.ports['grpc']}"

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until ``/readyz`` answers 200."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*KEIKO, "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keiko exited {self.proc.returncode} at start: see {self.log}")
            try:
                if httpx.get(self.api + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"keiko was not ready within {timeout:g} s: see {self.log}")

    def stop(self, keep_data: bool) -> int | None:
        """SIGTERM, wait (SIGKILL after 20 s); remove the data dir unless ``keep_data``."""
        status = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                status = self.proc.wait()
        if not keep_data:
            shutil.rmtree(self.data, ignore_errors=True)
        return status


# -- one case -------------------------------------------------------------------------------


def run_demo(keiko: Keiko, fault: str, s: Settings, log_dir: Path) -> tuple[int, float]:
    """Run the demo to its end; ``(exit status, wall time the fault began)``.

    The fault's ``after`` counts from the first request, which the demo announces with its
    ``sending ...`` line on stderr: that line's arrival is the clock's zero."""
    cmd = [
        *KEIKO,
        "demo",
        "--otlp-endpoint",
        keiko.otlp,
        "--api",
        keiko.api,
        "--rate",
        f"{s.rate:g}",
        "--duration",
        f"{s.duration:g}",
        "--fault",
        f"{fault},after={s.after:g}s",
        "--json",
    ]
    started: list[float] = []
    with open(log_dir / "demo.json", "wb") as out, open(log_dir / "demo.log", "w") as err_log:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if not started and line.startswith("sending "):
                    started.append(time.time())
                err_log.write(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        status = proc.wait(s.duration + 300)
        reader.join(5)
    return status, (started[0] if started else time.time() - s.duration) + s.after


def incident_versions(api: str) -> dict[str, list[dict[str, Any]]]:
    """Every incident event in the store, by incident id, in version order."""
    return stored_events(api)[0]


def stored_events(api: str) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Every incident event in the store, by incident id, in version order; and every
    anomaly event."""
    found: dict[str, list[dict[str, Any]]] = {}
    anomalies: list[dict[str, Any]] = []
    offset = 1
    while True:
        page = httpx.get(
            f"{api}/api/v1/streams/events/records",
            params={"from_offset": offset, "limit": 1000},
            timeout=10,
        )
        if page.status_code == 404:  # no events stream yet
            return found, anomalies
        page.raise_for_status()
        body = page.json()
        records = body.get("records", [])
        for record in records:
            event = record.get("payload")
            if isinstance(event, dict) and event.get("type") == "incident":
                found.setdefault(str(event["id"]), []).append(event)
            elif isinstance(event, dict) and event.get("type") == "anomaly":
                anomalies.append(event)
        if not records:
            break
        offset = int(body["next_offset"])
    for versions in found.values():
        versions.sort(key=lambda e: int(e.get("version", 0)))
    return found, anomalies


def unix(text: str | None) -> float | None:
    """An RFC 3339 time stamp of an incident event as unix seconds."""
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def analysed(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The versions that carry an analysis (the closing version repeats the last one)."""
    return [v for v in versions if v.get("root_causes") and v.get("status") == "open"] or [
        v for v in versions if v.get("root_causes")
    ]


def rank_of(causes: list[dict[str, Any]], target: str) -> tuple[int | None, str]:
    """1-based rank of the first root cause that names ``target`` (or its only caller)."""
    accepted = {target, CALLER.get(target, target)}
    for i, cause in enumerate(causes, 1):
        if cause.get("service") in accepted:
            return i, str(cause["service"])
    return None, ""


# Metric points are stamped when the SDK exports them (every 0.5 s), after the data they
# hold, so a point about the fault cannot be stamped before it; 1 s covers clock reading.
SLACK_S = 1.0


def fault_anomalies(version: dict[str, Any], fault_at: float) -> list[float]:
    """Times (unix s) of the version's anomalies stamped at or after the fault start (not
    their onset, which a detector may date back into the healthy period)."""
    times = [unix(a.get("time")) or 0.0 for a in version.get("anomalies", [])]
    return [t for t in times if t >= fault_at - SLACK_S]


def answers(versions: list[dict[str, Any]], fault_at: float) -> list[dict[str, Any]]:
    """The analysed versions that include anomalies of the fault's time."""
    return [v for v in analysed(versions) if fault_anomalies(v, fault_at)]


def wait_incident(api: str, fault_at: float, wait: float) -> dict[str, list[dict[str, Any]]]:
    """Incident versions, once one that holds the fault's anomalies is analysed (or after
    ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        found = incident_versions(api)
        if any(answers(v, fault_at) for v in found.values()) or time.monotonic() >= deadline:
            return found
        time.sleep(2.0)


def score(result: Result, found: dict[str, list[dict[str, Any]]], fault_at: float) -> None:
    """Fill ``result`` from the incidents.

    The evaluated incident is the first (by opening time) whose analysis includes anomalies
    that began after the fault; it may have been opened a little earlier by an anomaly of
    the healthy period (``opened_early_s``), since anomalies near in time and graph join
    one incident. Incidents with no such anomaly at all are false alarms."""
    opened = {i: unix(v[0].get("opened")) or 0.0 for i, v in found.items()}
    related = [i for i, v in found.items() if any(fault_anomalies(e, fault_at) for e in v)]
    result.incidents = len(related)
    result.false_alarms = len(found) - len(related)
    evaluated = sorted((opened[i], i) for i in related if answers(found[i], fault_at))
    if not evaluated:
        return
    when, incident = evaluated[0]
    versions = answers(found[incident], fault_at)
    first, latest = versions[0], versions[-1]
    result.incident = True
    result.versions = len(versions)
    result.opened_early_s = max(0.0, fault_at - when)
    result.detect_s = min(fault_anomalies(latest, fault_at)) - fault_at
    result.answer_s = (unix(first.get("time")) or fault_at) - fault_at
    result.rank, result.named = rank_of(first["root_causes"], result.target)
    result.rank_last, _ = rank_of(latest["root_causes"], result.target)
    causes = first["root_causes"]
    result.top = [str(c["service"]) for c in causes[:TOP_SHOWN]]
    result.top_scores = [float(c["score"]) for c in causes[:TOP_SHOWN]]
    result.summary = str(first.get("summary", ""))
    result.top_evidence = [str(e.get("summary", "")) for e in causes[0].get("evidence", [])]


def score_detection(result: Result, anomalies: list[dict[str, Any]], fault_at: float) -> None:
    """Did the faulty service itself (or the caller that records an uninstrumented
    dependency) raise an anomaly after the fault began, and how many anomalies did the
    healthy period raise? An incident can hold the fault's time without either: opened by
    noise of the healthy period and kept open by more noise, its ranking still comes from
    the traces."""
    accepted = {result.target, CALLER.get(result.target, result.target)}
    times = [(unix(a.get("time")) or 0.0, str(a.get("service", ""))) for a in anomalies]
    result.healthy = sum(t < fault_at - SLACK_S for t, _ in times)
    own = [t for t, service in times if t >= fault_at - SLACK_S and service in accepted]
    result.own_s = min(own) - fault_at if own else None


def run_case(fault: str, run: int, s: Settings, out: Path) -> Result:
    """Fresh keiko, the demo with ``fault``, the incidents scored, keiko stopped."""
    target = fault.partition(":")[0]
    result = Result(fault, target, run)
    log_dir = out / f"{fault.replace(':', '_').replace('=', '')}-{run}"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    began = time.monotonic()
    keiko = Keiko(log_dir)
    try:
        keiko.start()
        result.demo_exit, fault_at = run_demo(keiko, fault, s, log_dir)
        result.fault_at = fault_at
        wait_incident(keiko.api, fault_at, s.wait)
        found, anomalies = stored_events(keiko.api)
        (log_dir / "incidents.json").write_text(
            json.dumps({"fault_at": fault_at, "incidents": found, "anomalies": anomalies}, indent=1)
        )
        score(result, found, fault_at)
        score_detection(result, anomalies, fault_at)
    except (RuntimeError, httpx.HTTPError, subprocess.TimeoutExpired, OSError) as exc:
        result.error = str(exc)
    finally:
        keiko.stop(s.keep_data)
        result.wall_s = time.monotonic() - began
    return result


# -- report ---------------------------------------------------------------------------------


def accuracy(results: list[Result]) -> dict[str, float]:
    """AC@k over the cases (a case without an incident or rank is a miss)."""
    n = max(len(results), 1)
    return {f"AC@{k}": sum(r.rank is not None and r.rank <= k for r in results) / n for k in KS}


def _opt(x: float | int | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def table(results: list[Result]) -> list[str]:
    """The results as aligned text, then AC@1/AC@3 and the misses' evidence."""
    head = (
        f"{'fault':<22} {'run':>3} {'inc':>3} {'rank':>4} {'last':>4} {'named':<9} "
        f"{'detect':>6} {'answer':>6} {'early':>5} {'fa':>2} {'own':>4} {'hlth':>4}  "
        "top 3 (score)"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        top = ", ".join(f"{n} {sc:.2f}" for n, sc in zip(r.top, r.top_scores, strict=True))
        lines.append(
            f"{r.fault:<22} {r.run:>3} {'yes' if r.incident else 'no':>3} {_opt(r.rank):>4} "
            f"{_opt(r.rank_last):>4} {r.named or '-':<9} {_opt(r.detect_s, '{:.0f}s'):>6} "
            f"{_opt(r.answer_s, '{:.0f}s'):>6} {_opt(r.opened_early_s, '{:.0f}s'):>5} "
            f"{r.false_alarms:>2} {_opt(r.own_s, '{:.0f}s'):>4} {r.healthy:>4}  "
            f"{top or r.error or '-'}"
        )
    lines.append("")
    groups = {"all": results}
    for kind in ("latency", "errors"):
        groups[kind] = [r for r in results if f":{kind}=" in r.fault]
    for name, group in groups.items():
        if group and (name == "all" or len(group) < len(results)):
            acc = accuracy(group)
            lines.append(
                f"{name:<8} {len(group):>3} cases: "
                + ", ".join(f"{k} {v:.2f}" for k, v in acc.items())
                + f" · incidents {sum(r.incident for r in group)}/{len(group)}"
                + f" · false alarms {sum(r.false_alarms for r in group)}"
                + f" · seen on the target {sum(r.own_s is not None for r in group)}"
                + f" · healthy-period anomalies {sum(r.healthy for r in group)}"
            )
    misses = [r for r in results if r.rank != 1]
    for r in misses:
        lines.append("")
        lines.append(f"miss: {r.fault} (run {r.run}): {r.summary or r.error or 'no incident'}")
        for ev in r.top_evidence:
            lines.append(f"    {r.top[0] if r.top else '?'}: {ev}")
    lines.append("")
    lines.append(
        "rank: of the faulty target (or its caller) in the first analysis holding the "
        "fault's anomalies; last: in the latest version read; detect: fault start -> its "
        "first anomaly; answer: -> that analysis; early: incident opened before the fault "
        "by anomalies of the healthy period; fa: incidents with no anomaly of the fault; "
        "own: fault start -> the first anomaly of the target itself (or its caller); hlth: "
        "anomalies stamped in the healthy period"
    )
    return lines


# -- command line ---------------------------------------------------------------------------


def default_faults() -> list[str]:
    """Every default target with each default spec."""
    return [f"{t}:{spec}" for t in DEFAULT_TARGETS for spec in DEFAULT_SPECS]


def check_fault(text: str) -> str:
    """argparse type: ``TARGET:latency=...|errors=...`` without ``after`` (added here)."""
    target, sep, spec = text.partition(":")
    if not sep or target not in TARGETS or not spec:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected TARGET:latency=200ms or TARGET:errors=0.3 with TARGET one "
            f"of {', '.join(TARGETS)}"
        )
    if "after=" in spec:
        raise argparse.ArgumentTypeError(f"{text!r}: leave out after= (use --after)")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="Default faults: " + " ".join(default_faults()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--faults",
        nargs="+",
        type=check_fault,
        metavar="TARGET:SPEC",
        help="faults to run (default: latency=200ms and errors=0.3 on checkout, cart, "
        "payment, llm-agent, redis and model-api)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per fault (default: 1)")
    parser.add_argument(
        "--duration", type=float, default=50.0, help="demo seconds per case (default: 50)"
    )
    parser.add_argument(
        "--after", type=float, default=35.0, help="fault start, seconds into the demo (35)"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s (default: 10)")
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait after the demo for an analysed incident (default: 60)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where each case's logs go (default: benchmarks/out/rca_live_eval/<UTC time>)",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep each keiko data dir")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if not 0 < args.after < args.duration:
        parser.error("--after must be between 0 and --duration")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(args.duration, args.after, args.rate, args.wait, args.keep_data)
    faults = args.faults or default_faults()
    out = args.out or OUT / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    began = time.monotonic()
    results = []
    for fault in faults:
        for run in range(1, args.repeat + 1):
            print(f"[{time.monotonic() - began:5.0f}s] {fault} run {run} ...", file=sys.stderr)
            result = run_case(fault, run, settings, out)
            results.append(result)
            print(f"        {table([result])[2]}", file=sys.stderr)
    wall = time.monotonic() - began
    if args.json:
        print("\n".join(table(results)), file=sys.stderr)
        print(
            json.dumps(
                {
                    "cases": [asdict(r) for r in results],
                    "accuracy": accuracy(results),
                    "wall_s": round(wall, 1),
                    "settings": asdict(settings),
                },
                indent=2,
            )
        )
    else:
        print("\n".join(table(results)))
        print(f"\nwall time {wall:.0f} s")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
