"""`keiko demo`: a small instrumented shop that sends real OpenTelemetry data to keiko.

Modules: ``command`` (the CLI subcommand), ``shop`` (the services and what they do),
``service`` (the HTTP and OpenTelemetry plumbing each service shares), ``otel`` (SDK
providers and counted OTLP exporters), ``faults`` (latency and error injection), ``load``
(the open-loop load generator), ``api`` / ``received`` / ``report`` (reading back what keiko
stored and judging the run).

The names below are kept here, free of imports, so that the CLI can describe the demo
without loading the OpenTelemetry SDK.
"""

SERVICES = ("frontend", "checkout", "cart", "payment", "llm-agent")
# Dependencies that are not instrumented services but can still be made slow or failing.
REDIS, MODEL_API = "redis", "model-api"
FAULT_TARGETS = (*SERVICES, REDIS, MODEL_API)
