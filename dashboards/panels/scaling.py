"""Predictive scaling: request-rate and CPU forecasts with intervals, and advised replicas."""

from __future__ import annotations

from dashboards.panels.promql import WINDOW
from dashboards.spec import Board, Panel, Query, Row, Variable

WORKLOAD = 'workload=~"(${namespace}/)?${service}"'
NO_INTERVAL = (
    "the 80% interval appears only once the forecaster has scored enough of its own errors "
    "at that horizon (minutes to an hour of history)"
)
ACTUAL = (
    "sum by (service) (rate(traces_span_metrics_calls_total"
    f'{{span_kind="SPAN_KIND_SERVER", service=~"${{service}}"}}[{WINDOW}]))'
)

VARIABLES = (
    Variable(
        "namespace",
        "Namespace",
        "label_values(keiko_forecast, workload)",
        "The namespace part of the `workload` label of keiko_forecast (workloads are named "
        "namespace/service from k8s.namespace.name and service.name).",
        regex="/^(.+)\\/[^/]+$/",
    ),
    Variable(
        "service",
        "Service",
        "label_values(keiko_forecast, workload)",
        "The service part of the `workload` label of keiko_forecast.",
        regex="/([^/]+)$/",
    ),
)


def forecast(signal: str, horizon: str, bound: str) -> str:
    """``keiko_forecast`` of the selected workloads at one horizon and bound."""
    return f'keiko_forecast{{{WORKLOAD}, signal="{signal}", horizon="{horizon}", bound="{bound}"}}'


FORECASTS = Row(
    "Forecasts",
    (
        Panel(
            "timeseries",
            "Request rate: forecast 5 min ahead, 80% interval, actual",
            "keiko_forecast{signal=rate, horizon=5m}: the rate expected 5 min from each point, "
            "with its 80% interval (bound lower/upper), next to the actual rate of server spans "
            "(traces_span_metrics_calls_total): the actual should fall in the interval drawn "
            "5 min earlier about 80% of the time.",
            (
                Query(forecast("rate", "5m", "point"), "forecast {{workload}}"),
                Query(
                    forecast("rate", "5m", "lower"),
                    "lower {{workload}}",
                    may_be_empty=NO_INTERVAL,
                ),
                Query(
                    forecast("rate", "5m", "upper"),
                    "upper {{workload}}",
                    may_be_empty=NO_INTERVAL,
                ),
                Query(ACTUAL, "actual {{service}}"),
            ),
            unit="reqps",
            width=12,
            height=9,
        ),
        Panel(
            "timeseries",
            "Request rate: forecast 15 min and 1 h ahead",
            "keiko_forecast{signal=rate} at the longer horizons (point forecasts).",
            (
                Query(forecast("rate", "15m", "point"), "15 min {{workload}}"),
                Query(forecast("rate", "1h", "point"), "1 h {{workload}}"),
            ),
            unit="reqps",
            width=12,
            height=9,
        ),
        Panel(
            "timeseries",
            "CPU: forecast 5 min ahead with 80% interval",
            "keiko_forecast{signal=cpu}: cores, from the CPU time counters applications send "
            "(process.cpu.time, container.cpu.time, k8s.pod.cpu.time).",
            (
                Query(
                    f'keiko_forecast{{{WORKLOAD}, signal="cpu", horizon="5m"}}',
                    "{{bound}} {{workload}}",
                    may_be_empty="no CPU time counter is sent for the workload",
                ),
            ),
            width=12,
        ),
        Panel(
            "timeseries",
            "Forecast peak over the advisor's horizon",
            "keiko_forecast_peak_rate: the peak request rate the advisor sizes for, with its "
            "interval (bound lower/upper).",
            (
                Query(
                    f'max by (workload) (keiko_forecast_peak_rate{{{WORKLOAD}, bound="point"}})',
                    "peak {{workload}}",
                ),
                Query(
                    "max by (workload, bound) "
                    f'(keiko_forecast_peak_rate{{{WORKLOAD}, bound=~"lower|upper"}})',
                    "{{bound}} {{workload}}",
                    may_be_empty=NO_INTERVAL,
                ),
            ),
            unit="reqps",
            width=12,
        ),
    ),
)

ADVICE = Row(
    "Advice",
    (
        Panel(
            "timeseries",
            "Advised against current replicas",
            "keiko_scaling_desired_replicas by workload and mode (reactive until the forecast "
            "has an hour of history, then predictive): what a KEDA prometheus trigger or an HPA "
            "external metric runs; keiko_scaling_observed_replicas: the replicas keiko sees "
            "reporting (kube-state-metrics' kube_deployment_status_replicas says the same from "
            "the API server). max by workload: two keiko analyze replicas may export a "
            "workload while its partition moves.",
            (
                Query(
                    f"max by (workload, mode) (keiko_scaling_desired_replicas{{{WORKLOAD}}})",
                    "{{workload}} advised ({{mode}})",
                ),
                Query(
                    f"max by (workload) (keiko_scaling_observed_replicas{{{WORKLOAD}}})",
                    "{{workload}} current",
                ),
            ),
            width=12,
        ),
        Panel(
            "timeseries",
            "Advisor progress",
            "keiko_scaling_lag_records (metrics records not processed yet) and "
            "keiko_scaling_events_total (scaling_advice events written) per second.",
            (
                Query("keiko_scaling_lag_records", "lag (records)"),
                Query(f"rate(keiko_scaling_events_total[{WINDOW}])", "advice events/s"),
            ),
            width=12,
        ),
    ),
)

BOARD = Board(
    uid="keiko-scaling",
    title="keiko / Predictive scaling",
    description="keiko's forecasts (keiko_forecast, keiko_forecast_peak_rate) against the "
    "actual rate, and the advised replicas (keiko_scaling_desired_replicas) against the "
    "current ones (keiko_scaling_observed_replicas); needs "
    "analytics.scaling.enabled. Variables: namespace and service = the two parts of the "
    "`workload` label of keiko_forecast.",
    rows=(FORECASTS, ADVICE),
    variables=VARIABLES,
    tags=("keiko", "scaling"),
)
