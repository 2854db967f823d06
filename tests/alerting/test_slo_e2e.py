"""From spans to a page: the demo shop's payment service fails half its calls; keiko's span
metrics feed the SLO stage, whose burn-rate alert is routed to a real webhook receiver."""

from __future__ import annotations

import subprocess
import sys

from fixtures.keiko import KeikoFactory
from fixtures.receiver import Receiver

DEMO = [sys.executable, "-m", "keiko.cli", "demo"]


def test_an_availability_slo_burning_pages_through_a_webhook(keiko_process: KeikoFactory) -> None:
    with Receiver() as pager:
        kp = keiko_process(
            {
                "analytics": {"spanmetrics": {"flush_interval": "5s"}},
                "alerting": {
                    "slo": {
                        "objectives": {
                            "payment-availability": {"service": "payment", "target": 0.999}
                        }
                    },
                    "router": {
                        "route": {
                            "receiver": "null",
                            "group_wait": "1s",
                            "routes": [
                                {
                                    "receiver": "pager",
                                    "matchers": ['alertname="SLOBurnRate"', 'severity="page"'],
                                }
                            ],
                        },
                        "receivers": [
                            {"name": "null"},
                            {"name": "pager", "webhook_configs": [{"url": pager.url}]},
                        ],
                    },
                },
            }
        )
        demo = subprocess.run(
            [
                *DEMO,
                "--api",
                kp.api_url,
                "--otlp-endpoint",
                f"http://{kp.otlp_grpc}",
                "--duration",
                "25",
                "--fault",
                "payment:errors=0.5",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        (_, page), *_ = pager.wait(1, timeout=60)
    alert = page["alerts"][0]
    assert alert["labels"]["alertname"] == "SLOBurnRate"
    assert alert["labels"]["service"] == "payment"
    assert alert["labels"]["objective"] == "payment-availability"
    assert "burning its error budget" in alert["annotations"]["summary"]
