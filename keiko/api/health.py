"""Liveness, readiness and Prometheus metrics: the endpoints Kubernetes and Prometheus poll."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keiko.api.state import state_of


async def healthz(request: Request) -> Response:
    """200 while the process serves requests at all."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when every component runs and the store can take writes, else 503 with why."""
    state = state_of(request)
    if state.stopping.is_set():
        return JSONResponse({"ready": False, "reason": "shutting down"}, status_code=503)
    if not state.components_started:
        return JSONResponse({"ready": False, "reason": "starting"}, status_code=503)
    readiness = await state.store.readiness()
    if not readiness.ready:
        return JSONResponse(
            {"ready": False, "reason": readiness.reason or "store not ready"}, status_code=503
        )
    return JSONResponse({"ready": True})


async def metrics(request: Request) -> Response:
    """keiko's own metrics in the Prometheus text format."""
    body = generate_latest(state_of(request).telemetry.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
