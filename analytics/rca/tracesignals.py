"""Traces as series RCA reads like metrics (placeholder until trace analysis lands)."""

from __future__ import annotations

import pandas as pd

from analytics.rca.model import Case
from analytics.traces.spans import SpanBatch


def trace_metrics(spans: SpanBatch) -> pd.DataFrame:
    """Per service, over time: self-time per trace and error origins."""
    return Case.empty_metrics()
