"""Prometheus metrics of the `alerting.slo` stage, read from its state at scrape time.

Objectives: ``keiko_slo_error_budget_remaining``, ``keiko_slo_burn_rate``, ``keiko_slo_sli``
and ``keiko_slo_window_calls`` per window, ``keiko_slo_alerts_firing`` per severity; rules:
``keiko_rule_firing`` and ``keiko_rule_pending``; the stage: ``keiko_slo_points_total``,
``_dropped_points_total`` by reason, and the stream worker's ``keiko_slo_records_total``,
``_skipped_records_total``, ``_events_total``, ``_offset``, ``_lag_records`` ...

The verdicts and budgets are lists and dicts the stage replaces whole after each
evaluation, so a scrape never iterates one that is being changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keiko import humanize
from keiko.stream.export import worker_metrics

if TYPE_CHECKING:
    from alerting.slo.component import SloStage

PREFIX = "keiko_slo"


def _by(name: str, doc: str, label: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, n in sorted(dict(counts).items()):  # a copy: the worker thread adds keys
        family.add_metric([key], n)
    return family


class SloExport(Collector):
    """keiko_slo_* and keiko_rule_*."""

    def __init__(self, stage: SloStage) -> None:
        self.stage = stage

    def collect(self) -> Iterator[Metric]:
        """Read at scrape time."""
        yield from self._objectives()
        yield from self._rules()
        yield from self._progress()

    def _objectives(self) -> Iterator[Metric]:
        book = self.stage.burn
        budgets, verdicts, firing = book.budgets, book.verdicts, set(book.firing)
        remaining = GaugeMetricFamily(
            f"{PREFIX}_error_budget_remaining",
            "Share of the error budget left over the objective's period (1 untouched, "
            "0 spent, negative overspent).",
            labels=["objective", "service"],
        )
        for name, value in sorted(budgets.items()):
            remaining.add_metric([name, book.objectives[name].config.service], value)
        yield remaining
        burn = GaugeMetricFamily(
            f"{PREFIX}_burn_rate",
            "Error ratio over the window divided by the error budget (1 - target).",
            labels=["objective", "service", "window"],
        )
        sli = GaugeMetricFamily(
            f"{PREFIX}_sli",
            "Share of good calls over the window.",
            labels=["objective", "service", "window"],
        )
        calls = GaugeMetricFamily(
            f"{PREFIX}_window_calls",
            "Calls counted over the window (under min_events: no verdict).",
            labels=["objective", "service", "window"],
        )
        seen: set[tuple[str, str]] = set()
        for v in verdicts:
            service = book.objectives[v.objective].config.service
            for reading in (v.long, v.short):
                window = humanize.duration(reading.seconds)
                if (v.objective, window) in seen:
                    continue
                seen.add((v.objective, window))
                labels = [v.objective, service, window]
                calls.add_metric(labels, reading.total)
                if reading.burn is not None:
                    burn.add_metric(labels, reading.burn)
                    sli.add_metric(labels, reading.good / reading.total)
        yield from (burn, sli, calls)
        alerts = GaugeMetricFamily(
            f"{PREFIX}_alerts_firing",
            "Burn-rate alerts firing now, by severity.",
            labels=["objective", "severity"],
        )
        for name in sorted(book.objectives):
            for severity in sorted({w.severity for w in book.windows.values()}):
                n = sum(
                    1
                    for w, cfg in book.windows.items()
                    if cfg.severity == severity and (name, w) in firing
                )
                alerts.add_metric([name, severity], n)
        yield alerts

    def _rules(self) -> Iterator[Metric]:
        counts = self.stage.rule_counts
        firing = GaugeMetricFamily(
            "keiko_rule_firing", "Series of the rule firing now.", labels=["rule"]
        )
        pending = GaugeMetricFamily(
            "keiko_rule_pending",
            "Series of the rule whose condition holds, not yet for `for_duration`.",
            labels=["rule"],
        )
        for rule in sorted(self.stage.rules.rules):
            p, f = counts.get(rule, (0, 0))
            firing.add_metric([rule], f)
            pending.add_metric([rule], p)
        yield firing
        yield pending
        yield _by(
            "keiko_rule_dropped_points",
            "Points the rules did not take: max_series (the rule's cap), rate_of_non_sum, "
            "histogram, out_of_order.",
            "reason",
            self.stage.rules.dropped,
        )

    def _progress(self) -> Iterator[Metric]:
        stage, s = self.stage, self.stage.stats
        yield CounterMetricFamily(f"{PREFIX}_points", "Points decoded and read.", value=s.points)
        tracker = stage.tracker
        dropped = {
            **dict(s.dropped_points),
            "max_counters": tracker.dropped,
            "late": sum(o.late for o in stage.burn.objectives.values()),
        }
        yield _by(
            f"{PREFIX}_dropped_points",
            "Points not counted: future (over 5 min after their record), no_time, "
            "max_counters (cumulative series over the cap), late (older than the longest "
            "window).",
            "reason",
            dropped,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_counter_resets", "Cumulative counters that restarted.", value=tracker.resets
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_data_time_seconds",
            "Data time: the newest point time seen (unix seconds); alerts are judged at it.",
            value=stage.clock_ns / 1e9,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_evaluations", "Evaluations of every alert.", value=s.evaluations
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_evaluation_duration_seconds",
            "Time the last evaluation of every alert took.",
            value=s.evaluation_seconds,
        )
        yield from worker_metrics(PREFIX, stage.stream, s, stage.stream_end)
