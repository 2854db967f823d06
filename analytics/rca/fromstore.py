"""The signals of a time window, read back from the store as an RCA case (for incidents
and `keiko export-case`).

Metrics are decoded the way the detectors see them (counters as rates, histograms as
rate and quantiles) into a fresh series table, so the case holds exactly what the
anomalies were found on; spans come from the traces stream. Both reads are bounded: the
newest records are kept when the window holds more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.rca.model import NODE_PREFIX, Case
from analytics.series.decode import MetricsDecoder
from analytics.series.keys import identifying
from analytics.series.table import SeriesTable
from analytics.series.types import SeriesInfo
from analytics.traces.spans import SpanBatch, decode_spans
from keiko.records import Kind, Record, Stream
from keiko.store.base import Store

PAGE = 500
INSTANCE_LABELS = ("k8s.pod.name", "service.instance.id", "host.name")
MAX_SERIES = 20_000
# The eBPF node agent's resource service.name (ebpf/encode.py): its series are about the
# pods (cgroup attributes) or the node, never about the agent itself.
AGENT_SERVICE = "keiko-ebpf"
SENDER_LABELS = frozenset(
    {
        "service.instance.id",
        "cgroup.path",
        "k8s.pod.uid",
        "telemetry.sdk.name",
        "telemetry.sdk.language",
        "telemetry.sdk.version",
        "process.pid",
    }
)


@dataclass
class Window:
    """A case plus what reading it found."""

    case: Case
    series: int
    spans: int
    truncated: list[str]  # streams whose window held more than the bounds


async def _read(
    store: Store, stream: str, start_ns: int, end_ns: int, cap: int, items: bool
) -> tuple[list[Record], bool]:
    """Records appended in [start_ns, end_ns]: the newest ``cap`` records (or items), and
    whether older ones were left out."""
    offset = await store.offset_at(stream, start_ns)
    out: deque[Record] = deque()
    held, dropped = 0, False  # records, or items, in `out`
    while True:
        page = [r for r in await store.read(stream, offset, PAGE) if r.time_ns <= end_ns]
        for record in page:
            out.append(record)
            held += record.count if items else 1
        while len(out) > 1 and held > cap:  # keep the newest
            oldest = out.popleft()
            held -= oldest.count if items else 1
            dropped = True
        if len(page) < PAGE:
            return list(out), dropped
        offset = page[-1].offset + 1


def metrics_frame(records: list[Record]) -> tuple[pd.DataFrame, int]:
    """Decoded points as the long frame RCA reads; and how many series."""
    table = SeriesTable(MAX_SERIES)
    decoder = MetricsDecoder(table)
    parts = []
    for r in records:
        if r.kind != Kind.OTLP_METRICS:
            continue
        try:
            batch = decoder.decode(r.payload)
        except Exception:  # the receiver validated it; the detectors count decoder gaps
            continue
        if len(batch):
            parts.append(batch)
    if not parts:
        return Case.empty_metrics(), 0
    series = np.concatenate([b.series for b in parts])
    ids = np.unique(series).tolist()
    info = {sid: i for sid in ids if (i := table.info(sid)) is not None}
    pods = _pod_services(info.values())
    subject = {sid: _subject(i, pods) for sid, i in info.items()}
    services = {s: subject.get(s, ("", ""))[0] for s in ids}
    instance = {s: subject.get(s, ("", ""))[1] for s in ids}
    metric = {s: _metric(info[s]) if s in info else "" for s in ids}
    frame = pd.DataFrame(
        {
            "time": np.concatenate([b.times for b in parts]),
            "service": [services[s] for s in series.tolist()],
            "metric": [metric[s] for s in series.tolist()],
            "value": np.concatenate([b.values for b in parts]),
            "instance": [instance[s] for s in series.tolist()],
        }
    )
    return frame, len(ids)


def _metric(info: SeriesInfo) -> str:
    """The metric with the labels that tell its series apart (route, method, status ...),
    not those of who sent it (service, pod, node: the service and instance columns)."""
    own = {k: v for k, v in info.labels.items() if k not in SENDER_LABELS and not identifying(k)}
    if not own:
        return info.metric
    return info.metric + "{" + ",".join(f"{k}={v}" for k, v in sorted(own.items())) + "}"


def _instance(labels: dict[str, str]) -> str:
    return next((labels[k] for k in INSTANCE_LABELS if labels.get(k)), "")


def _observed_by_agent(info: SeriesInfo) -> bool:
    """A series the node agent measured about someone else (a pod, or the node itself):
    its resource ``service.name`` is the agent's, not the subject's."""
    return info.service == AGENT_SERVICE or "cgroup.path" in info.labels


def _pod_services(infos: Iterable[SeriesInfo]) -> dict[str, str]:
    """Pod name -> service name, from the applications' own telemetry in the window."""
    return {
        i.labels["k8s.pod.name"]: i.service
        for i in infos
        if i.service and i.labels.get("k8s.pod.name") and not _observed_by_agent(i)
    }


def _subject(info: SeriesInfo, pods: dict[str, str]) -> tuple[str, str]:
    """(service, instance) a series is about: an agent's series about a pod belongs to the
    pod's service; one about no pod belongs to the node (``node:<name>``)."""
    labels = info.labels
    if not _observed_by_agent(info):
        return info.service, _instance(labels)
    pod = labels.get("k8s.pod.name", "")
    if pod:
        return pods.get(pod) or labels.get("k8s.container.name") or pod, pod
    node = labels.get("k8s.node.name") or labels.get("host.name") or "unknown"
    return f"{NODE_PREFIX}{node}", node


async def read_window(
    store: Store, start_s: float, end_s: float, max_records: int, max_spans: int
) -> Window:
    """The metrics and spans of [start_s, end_s] as a case (the graph comes from the spans)."""
    start_ns, end_ns = int(start_s * 1e9), int(end_s * 1e9)
    metric_records, cut_metrics = await _read(
        store, Stream.METRICS, start_ns, end_ns, max_records, False
    )
    trace_records, cut_traces = await _read(store, Stream.TRACES, start_ns, end_ns, max_spans, True)
    truncated = [name for name, cut in (("metrics", cut_metrics), ("traces", cut_traces)) if cut]
    frame, series = metrics_frame(metric_records)
    spans = SpanBatch.concat(
        decode_spans(r.payload) for r in trace_records if r.kind == Kind.OTLP_TRACES
    )
    return Window(Case(frame, spans if len(spans) else None), series, len(spans), truncated)
