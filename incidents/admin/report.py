"""The incident report of §6.2, shaped from ``selectors.incident_report`` for its admin page
and its Markdown download (``templates/incidents/report.md``).

The values are given as they are: the HTML page escapes them as Django templates do, and the
Markdown template passes every one that people or senders supply through the filters of
``incidents.templatetags.markdown_text``."""

from __future__ import annotations

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
    }
