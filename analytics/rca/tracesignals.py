"""Traces as series that RCA reads like metrics.

Per service and time bucket:

- ``trace.self_time``: the service's own time per trace (span durations minus the union of
  their children), which grows where the time is spent, not where it is waited for;
- ``trace.error_origins``: the share of the service's traces in which it is where the
  errors start (an erroring span with no erroring child);
- ``trace.duration`` and ``trace.errors``: mean span duration and the erroring share, as
  span metrics would show them (these propagate to callers like any latency or error
  metric).

The bucket is a sixtieth of the case's span time range (1 s to 60 s), so that the normal
period holds enough points to judge the spread; buckets are stamped with their start and
aligned on the problem's start.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.rca.model import Case
from analytics.traces.analysis import error_origins, link, self_time
from analytics.traces.spans import SpanBatch

BUCKETS = 60
SELF_TIME = "trace.self_time"
ERROR_ORIGINS = "trace.error_origins"
ERRORS = "trace.errors"


def trace_metrics(spans: SpanBatch, at: float) -> pd.DataFrame:
    """Per service, over time: self-time per trace, error-origin share, duration, errors.

    Buckets are aligned on ``at`` so that none mixes traces from before and after it."""
    if not len(spans):
        return Case.empty_metrics()
    links = link(spans)
    start_s = spans.start_ns / 1e9
    width = float(np.clip((start_s.max() - start_s.min()) / BUCKETS, 1.0, 60.0))
    frame = pd.DataFrame(
        {
            "service": spans.service,
            "trace": links.trace,
            "bucket": at + np.floor((start_s - at) / width) * width,
            "self_s": self_time(spans, links) / 1e9,
            "origin": error_origins(spans, links),
            "duration": spans.duration_ns / 1e9,
            "error": spans.error,
        }
    )
    per_trace = frame.groupby(["service", "bucket", "trace"], sort=False).agg(
        self_s=("self_s", "sum"), origin=("origin", "any")
    )
    per_bucket = per_trace.groupby(level=["service", "bucket"]).agg(
        self_s=("self_s", "mean"), origin=("origin", "mean")
    )
    spans_bucket = frame.groupby(["service", "bucket"]).agg(
        duration=("duration", "mean"), error=("error", "mean")
    )
    joined = per_bucket.join(spans_bucket).reset_index()
    names = {
        "self_s": SELF_TIME,
        "origin": ERROR_ORIGINS,
        "duration": "trace.duration",
        "error": ERRORS,
    }
    long = joined.melt(id_vars=["service", "bucket"], value_vars=list(names), var_name="metric")
    long["metric"] = long["metric"].map(names)
    long["instance"] = ""
    long = long.rename(columns={"bucket": "time"})
    return long[["time", "service", "metric", "value", "instance"]].astype(
        {"time": "float64", "value": "float64"}
    )
