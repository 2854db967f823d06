"""Quantiles from histogram bucket counts (the counts of one interval, i.e. deltas).

Explicit buckets follow Prometheus's ``histogram_quantile``: the rank ``q * total`` falls in
a bucket and the value is interpolated linearly inside it. OTLP bucket i holds
(bounds[i-1], bounds[i]]; the first bucket's lower edge is taken as 0 when its upper bound
is positive (else the quantile is that upper bound), and a rank in the +Inf bucket returns
the highest finite bound (nothing is known above it).

Exponential buckets (scale s, base 2**2**-s) have finite edges: positive index i holds
(base**i, base**(i+1)], negative index i holds [-base**(i+1), -base**i), the zero bucket is
taken as the single value 0. Linear interpolation inside the bucket as above.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate

Layout = tuple[tuple[float, ...], tuple[float, ...]]  # (lower edges, upper edges)


def quantiles(
    lowers: Sequence[float], uppers: Sequence[float], counts: Sequence[int], qs: Sequence[float]
) -> list[float] | None:
    """The ``qs`` quantiles (each in (0, 1)) of bucketed counts; None when there are none."""
    cum = list(accumulate(counts))
    if not cum or cum[-1] <= 0:
        return None
    total = cum[-1]
    out = []
    for q in qs:
        rank = q * total
        b = bisect_left(cum, rank)
        below = cum[b - 1] if b else 0
        lo, hi = lowers[b], uppers[b]
        out.append(lo + (hi - lo) * (rank - below) / (cum[b] - below))
    return out


@lru_cache(maxsize=256)
def explicit_layout(bounds: tuple[float, ...]) -> Layout:
    """Bucket edges for OTLP explicit bounds, with Prometheus's first and +Inf bucket rules."""
    first = 0.0 if bounds[0] > 0 else bounds[0]  # lower == upper: the quantile is the bound
    lowers = (first, *bounds)
    uppers = (*bounds, bounds[-1])  # +Inf bucket collapsed onto the highest finite bound
    return lowers, uppers


def downscale(buckets: dict[int, int], shift: int) -> dict[int, int]:
    """Exponential buckets re-indexed ``shift`` scales coarser (shift >= 0)."""
    if shift == 0:
        return buckets
    out: dict[int, int] = {}
    for i, c in buckets.items():
        j = i >> shift
        out[j] = out.get(j, 0) + c
    return out


def to_dict(offset: int, counts: Sequence[int]) -> dict[int, int]:
    """Exponential bucket counts as index -> count (empty buckets left out)."""
    return {offset + k: c for k, c in enumerate(counts) if c}


def subtract(cur: dict[int, int], prev: dict[int, int]) -> dict[int, int] | None:
    """cur - prev per bucket; None when any bucket went down (not the same cumulative)."""
    out = dict(cur)
    for i, c in prev.items():
        d = out.get(i, 0) - c
        if d < 0:
            return None
        out[i] = d
    return out


def exponential_buckets(
    scale: int, zero: int, pos: dict[int, int], neg: dict[int, int]
) -> tuple[list[float], list[float], list[int]] | None:
    """Ascending (lowers, uppers, counts) of exponential buckets; None if an edge overflows."""
    step = 2.0**-scale
    lowers: list[float] = []
    uppers: list[float] = []
    counts: list[int] = []
    try:
        for i in sorted(neg, reverse=True):
            lowers.append(-(2.0 ** ((i + 1) * step)))
            uppers.append(-(2.0 ** (i * step)))
            counts.append(neg[i])
        lowers.append(0.0)
        uppers.append(0.0)
        counts.append(zero)
        for i in sorted(pos):
            lowers.append(2.0 ** (i * step))
            uppers.append(2.0 ** ((i + 1) * step))
            counts.append(pos[i])
    except OverflowError:
        return None
    return lowers, uppers, counts
