"""A small client of keiko's HTTP API (stdlib only): store stats and pages of records."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

PAGE = 1000  # records per request (the API's maximum)


class ApiError(Exception):
    """keiko's API answered with an error, or could not be reached (``reachable`` False)."""

    def __init__(self, message: str, reachable: bool = True) -> None:
        super().__init__(message)
        self.reachable = reachable


@dataclass(frozen=True, slots=True)
class ApiClient:
    """GETs JSON from keiko's API at ``base`` (``http(s)://host:port``)."""

    base: str
    token: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    insecure: bool = False
    timeout: float = 10.0

    def _context(self) -> ssl.SSLContext | None:
        if not self.base.startswith("https://"):
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            ctx.load_cert_chain(
                str(self.client_cert), str(self.client_key) if self.client_key else None
            )
        return ctx

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` and decode its JSON; raise ApiError naming the URL and the cause."""
        query = {k: v for k, v in params.items() if v is not None}
        url = f"{self.base.rstrip('/')}{path}" + (f"?{urlencode(query)}" if query else "")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._context()
            ) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            hint = " (check --token)" if exc.code in (401, 403) else ""
            raise ApiError(f"GET {url} answered {exc.code}{hint}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(
                f"cannot reach keiko's API at {url}: {reason}", reachable=False
            ) from None
        except ValueError as exc:
            raise ApiError(f"GET {url} did not answer JSON: {exc}") from None

    def receivers(self) -> list[str]:
        """Receiver names from ``GET /api/v2/receivers`` ([] when alerting is off)."""
        try:
            found = self.get("/api/v2/receivers")
        except ApiError:
            return []
        return [r.get("name", "") for r in found] if isinstance(found, list) else []

    def stats(self) -> dict[str, Any]:
        """``GET /api/v1/store/stats``."""
        result: dict[str, Any] = self.get("/api/v1/store/stats")
        return result

    def records(self, stream: str, from_offset: int, max_records: int) -> Iterator[dict[str, Any]]:
        """Records of ``stream`` from ``from_offset`` on, page by page, at most ``max_records``."""
        offset, seen = from_offset, 0
        while seen < max_records:
            page = self.get(
                f"/api/v1/streams/{stream}/records",
                from_offset=offset,
                limit=min(PAGE, max_records - seen),
            )
            records = page.get("records", [])
            if not records:
                return
            yield from records
            seen += len(records)
            offset = int(page["next_offset"])
