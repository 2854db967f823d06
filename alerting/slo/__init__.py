"""SLOs with multiwindow, multi-burn-rate alerts and threshold rules over keiko's metrics.

The `alerting.slo` stage (:mod:`alerting.slo.component`) reads the ``metrics`` stream and
writes ``slo_burn`` and ``threshold`` events when an alert starts or stops firing. The
math is pure and testable alone: :mod:`~alerting.slo.decode` (OTLP points, counter
deltas), :mod:`~alerting.slo.burn` (buckets, burn rates, budgets, verdicts) and
:mod:`~alerting.slo.rules` (threshold rules with ``for``).
"""
