"""The webhook action: POST the request as JSON (2xx done; 5xx, 429 or no connection are
retried by the outbox; any other answer is permanent)."""

from __future__ import annotations

from typing import Any

import httpx

from alerting.delivery import Permanent, Retryable
from alerting.remediation.actions import RemediationRequest
from alerting.remediation.config import WebhookAction
from alerting.secrets import REDACTED, redact


class WebhookExecutor:
    """POSTs ``{request_id, action, group_labels, alerts}`` to the configured URL."""

    def __init__(self, action: WebhookAction) -> None:
        self.action = action

    def plan(self, request: RemediationRequest) -> dict[str, Any]:
        """The POST, with the URL and header values hidden (they are secrets)."""
        return {
            "method": "POST",
            "url": f"{REDACTED} ({self.action.url.where()})",
            "headers": sorted(self.action.headers),
            "json": {
                "request_id": request.request_id,
                "action": request.action,
                "group_labels": request.group_labels,
                "alerts": f"{len(request.alerts)} alerts",
            },
            "timeout": self.action.timeout,
        }

    async def execute(self, request: RemediationRequest, call: dict[str, Any]) -> dict[str, Any]:
        """POST once; map the answer to done, Retryable or Permanent."""
        body = {
            "request_id": request.request_id,
            "action": request.action,
            "group_labels": request.group_labels,
            "alerts": request.alerts,
        }
        try:
            url = self.action.url.resolve()
            headers = {k: v.resolve() for k, v in self.action.headers.items()}
        except (KeyError, OSError) as e:
            raise Permanent(f"webhook {self.action.name}: {redact(str(e))}") from None
        try:
            async with httpx.AsyncClient(timeout=self.action.timeout) as client:
                response = await client.post(url, json=body, headers=headers)
        except httpx.TransportError as e:
            raise Retryable(f"webhook: {type(e).__name__}: {redact(str(e))}") from None
        except httpx.InvalidURL as e:
            raise Permanent(f"webhook: bad URL: {redact(str(e))}") from None
        return {**call, "status_code": _check(response)}

    async def close(self) -> None:
        """Nothing to release (a client per POST: remediations are rare)."""


def _check(response: httpx.Response) -> int:
    status = response.status_code
    if 200 <= status < 300:
        return status
    text = redact(response.text[-300:])
    if status >= 500 or status == 429:
        after = response.headers.get("Retry-After", "")
        retry_after = float(after) if after.isdigit() else None
        raise Retryable(f"webhook answered {status}: {text}", retry_after)
    raise Permanent(f"webhook answered {status}: {text}")
