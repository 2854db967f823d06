"""The outcome of a demo run: the verdict (exit code and reasons) and its text/JSON forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keiko.demo.faults import Fault
from keiko.demo.notified import notification_lines
from keiko.demo.received import KIND_NAMES, Received, SpanView, tree_lines

AGENT = "llm-agent"
MAX_ANOMALY_LINES = 12
MAX_CAUSES, MAX_EVIDENCE, MAX_EXEMPLARS = 3, 2, 3
RESOURCE_PREFIXES = ("service.", "telemetry.", "host.", "process.", "os.", "k8s.", "container.")
ITEM_WORDS = {"traces": "spans", "metrics": "metric points", "logs": "log records"}


def stream_figures(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{stream: {"records", "items", "bytes", "last_offset"}}`` from the store stats JSON."""
    return {
        s["name"]: {
            "records": int(s.get("records") or 0),
            "items": int(s.get("items") or 0),
            "bytes": int(s.get("bytes") or 0),
            "last_offset": int(s.get("last_offset") or 0),
        }
        for s in stats.get("streams", [])
    }


@dataclass
class RunResult:
    """Everything the demo knows at the end of a run."""

    endpoint: str
    protocol: str
    api: str
    seconds: float
    load: dict[str, Any]
    exported: dict[str, dict[str, int]]  # ExportTally.snapshot()
    flushed: bool
    before: dict[str, dict[str, int]]  # stream_figures before the run
    after: dict[str, dict[str, int]]
    received: Received
    faults: dict[str, Fault] = field(default_factory=dict)
    export_errors: list[str] = field(default_factory=list)  # distinct SDK warnings
    interrupted: bool = False
    notifications: list[dict[str, Any]] = field(default_factory=list)  # at the demo's webhook

    def growth(self) -> dict[str, dict[str, int]]:
        """What each stream gained during the run (other senders' data included)."""
        return {
            name: {
                k: fig[k] - self.before.get(name, {}).get(k, 0)
                for k in ("records", "items", "bytes")
            }
            for name, fig in self.after.items()
            if name in ITEM_WORDS
        }

    def problems(self) -> list[str]:
        """Why the run failed; empty when keiko acknowledged and holds everything sent."""
        problems = []
        found, growth = self.received.items(), self.growth()
        for signal, words in ITEM_WORDS.items():
            sent = self.exported[signal]
            if sent["failed_batches"]:
                problems.append(
                    f"{signal}: {sent['failed_batches']} exports failed, "
                    f"{sent['sent'] - sent['acked']} {words} not acknowledged"
                )
            elif not sent["acked"]:
                problems.append(f"no {words} were exported (was the run too short?)")
            # Read back everything of the run when we could; else the store's own counts.
            held = (
                growth.get(signal, {}).get("items", 0) if self.received.truncated else found[signal]
            )
            if held < sent["acked"]:
                problems.append(
                    f"keiko acknowledged {sent['acked']} {words} but its store shows {held} of them"
                )
        if not self.flushed:
            problems.append("the exporters did not finish flushing in time")
        if problems:
            problems += [f"the exporter said: {msg}" for msg in self.export_errors[:3]]
        return problems

    # -- output --------------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        """The machine-readable summary (``--json``)."""
        return {
            "ok": not self.problems(),
            "problems": self.problems(),
            "otlp": {"endpoint": self.endpoint, "protocol": self.protocol},
            "api": self.api,
            "seconds": round(self.seconds, 2),
            "interrupted": self.interrupted,
            "faults": {s: f.describe() for s, f in self.faults.items()},
            "load": self.load,
            "exported": self.exported,
            "flushed": self.flushed,
            "store_growth": self.growth(),
            "received": {
                "items": self.received.items(),
                "truncated": self.received.truncated,
                "services": self.received.services(),
                "calls": [
                    {"from": a, "to": b, "count": n}
                    for (a, b), n in sorted(self.received.calls().items())
                ],
                "metric_names": {s: sorted(n) for s, n in self.received.metric_names.items()},
                "logs_by_severity": dict(self.received.logs_by_severity),
                "logs_with_trace": self.received.logs_with_trace,
                "traces": len(self.received.traces()),
                "anomalies": self.received.anomalies,
                "incidents": self.received.incidents,
                "notifications": self.notifications,
            },
            "sample_traces": [
                [
                    {
                        "trace_id": s.trace_id,
                        "span_id": s.span_id,
                        "parent_span_id": s.parent_id,
                        "name": s.name,
                        "service": s.service,
                        "kind": KIND_NAMES.get(s.kind, "?"),
                        "ms": round(s.ms, 2),
                        "error": s.error,
                        "note": s.note,
                    }
                    for s in trace
                ]
                for trace in self.sample_traces()
            ],
        }

    def text(self) -> list[str]:
        """The human-readable summary, one line per item."""
        load = self.load
        errors = ", ".join(f"{what} x{n}" for what, n in load["errors"].items())
        lines = [
            "",
            f"Load: {load['sent']} requests in {self.seconds:.1f} s, {load['ok']} ok, "
            f"{load['failed']} failed{f' ({errors})' if errors else ''}, "
            f"{load['dropped']} dropped; p50 {load['p50_ms']:g} ms, p95 {load['p95_ms']:g} ms",
        ]
        exported = ", ".join(
            f"{e['acked']}/{e['sent']} {ITEM_WORDS[s]}" for s, e in self.exported.items()
        )
        lines.append(f"Acknowledged by keiko (of sent): {exported}")
        lines += self._store_lines() + self._service_lines() + self._signal_lines()
        lines += self._anomaly_lines() + self._incident_lines() + self._notification_lines()
        lines += self._trace_lines()
        problems = self.problems()
        lines.append("")
        if problems:
            lines.append("FAILED:")
            lines += [f"  - {p}" for p in problems]
        else:
            lines.append("OK: keiko acknowledged and stored everything the services sent.")
        return lines

    def _store_lines(self) -> list[str]:
        lines = [
            "",
            "keiko's store, growth during the run (GET /api/v1/store/stats):",
            f"  {'stream':<8} {'records':>8} {'items':>8} {'bytes':>10}",
        ]
        for name, g in self.growth().items():
            lines.append(f"  {name:<8} {g['records']:>8} {g['items']:>8} {_size(g['bytes']):>10}")
        return lines

    def _service_lines(self) -> list[str]:
        services = self.received.services()
        if not services:
            return ["", "No spans of this run were found in keiko's traces stream."]
        lines = [
            "",
            f"Services seen in the stored spans ({len(self.received.traces())} traces):",
            f"  {'service':<10} {'spans':>6} {'server':>7} {'errors':>7} {'p50':>9} {'p95':>9}",
        ]
        for name, row in services.items():
            fault = self.faults.get(name)
            mark = f"   <- fault {fault.describe()}" if fault else ""
            lines.append(
                f"  {name:<10} {row['spans']:>6} {row['server_spans']:>7} "
                f"{row['errors']:>7} {row['p50_ms']:>6.1f} ms {row['p95_ms']:>6.1f} ms"
                f"{mark}"
            )
        callees: dict[str, list[str]] = {}
        for (caller, callee), n in sorted(self.received.calls().items()):
            callees.setdefault(caller, []).append(f"{callee} {n}")
        lines.append("Calls between services (from parent/child spans):")
        lines += [f"  {caller:<10} → {', '.join(c)}" for caller, c in callees.items()]
        return lines

    def _signal_lines(self) -> list[str]:
        names: dict[str, list[str]] = {}
        for service, metric_names in sorted(self.received.metric_names.items()):
            names.setdefault(", ".join(sorted(metric_names)), []).append(service)
        lines = ["", f"Metrics: {self.received.metric_points} points"]
        lines += [f"  {', '.join(s)}: {n}" for n, s in names.items()]
        severity = ", ".join(f"{k} {v}" for k, v in self.received.logs_by_severity.most_common())
        lines.append(
            f"Logs: {self.received.logs} records ({severity or 'none'}), "
            f"{self.received.logs_with_trace} with a trace id"
        )
        return lines

    def _anomaly_lines(self) -> list[str]:
        anomalies = self.received.anomalies
        if not anomalies:
            if not self.faults:
                return []
            return [
                "",
                "keiko's anomaly detector reported nothing about this run's services. It needs "
                "about 30 s of normal traffic per series first: start the fault later, e.g. "
                "--fault cart:latency=200ms,after=35s --duration 50.",
            ]
        lines = ["", f"Anomalies keiko detected (events stream): {len(anomalies)}"]
        for e in anomalies[:MAX_ANOMALY_LINES]:
            low, high = e.get("expected_range") or (None, None)
            expected = f"expected {_num(low)}..{_num(high)}" if low is not None else ""
            fault = "   <- fault" if e.get("service") in self.faults else ""
            lines.append(
                f"  {str(e.get('time', ''))[11:19]} {e.get('service', '?'):<10} "
                f"{e.get('metric', '?')}{_point_labels(e)} = {_num(e.get('value'))} "
                f"({expected}), score {e.get('score', 0):.3f}, since "
                f"{str(e.get('onset', ''))[11:19]}{fault}"
            )
        if len(anomalies) > MAX_ANOMALY_LINES:
            lines.append(f"  ... and {len(anomalies) - MAX_ANOMALY_LINES} more (--json lists all)")
        return lines

    def _incident_lines(self) -> list[str]:
        lines = []
        for incident in self.received.incidents:
            lines += [
                "",
                f"Incident {incident.get('id')} (v{incident.get('version')}): "
                f"{incident.get('summary', '')}",
                "  Ranked root causes:",
            ]
            for k, cause in enumerate(incident.get("root_causes", [])[:MAX_CAUSES], 1):
                fault = "   <- fault" if cause.get("service") in self.faults else ""
                score = cause.get("score", 0)
                lines.append(f"  {k}. {cause.get('service')} (score {score:.2f}){fault}")
                evidence = cause.get("evidence", [])
                for ev in [e for e in evidence if e.get("kind") != "traces"][:MAX_EVIDENCE]:
                    lines.append(f"       - {ev.get('summary', '')}")
                for ev in [e for e in evidence if e.get("kind") == "traces"][:1]:
                    shown = ", ".join(
                        f"{x['trace_id']} ({x['duration_s'] * 1000:.0f} ms)"
                        for x in ev.get("exemplars", [])[:MAX_EXEMPLARS]
                    )
                    lines.append(f"       - traces: {shown}")
        return lines

    def _notification_lines(self) -> list[str]:
        return [
            line
            for post in self.notifications
            for line in notification_lines(post, set(self.faults))
        ]

    def sample_traces(self) -> list[list[SpanView]]:
        """The trace that shows the most (see Received.sample_trace), and an LLM agent's
        trace too when the first one does not reach the agent."""
        best = self.received.sample_trace(self.faults)
        traces = [best] if best else []
        if not any(s.service == AGENT for s in best):
            agent = self.received.sample_trace(self.faults, through=AGENT)
            traces += [agent] if agent else []
        return traces

    def _trace_lines(self) -> list[str]:
        lines = []
        for trace in self.sample_traces():
            services = len({s.service for s in trace})
            lines += ["", f"A trace: {trace[0].trace_id}, {len(trace)} spans, {services} services"]
            lines += [f"  {line}" for line in tree_lines(trace)]
        return lines


def _point_labels(event: dict[str, Any]) -> str:
    """The labels that tell a service's series apart (route, method ...), not its resource."""
    labels = event.get("labels") or {}
    shown = [f"{k}={v}" for k, v in sorted(labels.items()) if not k.startswith(RESOURCE_PREFIXES)]
    return "{" + ",".join(shown) + "}" if shown else ""


def _num(value: Any) -> str:
    return "?" if value is None else f"{float(value):.4g}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
