"""Small PromQL helpers shared by the dashboards (Grafana's $__rate_interval window)."""

from __future__ import annotations

WINDOW = "$__rate_interval"


def rate(metric: str, selector: str = "", by: str = "") -> str:
    """``sum by (by) (rate(metric{selector}[window]))`` (no ``by``: one total)."""
    inner = f"rate({metric}{{{selector}}}[{WINDOW}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def increase(metric: str, selector: str = "", by: str = "") -> str:
    """``sum by (by) (increase(metric{selector}[window]))``."""
    return f"sum by ({by}) (increase({metric}{{{selector}}}[{WINDOW}]))"


def quantile(q: float, histogram: str, selector: str = "", by: str = "") -> str:
    """The ``q`` quantile of a Prometheus histogram (``histogram`` without ``_bucket``)."""
    keep = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({keep}) "
        f"(rate({histogram}_bucket{{{selector}}}[{WINDOW}])))"
    )


def stage(metric: str, name: str) -> str:
    """A per-stage gauge with a ``stage`` label, so that several can be or-ed together."""
    return f'label_replace({metric}, "stage", "{name}", "", "")'
