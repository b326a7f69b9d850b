"""Comparing incidents written by two paths (one by one, and together)."""

from __future__ import annotations

import re

from incidents.models import INCIDENT_HISTORY, Alert, AlertGroup


def incidents_seen(incidents, *, strip: tuple[str, ...] = ()) -> list[dict]:
    """What people and followers see of these incidents (fields, services, first history
    records with their service links, timeline, events, alerts and groups), without ids,
    numbers and times, and without the words ``strip`` (the prefixes that tell two runs
    apart). In the incidents' order of creation."""

    def cut(text: str) -> str:
        for word in strip:
            text = text.replace(word, "")
        return text

    def plain(text: str) -> str:
        return re.sub(r"\d+", "N", cut(text))

    seen = []
    for incident in incidents.order_by("pk"):
        history = []
        for record in incident.history.order_by("history_id"):
            links = []
            for field in record._history_m2m_fields:
                model = INCIDENT_HISTORY.m2m_models[field]
                links += model.objects.filter(history=record).values_list("service_id", flat=True)
            history.append((record.history_type, record.history_change_reason, sorted(links)))
        seen.append(
            {
                "title": cut(incident.title),
                "summary": plain(incident.summary),
                "severity": incident.severity_id,
                "priority": (incident.impact, incident.urgency, incident.priority),
                "status": incident.status,
                "detection": incident.detection_source,
                "customer_facing": incident.customer_facing,
                "due": (
                    incident.response_due_at - incident.detected_at,
                    incident.resolution_due_at - incident.detected_at,
                ),
                "services": sorted(incident.services.values_list("slug", flat=True)),
                "history": history,
                "timeline": [
                    (e.kind, e.source, plain(e.message), sorted(e.data))
                    for e in incident.timeline.order_by("pk")
                ],
                "events": [
                    (e.name, e.payload, e.urgent, e.status, e.source)
                    for e in incident.events.order_by("pk")
                ],
                "alerts": sorted(
                    (plain(a.title), a.count, a.status, a.severity, a.action, a.starts_at_estimated)
                    for a in Alert.objects.filter(incident=incident)
                ),
                "groups": AlertGroup.objects.filter(incident=incident).count(),
            }
        )
    return seen
