"""The remediation API: ``GET /api/v1/remediations`` (recent requests and the pending
approvals), ``POST /api/v1/remediations/{request_id}/approve`` and ``.../reject`` with
``{"by": "who", "comment": "why"}``. Errors are ``{"error", "detail"}``: 400 bad body,
404 unknown request, 409 already decided."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from keiko.api.errors import error_response
from keiko.store.config import Strict

if TYPE_CHECKING:
    from alerting.remediation.runner import Remediator

PATH = "/api/v1/remediations"
STATUSES = (
    "admitted",
    "retrying",
    "running",
    "awaiting_approval",
    "approved",
    "rejected",
    "executed",
    "dry_run",
    "failed",
    "skipped",
)


class Decision(Strict):
    """The body of approve and reject."""

    by: str = Field(min_length=1, max_length=200, description="Who decides.")
    comment: str = Field(default="", max_length=2000, description="Why (optional).")


def routes(remediator: Remediator) -> list[BaseRoute]:
    """The three routes over ``remediator``."""

    async def listing(request: Request) -> JSONResponse:
        status = request.query_params.get("status", "")
        if status and status not in STATUSES:
            detail = f"status must be one of {', '.join(STATUSES)} (or absent), not {status!r}"
            return error_response(400, "bad_parameter", detail)
        pending = remediator.listing("awaiting_approval")
        return JSONResponse({"remediations": remediator.listing(status), "pending": pending})

    async def approve(request: Request) -> JSONResponse:
        return await _decide(remediator, request, approve=True)

    async def reject(request: Request) -> JSONResponse:
        return await _decide(remediator, request, approve=False)

    return [
        Route(PATH, listing, methods=["GET"], name="remediations"),
        Route(PATH + "/{request_id}/approve", approve, methods=["POST"], name="approve"),
        Route(PATH + "/{request_id}/reject", reject, methods=["POST"], name="reject"),
    ]


async def _decide(remediator: Remediator, request: Request, *, approve: bool) -> JSONResponse:
    from alerting.remediation.runner import AlreadyDecided, UnknownRequest

    try:
        decision = Decision.model_validate(json.loads(await request.body()))
    except json.JSONDecodeError as e:
        return error_response(400, "bad_request", f"the body is not JSON: {e}")
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()
        )
        return error_response(
            400, "bad_request", f'{problems} (send {{"by": "name", "comment": "why"}})'
        )
    request_id = request.path_params["request_id"]
    try:
        record = await remediator.decide(request_id, approve, decision.by, decision.comment)
    except UnknownRequest:
        return error_response(404, "not_found", f"no remediation request {request_id!r}")
    except AlreadyDecided as e:
        return error_response(409, "conflict", str(e))
    return JSONResponse(remediator.public(record))
