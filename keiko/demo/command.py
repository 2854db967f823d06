"""`keiko demo`: run the instrumented demo shop against a running keiko and show the result."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from keiko.commands.common import positive_float
from keiko.demo import FAULT_TARGETS, MODEL_API, SERVICES
from keiko.demo.faults import FAULT_SYNTAX, Fault, parse_fault, parse_seconds
from keiko.demo.notified import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from keiko.demo.api import ApiClient
    from keiko.demo.load import LoadGenerator
    from keiko.demo.notified import DemoReceiver
    from keiko.demo.otel import ExportTally

DEFAULT_PORTS = {"grpc": 4317, "http": 4318}
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FLUSH_TIMEOUT_S = 15.0
MAX_READ_RECORDS = 20_000  # per stream; beyond, the store's own counts are used
PROGRESS_EVERY_S = 5.0
ANOMALY_WAIT_S = 15.0
INCIDENT_WAIT_S = 45.0
NOTIFY_WAIT_S = 30.0

DESCRIPTION = """\
Start a small shop made of five services that call each other over HTTP on loopback:
frontend, checkout, cart (with a fake Redis), payment (JSON-RPC) and llm-agent, an LLM
shopping assistant that calls a fake model API and uses the cart as a tool (gen_ai.*
attributes). Each service is instrumented with the OpenTelemetry SDK and sends its traces,
metrics and logs with the SDK's OTLP exporters to a running keiko. A load generator sends
--rate requests per second for --duration; then the demo asks keiko's API what it stored
and shows it: spans, errors and latency per service, the calls between services, metrics,
logs, one trace as a tree, the anomalies keiko's detectors reported on the events
stream (they learn each series' normal behaviour first: start a fault after about 35 s to
see it flagged), and the incident keiko opened from them: its ranked root causes with
their evidence and example traces (it waits for the incident's analysis, which starts
once the incident has settled, 20 s by default).

--fault makes one service (or the fake redis / model-api) slow or failing, to see how that
shows up in keiko: SERVICE:latency=200ms, SERVICE:errors=0.3 (a share of requests fails),
both at once, and after=10s to start the fault later in the run.

Exit status: 0 when keiko acknowledged every export and its store holds all of it,
1 otherwise (the reason is printed), 2 for bad arguments."""

EPILOG = """\
examples:
  make run        # in another terminal (or: keiko run)
  keiko demo                                    20 s at 10 requests/s over OTLP/gRPC
  keiko demo --protocol http --duration 0       OTLP/HTTP until Ctrl-C
  keiko demo --fault payment:errors=0.3         30% of the payment calls fail
  keiko demo --fault cart:latency=200ms,after=10s --duration 30
  keiko demo --fault cart:latency=200ms,after=35s --duration 50
                                                the detectors learn 35 s, then flag cart;
                                                the incident names cart as the cause
  keiko demo --json > demo.json                 machine-readable summary on stdout
  keiko demo --otlp-endpoint https://keiko.example:4317 --api https://keiko.example:8470 \\
             --ca ca.pem --token "$TOKEN"
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `keiko demo` to the CLI; its handler returns the exit status."""
    from keiko.commands.common import HelpFormatter

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run instrumented demo services against a running keiko",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    target = parser.add_argument_group("where keiko is")
    target.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="keiko's OTLP receiver (default: http://127.0.0.1:4317 for grpc, "
        "http://127.0.0.1:4318 for http; https:// for TLS)",
    )
    target.add_argument(
        "--protocol",
        choices=("grpc", "http"),
        default="grpc",
        help="OTLP/gRPC or OTLP/HTTP protobuf (/v1/traces ...) (default: grpc)",
    )
    target.add_argument(
        "--api",
        metavar="URL",
        default="http://127.0.0.1:8470",
        help="keiko's HTTP API (default: %(default)s)",
    )
    target.add_argument(
        "--token",
        metavar="TOKEN",
        default=None,
        help="bearer token for the OTLP receiver and the API (default: $KEIKO_TOKEN if set)",
    )
    target.add_argument(
        "--ca", metavar="PEM", type=Path, help="CA bundle to verify keiko's TLS certificates"
    )
    target.add_argument(
        "--client-cert",
        metavar="PEM",
        type=Path,
        help="client certificate for mutual TLS (with --client-key)",
    )
    target.add_argument("--client-key", metavar="PEM", type=Path, help="its private key")
    target.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify keiko's TLS certificates (API and OTLP/HTTP only: gRPC needs --ca)",
    )
    run = parser.add_argument_group("what to run")
    run.add_argument(
        "--rate",
        type=positive_float,
        default=10.0,
        metavar="N",
        help="requests per second to the frontend (default: %(default)g)",
    )
    run.add_argument(
        "--duration",
        type=_duration,
        default=20.0,
        metavar="TIME",
        help="how long to send, e.g. 20, 20s, 2m; 0 = until Ctrl-C (default: 20s)",
    )
    run.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        type=_fault,
        help=f"inject a fault (repeatable): {FAULT_SYNTAX}; "
        f"SERVICE is one of {', '.join(FAULT_TARGETS)}",
    )
    run.add_argument(
        "--receiver",
        metavar="HOST:PORT",
        default=DEFAULT_ADDRESS,
        help="where the demo listens for keiko's notification (the `keiko-demo` webhook "
        "receiver of deploy/keiko-demo.yaml; default: %(default)s)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON on stdout (progress goes to stderr)",
    )
    parser.set_defaults(func=run_demo)


def _duration(text: str) -> float:
    try:
        return parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fault(text: str) -> tuple[str, Fault]:
    try:
        return parse_fault(text, FAULT_TARGETS)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Console:
    """Where the demo talks: stdout, or stderr when stdout carries the JSON summary."""

    def __init__(self, json_mode: bool) -> None:
        self.stream = sys.stderr if json_mode else sys.stdout

    def say(self, line: str = "") -> None:
        """Print one line now (flushed, so progress shows up live)."""
        print(line, file=self.stream, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    """The `keiko demo` handler: check keiko, run the shop under load, report, judge."""
    import os

    from keiko.demo.api import ApiClient, ApiError

    console = Console(args.json)
    try:
        faults = _faults(args.fault)
        endpoint = _endpoint(args.otlp_endpoint, args.protocol)
        if args.insecure and args.protocol == "grpc" and endpoint.startswith("https://"):
            raise ValueError(
                "--insecure does not work with gRPC (grpcio always verifies "
                "certificates): give --ca PEM, or use --protocol http"
            )
    except ValueError as exc:
        print(f"keiko demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    token = args.token or os.environ.get("KEIKO_TOKEN") or None
    api = ApiClient(args.api, token, args.ca, args.client_cert, args.client_key, args.insecure)
    try:
        before = api.stats()
    except ApiError as exc:
        console.say(f"keiko demo: {exc}")
        if not exc.reachable:
            console.say(
                "Start keiko first, e.g. in another terminal: `make run` (or `keiko run`),"
                " or point the demo at it with --api URL and --otlp-endpoint URL."
            )
        return EXIT_FAILURE
    problem = _reachable(endpoint)
    if problem:
        console.say(
            f"keiko demo: keiko's OTLP receiver is not reachable at {endpoint} "
            f"({problem}). Is keiko running with OTLP/{args.protocol} enabled there?"
        )
        return EXIT_FAILURE
    from keiko.demo.notified import DemoReceiver

    try:
        receiver = DemoReceiver(args.receiver)
    except (OSError, ValueError) as exc:
        console.say(f"keiko demo: cannot listen on {args.receiver} for notifications: {exc}")
        return EXIT_FAILURE
    with receiver:
        return _run(args, console, api, before, endpoint, token, faults, receiver)


def _run(
    args: argparse.Namespace,
    console: Console,
    api: ApiClient,
    before: dict[str, Any],
    endpoint: str,
    token: str | None,
    faults: dict[str, Fault],
    receiver: DemoReceiver,
) -> int:
    # The OTel SDK is imported only now: `keiko --help` and the other commands stay light.
    from keiko.demo.faults import FaultPlan
    from keiko.demo.load import LoadGenerator
    from keiko.demo.otel import ExportErrors, ExportTally, ExportTarget
    from keiko.demo.received import read_received
    from keiko.demo.report import RunResult, stream_figures
    from keiko.demo.shop import Shop

    target = ExportTarget(
        endpoint, args.protocol, token, args.ca, args.client_cert, args.client_key, args.insecure
    )
    tally, plan = ExportTally(), FaultPlan(dict(faults))
    with ExportErrors() as export_errors:
        shop = Shop(target, tally, plan)
        shop.start()
        try:
            _announce(console, args, endpoint, shop, faults)
            load = LoadGenerator(shop.frontend_url, args.rate)
            plan.restart_clock()  # after= counts from the first request
            seconds, interrupted = _send(console, load, tally, args.duration)
            started = time.monotonic()
            flushed = shop.flush(FLUSH_TIMEOUT_S)
        finally:
            shop.stop()  # also shuts the SDK providers down, which exports the last metrics
        console.say(f"flushed telemetry in {time.monotonic() - started:.1f} s")
    figures_before = stream_figures(before)
    start = {name: fig["last_offset"] + 1 for name, fig in figures_before.items()}
    try:
        if faults:
            _await_anomalies(console, api, start.get("events", 1), set(faults))
            _await_incident(console, api, start.get("events", 1), set(faults))
        notifications = _await_notification(console, api, receiver, bool(faults))
        after = stream_figures(api.stats())
        received = read_received(
            api, start, shop.instance_ids(), MAX_READ_RECORDS, set(SERVICES) | set(faults)
        )
    except Exception as exc:  # ApiError, or a payload this version cannot read
        console.say(f"keiko demo: reading back what keiko stored failed: {exc}")
        return EXIT_FAILURE
    result = RunResult(
        endpoint=endpoint,
        protocol=args.protocol,
        api=args.api,
        seconds=seconds,
        load=load.stats.summary(),
        exported=tally.snapshot(),
        flushed=flushed,
        before=figures_before,
        after=after,
        received=received,
        faults=faults,
        export_errors=export_errors.messages,
        interrupted=interrupted,
        notifications=notifications,
    )
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        for line in result.text():
            console.say(line)
    return EXIT_FAILURE if result.problems() else EXIT_OK


def _await_anomalies(console: Console, api: ApiClient, start: int, faulty: set[str]) -> None:
    """keiko's detectors read the metrics stream on their own: give them a moment to write
    their events about the faulty services (the last metric export has just arrived)."""
    from keiko.demo.received import read_anomalies

    console.say("waiting up to 15 s for keiko's anomaly detector to catch up")
    deadline = time.monotonic() + ANOMALY_WAIT_S
    while time.monotonic() < deadline:
        if read_anomalies(api, start, faulty, MAX_READ_RECORDS):
            return
        time.sleep(1.0)


def _await_incident(console: Console, api: ApiClient, start: int, faulty: set[str]) -> None:
    """keiko opens an incident from the anomalies and ranks root causes once it settled
    (analytics.incidents.settle, 20 s by default): wait for that analysis."""
    from keiko.demo.received import read_anomalies, read_incidents

    if not read_anomalies(api, start, faulty, MAX_READ_RECORDS):
        return  # no anomaly, so no incident to wait for
    console.say(f"waiting up to {INCIDENT_WAIT_S:.0f} s for keiko to analyse the incident")
    deadline = time.monotonic() + INCIDENT_WAIT_S
    while time.monotonic() < deadline:
        if read_incidents(api, start, faulty, MAX_READ_RECORDS):
            return
        time.sleep(1.0)


def _await_notification(
    console: Console, api: ApiClient, receiver: DemoReceiver, faulty: bool
) -> list[dict[str, Any]]:
    """keiko routes the incident's alert to the demo's webhook (when its config has the
    `keiko-demo` receiver): wait for that one notification."""
    from keiko.demo.notified import RECEIVER

    if not faulty:
        return []
    if RECEIVER not in api.receivers():
        console.say(
            f"(keiko has no {RECEIVER!r} receiver, so no notification comes to the demo: "
            "run keiko with `--config deploy/keiko-demo.yaml` to see the fault end in one)"
        )
        return []
    console.say(
        f"waiting up to {NOTIFY_WAIT_S:.0f} s for keiko's notification at {receiver.address}"
    )
    return receiver.incident_notifications(NOTIFY_WAIT_S)


def _send(
    console: Console, load: LoadGenerator, tally: ExportTally, duration: float
) -> tuple[float, bool]:
    """Send the load for ``duration`` (0: until Ctrl-C); ``(seconds, interrupted)``."""
    stop = threading.Event()

    def progress(elapsed: float) -> None:
        console.say(_progress_line(elapsed, load.stats.summary(), tally.snapshot()))

    started = time.monotonic()
    try:
        return load.run(duration, stop, progress, PROGRESS_EVERY_S), False
    except KeyboardInterrupt:
        stop.set()
        console.say("interrupted: flushing what was recorded so far")
        return time.monotonic() - started, True


def _faults(given: list[tuple[str, Fault]]) -> dict[str, Fault]:
    faults: dict[str, Fault] = {}
    for service, fault in given:
        if service in faults:
            raise ValueError(
                f"--fault: {service} is given twice; combine them, e.g. "
                f"{service}:latency=100ms,errors=0.2"
            )
        faults[service] = fault
    return faults


def _endpoint(given: str | None, protocol: str) -> str:
    """``http(s)://host:port`` of the OTLP receiver; a bare ``host:port`` means http."""
    if not given:
        return f"http://127.0.0.1:{DEFAULT_PORTS[protocol]}"
    url = urlsplit(given if "://" in given else f"http://{given}")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"--otlp-endpoint {given!r}: expected http(s)://host:port")
    if url.path.strip("/"):
        raise ValueError(
            f"--otlp-endpoint {given!r}: give no path (the demo adds /v1/traces ... for OTLP/HTTP)"
        )
    return f"{url.scheme}://{url.netloc}"


def _reachable(endpoint: str) -> str | None:
    """None if a TCP connection to ``endpoint`` opens, else why not."""
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=3).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _announce(
    console: Console, args: argparse.Namespace, endpoint: str, shop: Any, faults: dict[str, Fault]
) -> None:
    addresses = shop.directory.addresses
    console.say(
        f"keiko demo: {len(shop.services)} services → OTLP/{args.protocol} {endpoint}, "
        f"keiko API {args.api}"
    )
    ports = [f"{name} :{port}" for name, (_, port) in addresses.items() if name != MODEL_API]
    ports.append(f"{MODEL_API} :{addresses[MODEL_API][1]} (an external API: no telemetry)")
    console.say("  " + ", ".join(ports))
    for service, fault in faults.items():
        console.say(f"  fault: {service} {fault.describe()}")
    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
    console.say(f"sending {args.rate:g} requests/s {until} (progress every {PROGRESS_EVERY_S:g} s)")


def _progress_line(elapsed: float, load: dict[str, Any], exported: dict[str, Any]) -> str:
    acked = ", ".join(
        f"{exported[s]['acked']} {w}"
        for s, w in (("traces", "spans"), ("metrics", "points"), ("logs", "logs"))
    )
    failed = sum(e["failed_batches"] for e in exported.values())
    export_failures = f", {failed} exports FAILED" if failed else ""
    dropped = f", {load['dropped']} dropped (too many in flight)" if load["dropped"] else ""
    return (
        f"  [{elapsed:4.0f}s] {load['sent']} requests: {load['ok']} ok, {load['failed']} "
        f"failed{dropped} · p50 {load['p50_ms']:g} ms, p95 {load['p95_ms']:g} ms · keiko acked "
        f"{acked}{export_failures}"
    )
