"""The demo's own notification receiver: a webhook on loopback that keiko's alerting routes
the demo's incident to (receiver ``keiko-demo`` in deploy/keiko-demo.yaml), so the demo can
show the one notification an injected fault ends in, with its evidence."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECEIVER = "keiko-demo"
DEFAULT_ADDRESS = "127.0.0.1:8479"
MAX_CAUSES, MAX_TRACES = 3, 3


class DemoReceiver:
    """Records the Alertmanager-shaped webhook posts it gets (a context manager)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.posts: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    body = json.loads(self.rfile.read(int(self.headers["content-length"] or 0)))
                except (ValueError, TypeError):
                    self.send_response(400)
                else:
                    with outer._cond:
                        outer.posts.append(body)
                        outer._cond.notify_all()
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
        self.address = address
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DemoReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def incident_notifications(self, timeout: float) -> list[dict[str, Any]]:
        """Notifications that carry an incident's evidence, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [p for p in self.posts if p.get("evidence")]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self._cond.wait(left)


def notification_lines(post: dict[str, Any], faults: set[str]) -> list[str]:
    """One delivered notification as the demo prints it."""
    alerts = post.get("alerts", [])
    names = sorted({a.get("labels", {}).get("alertname", "?") for a in alerts})
    lines = [
        "",
        f"Notification delivered to {post.get('receiver')} ({RECEIVER} webhook): "
        f"[{post.get('status', '?').upper()}] {', '.join(names)}: {len(alerts)} alert(s) "
        f"in one notification, grouped by {post.get('groupLabels')}",
    ]
    for ev in post.get("evidence", []):
        lines.append(f"  incident {ev.get('id')}: {ev.get('summary', '')}")
        for k, cause in enumerate(ev.get("root_causes", [])[:MAX_CAUSES], 1):
            mark = "   <- fault" if cause.get("service") in faults else ""
            lines.append(f"  {k}. {cause.get('service')} (score {cause.get('score', 0):.2f}){mark}")
        traces = ev.get("traces", [])[:MAX_TRACES]
        if traces:
            lines.append(f"  example traces: {', '.join(traces)}")
        for link in ev.get("links", [])[:3]:
            lines.append(f"  {link.get('title')}: {link.get('url')}")
    return lines
