"""The incident report of §6.2, shaped from ``selectors.incident_report`` for its admin page
and its Markdown download (``templates/incidents/report.md``).

The values are given as they are: the HTML page escapes them as Django templates do, and the
Markdown template passes every one that people or senders supply through the filters of
``incidents.templatetags.markdown_text``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from ..models import Status
from ..report_extensions import FollowUps
from . import display as ui


def report_context(report: dict[str, Any]) -> dict[str, Any]:
    """The §6.2 report's values, shaped for its HTML page and its Markdown file."""
    incident = report["incident"]
    follow_ups = report.get("follow_up_actions") or FollowUps()
    timeline = [
        {
            "at": entry.occurred_at,
            "kind": entry.get_kind_display(),
            "source": entry.get_source_display(),
            "who": entry.actor_label,
            "message": entry.message,
        }
        for entry in report["timeline"]
    ]
    status_note = ""
    if incident.status == Status.CANCELLED:
        status_note = (
            f"cancelled as a duplicate of {incident.duplicate_of.number}"
            if incident.duplicate_of_id and incident.duplicate_of is not None
            else "cancelled"
        )
        if incident.cancel_reason:
            status_note += f": {incident.cancel_reason}"
    roles = [
        {"role": assignment.role.name, "who": ui.person(assignment.user)}
        for assignment in report["roles"]
    ]
    return {
        "incident": incident,
        "start": report["start"],
        "end": report["end"],
        "report_status": incident.report_status,
        "status_note": status_note,
        "services": ", ".join(service.name for service in report["services"]),
        "roles": roles,
        "timeline": timeline,
        # Follow-up actions and further sections (the published review) come from the apps
        # above the core through ``incidents.report_extensions``; none are invented here.
        "follow_ups": follow_ups.actions,
        "follow_ups_unavailable": follow_ups.unavailable,
        "sections": list(report.get("sections") or []),
        "generated_at": timezone.now(),
        "severity_text": ui.severity_text(incident.severity),
        "targets": target_rows(incident),
    }


def _target_row(
    label: str,
    *,
    start: datetime,
    end: datetime | None,
    target: timedelta | None,
    missed: bool,
    active: bool,
) -> dict[str, str]:
    took = ui.duration_text((end - start).total_seconds()) if end is not None else ""
    if target is None:
        verdict = "no target"
    elif end is None and not active:
        verdict = "–"
    elif missed:
        verdict = "missed"
    elif end is None:
        verdict = "running"
    else:
        verdict = "met"
    return {
        "label": label,
        "took": took or ("not yet" if active else "never"),
        "target": ui.target_text(target) if target is not None else "",
        "verdict": verdict,
    }


def target_rows(incident, now: datetime | None = None) -> list[dict[str, str]]:
    """Time to acknowledge, mitigate and resolve, each against its severity's target: met,
    missed, running (not reached yet, still in time) or no target (the policy sets none for
    mitigation). Met or missed follows the incident's own due times (a breach recorded stays
    missed, as on the incident's clock)."""
    now = now or timezone.now()
    severity = incident.severity
    active = incident.is_active
    return [
        _target_row(
            "Time to acknowledge",
            start=incident.detected_at,
            end=incident.acknowledged_at,
            target=severity.response_target if severity else None,
            missed=incident.response_breached_at(now),
            active=active,
        ),
        _target_row(
            "Time to mitigate",
            start=incident.detected_at,
            end=incident.mitigated_at,
            target=None,
            missed=False,
            active=active,
        ),
        _target_row(
            "Time to resolve",
            start=incident.detected_at,
            end=incident.resolved_at,
            target=severity.resolution_target if severity else None,
            missed=incident.resolution_breached_at(now),
            active=active,
        ),
    ]
