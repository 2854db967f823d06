"""Series keys: which labels identify a series, and how they are written.

Rule: a series is identified by its derived metric name (``http.server.duration:p99``) and
the sorted union of
  - the identifying resource attributes: ``service.name``, ``service.namespace``,
    ``host.name``, ``container.id``, ``keiko.partition`` and every ``k8s.*`` attribute;
  - every data point attribute (a point attribute wins over a resource one of the same name).
Other resource attributes (``service.instance.id``, ``service.version``, ``telemetry.sdk.*``,
``process.pid`` ...) are left out on purpose: they change on every restart or deploy and
would turn one series into many. The scope is left out too.

The key is ``name{k1="v1",k2="v2"}`` with names and values JSON-escaped, so it is stable
across processes and readable in logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from keiko.partitioning import value_text as any_value_text  # one text form of values

# keiko.partition: span metrics of one trace partition (see analytics.spanmetrics.otlp).
RESOURCE_KEYS = frozenset(
    {"service.name", "service.namespace", "host.name", "container.id", "keiko.partition"}
)


def identifying(key: str, extra: frozenset[str] = frozenset()) -> bool:
    """True when a resource attribute of this name identifies a series."""
    return key in RESOURCE_KEYS or key.startswith("k8s.") or key in extra


def labels_of(attributes: Iterable[KeyValue]) -> dict[str, str]:
    """Attributes (a repeated KeyValue field) as a dict of text."""
    return {kv.key: any_value_text(kv.value) for kv in attributes}


def resource_labels(
    attributes: Iterable[KeyValue], extra: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The identifying subset of a resource's attributes (plus the ``extra`` names)."""
    return {k: v for k, v in labels_of(attributes).items() if identifying(k, extra)}


def series_key(metric: str, labels: dict[str, str]) -> str:
    """The stable key: ``metric{k="v",...}`` with labels sorted by name."""
    inner = ",".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"
