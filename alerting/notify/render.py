"""Titles and bodies of notifications from ``string.Template`` templates.

Templates see a FIXED set of string variables (:data:`VARIABLES`), never objects: user
text is substituted, never evaluated, so a template cannot reach attributes the way
``str.format`` could. Unknown variables are refused when the config is read.
The default body renders an incident's evidence readably: the top root-cause candidates
with their scores and evidence, example trace ids, the call path and dashboard links.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from alerting.model import Notification

VARIABLES = (
    "status",
    "receiver",
    "alertname",
    "group_labels",
    "common_labels",
    "common_annotations",
    "alert_count",
    "summary",
    "evidence_text",
    "links",
    "external_url",
)
DEFAULT_TITLE = "[$status:$alert_count] $alertname: $summary"
DEFAULT_BODY = """$summary

$alert_count alert(s) $status for receiver $receiver
Group: $group_labels
Labels: $common_labels
Annotations: $common_annotations

$evidence_text

Links:
$links
"""
TOP_CAUSES = 3
EVIDENCE_PER_CAUSE = 3
TRACE_IDS = 5


def check_template(text: str) -> str:
    """``text`` if it is a valid template of known variables, else ValueError naming the
    problem and the variables there are."""
    template = string.Template(text)
    if not template.is_valid():
        raise ValueError(
            f"template {text!r} is not valid: write $$ for a literal $ and ${{name}} or $name "
            "for a variable"
        )
    unknown = sorted(set(template.get_identifiers()) - set(VARIABLES))
    if unknown:
        raise ValueError(
            f"template {text!r} uses unknown variable(s) {', '.join(unknown)}; use "
            f"{', '.join(VARIABLES)}"
        )
    return text


@dataclass(frozen=True)
class Rendered:
    """What a channel sends: title, body, links (title, url) and the variables."""

    title: str
    body: str
    links: list[tuple[str, str]]
    variables: dict[str, str]


def render(
    n: Notification,
    title: str | None = None,
    body: str | None = None,
    external_url: str = "",
    dashboards_url: str = "",
) -> Rendered:
    """Render ``n`` with the templates (None: the defaults)."""
    links = notification_links(n, external_url, dashboards_url)
    variables = template_variables(n, links, external_url)
    text_title = string.Template(title or DEFAULT_TITLE).safe_substitute(variables)
    text_body = string.Template(body or DEFAULT_BODY).safe_substitute(variables)
    return Rendered(text_title.strip().rstrip(":").strip(), text_body.strip(), links, variables)


def template_variables(
    n: Notification, links: list[tuple[str, str]], external_url: str
) -> dict[str, str]:
    """The fixed variables of :data:`VARIABLES`, as strings."""
    labels, annotations = n.common("labels"), n.common("annotations")
    return {
        "status": n.status,
        "receiver": n.receiver,
        "alertname": labels.get("alertname") or n.group_labels.get("alertname", ""),
        "group_labels": pairs(n.group_labels),
        "common_labels": pairs(labels),
        "common_annotations": pairs(annotations),
        "alert_count": str(len(n.alerts) + n.truncated_alerts),
        "summary": summary(n, annotations),
        "evidence_text": evidence_text(n.evidence),
        "links": "\n".join(f"- {t}: {u}" for t, u in links) or "-",
        "external_url": external_url,
    }


def pairs(labels: dict[str, str]) -> str:
    """``a=1, b=2`` (sorted)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def summary(n: Notification, common_annotations: dict[str, str]) -> str:
    """The shared summary annotation, else the first alert's, else an incident's."""
    if common_annotations.get("summary"):
        return common_annotations["summary"]
    for alert in n.alerts:
        text = alert.get("annotations", {}).get("summary")
        if text:
            return str(text)
    for incident in n.evidence:
        if incident.get("summary"):
            return str(incident["summary"])
    return ""


def notification_links(
    n: Notification, external_url: str, dashboards_url: str
) -> list[tuple[str, str]]:
    """Links from the evidence (``links``: URLs or ``{title|text|name, url|href}``), the
    alerts' generator URLs, the dashboard and keiko's URL; no duplicates."""
    found: list[tuple[str, str]] = []
    for incident in n.evidence:
        for link in incident.get("links") or []:
            found.append(_link(link))
    for alert in n.alerts:
        if alert.get("generatorURL"):
            found.append(("source", str(alert["generatorURL"])))
    if dashboards_url:
        found.append(("dashboard", dashboards_url))
    if external_url:
        found.append(("keiko", external_url))
    unique: dict[str, str] = {}
    for title, url in found:
        if url and url not in unique:
            unique[url] = title
    return [(title, url) for url, title in unique.items()]


def _link(link: Any) -> tuple[str, str]:
    if isinstance(link, dict):
        url = str(link.get("url") or link.get("href") or "")
        title = link.get("title") or link.get("text") or link.get("name") or "link"
        return str(title), url
    return "link", str(link)


def evidence_text(evidence: list[dict[str, Any]]) -> str:
    """The incidents' root causes, evidence, traces and call paths as plain text."""
    blocks = [_incident_text(incident) for incident in evidence]
    return "\n\n".join(b for b in blocks if b) or "No root-cause evidence attached."


def _incident_text(incident: dict[str, Any]) -> str:
    head = f"Incident {incident.get('id', '?')}"
    if incident.get("summary"):
        head += f": {incident['summary']}"
    lines = [head]
    causes = incident.get("root_causes") or []
    if causes:
        lines.append("Root-cause candidates:")
    traces: list[str] = []
    for rank, cause in enumerate(causes[:TOP_CAUSES], 1):
        where = cause.get("service", "?")
        if cause.get("instance"):
            where += f" ({cause['instance']})"
        lines.append(f"  {rank}. {where}, score {float(cause.get('score', 0.0)):.2f}")
        for ev in (cause.get("evidence") or [])[:EVIDENCE_PER_CAUSE]:
            lines.append(f"     - {ev.get('summary', ev.get('kind', ''))}")
            traces.extend(str(t) for t in ev.get("trace_ids") or [])
        if cause.get("path"):
            lines.append(f"     path: {' -> '.join(str(p) for p in cause['path'])}")
    traces.extend(str(t) for t in incident.get("trace_ids") or [])
    unique = list(dict.fromkeys(traces))[:TRACE_IDS]
    if unique:
        lines.append(f"Example traces: {', '.join(unique)}")
    return "\n".join(lines)
