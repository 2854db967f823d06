"""Which worker pairs the spans of a trace: a stable function of the trace id.

The service graph pairs a client span with its server child, and those two spans come
from different services, in different requests, often in different fetches. Pairing is
only correct when every span of a trace reaches the same worker, so when the analysis
runs as several workers the ``traces`` stream is partitioned with :func:`partition_of`
(it lives in :mod:`keiko.partitioning`, which the NATS store uses to cut each record
into per-partition pieces); a worker keeps the spans of its own partition with
:func:`split`. Trace ids are random (W3C), so their first 8 bytes taken as an integer
spread traces evenly; the function never changes between releases, or spans of one trace
in flight across an upgrade would meet different workers.

Span metrics need no such care for correctness of the counts (they add up per span), but
two workers must not write the same cumulative series: each worker's metrics carry its
own ``service.instance.id`` or are partitioned by service (see issue 8).
"""

from __future__ import annotations

import numpy as np

from analytics.traces.spans import SpanBatch
from keiko.partitioning import partition_of

__all__ = ["partition_of", "split"]


def split(batch: SpanBatch, count: int) -> list[SpanBatch]:
    """``batch`` as ``count`` batches, row order kept, by :func:`partition_of`."""
    if count == 1:
        return [batch]
    parts = np.array([partition_of(t, count) for t in batch.trace_id], np.int64)
    return [batch.take(np.flatnonzero(parts == p)) for p in range(count)]
