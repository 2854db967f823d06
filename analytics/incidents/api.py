"""``GET /api/v1/incidents``: the latest version of recent incidents, newest first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PATH = "/api/v1/incidents"
STATUSES = ("open", "closed")


def route(recent: Callable[[], list[dict[str, Any]]]) -> Route:
    """The route over the stage's recent incidents (read when a request comes)."""

    async def incidents(request: Request) -> JSONResponse:
        status = request.query_params.get("status", "")
        if status and status not in STATUSES:
            return JSONResponse(
                {
                    "error": "bad_parameter",
                    "detail": f"status must be one of {', '.join(STATUSES)} (or absent for "
                    f"both), not {status!r}",
                },
                status_code=400,
            )
        found = [e for e in reversed(recent()) if not status or e["status"] == status]
        return JSONResponse({"incidents": found})

    return Route(PATH, incidents, methods=["GET"], name="incidents")
