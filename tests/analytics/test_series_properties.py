"""Properties of MetricsDecoder over arbitrary input (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.series import build
from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable

A = {"route": "/a"}
# (start s, time s, value): starts jump around (restarts, two writers), values go up and down
POINTS = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 50, 90]),
        st.integers(min_value=0, max_value=200),
        st.one_of(st.floats(min_value=0, max_value=1e6), st.just(math.nan)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(POINTS)
def test_monotonic_counter_rates_are_never_negative_or_non_finite(
    points: list[tuple[int, int, float]],
) -> None:
    dec = MetricsDecoder(SeriesTable(4))
    for start, t, v in points:  # one request per point, as exporters send them
        req, scope = build.request()
        build.monotonic_sum(scope, "c", [(A, start, t, v)])
        batch = dec.decode(req.SerializeToString())
        assert np.isfinite(batch.values).all() and (batch.values >= 0).all()
        assert np.isfinite(batch.times).all()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.lists(st.integers(0, 50), min_size=4, max_size=4)),
        max_size=20,
    )
)
def test_histogram_quantiles_stay_within_the_bounds(points: list[tuple[int, list[int]]]) -> None:
    dec = MetricsDecoder(SeriesTable(8))
    for t, counts in points:
        req, scope = build.request()
        build.histogram(scope, "h", [10, 20, 40], [(A, 1, t, counts)])
        batch = dec.decode(req.SerializeToString())
        kinds = [dec.table.info(i).kind for i in batch.series.tolist()]  # type: ignore[union-attr]
        q = batch.values[[k == "quantile" for k in kinds]]
        assert ((q >= 0) & (q <= 40)).all()
        assert (batch.values >= 0).all()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_batch_or_a_value_error(data: bytes) -> None:
    dec = MetricsDecoder(SeriesTable(8))
    try:
        batch = dec.decode(data)
    except ValueError:
        return
    assert len(batch.series) == len(batch.times) == len(batch.values)
    assert np.isfinite(batch.values).all()
