"""A real Prometheus (Debian's package) evaluates rules that fire and sends its alerts to
keiko's Alertmanager API v2, unchanged; keiko groups and routes them to a webhook."""

from __future__ import annotations

from pathlib import Path

from fixtures.keiko import KeikoFactory
from fixtures.prometheus import Prometheus, alertmanager_config
from fixtures.receiver import Receiver

RULES = {
    "groups": [
        {
            "name": "demo",
            "interval": "1s",
            "rules": [
                {
                    "alert": "HighErrorRate",
                    "expr": 'label_replace(vector(1), "service", "cart", "", "")',
                    "labels": {"severity": "page"},
                    "annotations": {"summary": "cart errors above 5%"},
                },
                {
                    "alert": "HighErrorRate",
                    "expr": 'label_replace(vector(1), "service", "checkout", "", "")',
                    "labels": {"severity": "page"},
                    "annotations": {"summary": "checkout errors above 5%"},
                },
                {
                    "alert": "DiskFilling",
                    "expr": "vector(1)",
                    "labels": {"severity": "ticket"},
                },
            ],
        }
    ]
}


def test_prometheus_alerts_are_grouped_and_routed(
    keiko_process: KeikoFactory, tmp_path: Path
) -> None:
    with Receiver() as pager, Receiver() as tickets:
        kp = keiko_process(
            {
                "alerting": {
                    "router": {
                        "route": {
                            "receiver": "tickets",
                            "group_by": ["alertname"],
                            "group_wait": "2s",
                            # Prometheus sends each rule's alerts on its own, and alerts it
                            # found before it discovered keiko are older than group_wait
                            # (flushed at once, as Alertmanager does): the second follows
                            # at the next group_interval.
                            "group_interval": "1s",
                            "routes": [{"receiver": "pager", "matchers": ['severity="page"']}],
                        },
                        "receivers": [
                            {"name": "pager", "webhook_configs": [{"url": pager.url}]},
                            {"name": "tickets", "webhook_configs": [{"url": tickets.url}]},
                        ],
                    }
                }
            }
        )
        target = kp.api_url.removeprefix("http://")
        config = {
            "global": {"evaluation_interval": "1s", "scrape_interval": "5s"},
            "alerting": alertmanager_config(target),
            "scrape_configs": [{"job_name": "keiko", "static_configs": [{"targets": [target]}]}],
        }
        with Prometheus(tmp_path / "prom", config, RULES):
            pages = pager.wait(1, timeout=60, where=lambda _, d: len(d["alerts"]) == 2)
            ((_, ticket),) = tickets.wait(1, timeout=30)
        assert len({d["groupKey"] for _, d in pager.posts}) == 1  # one group throughout
        page = pages[0][1]
        assert page["receiver"] == "pager" and page["groupLabels"] == {"alertname": "HighErrorRate"}
        assert sorted(a["labels"]["service"] for a in page["alerts"]) == ["cart", "checkout"]
        assert {a["annotations"]["summary"] for a in page["alerts"]} == {
            "cart errors above 5%",
            "checkout errors above 5%",
        }
        assert all(a["generatorURL"].startswith("http") for a in page["alerts"])
        assert ticket["receiver"] == "tickets"
        assert [a["labels"]["alertname"] for a in ticket["alerts"]] == ["DiskFilling"]
