"""The 48-hour documentation rule on the incident page: the report's completeness (which of its
fields are filled) and the countdown to its due time, added through the core's extension point
(``incidents.admin.extensions``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from incidents.admin.extensions import incident_page_panel_register
from incidents.models import Incident

from ..services.documentation import REPORT_FIELDS, documentation_state

PERMISSION = "reviews.view_documentationclock"
# The admin's clock styles (incidents/static/incidents/admin.css).
CSS = {
    "none": "vigil-clock-none",
    "paused": "vigil-clock-none",
    "due": "vigil-clock-warning",
    "overdue": "vigil-clock-breached",
    "met": "vigil-clock-met",
    "late": "vigil-clock-breached",
}


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    state = documentation_state(incident=incident)
    done = len(state.filled)
    fields = format_html_join(
        "",
        '<li class="{}">{} {}</li>',
        [("vigil-clock-met", "✓", label) for label in state.filled]
        + [("vigil-clock-breached", "✗", label) for label in state.missing],
    )
    return format_html(
        '<p class="vigil-documentation"><span class="{}" data-documentation="{}">{}</span></p>'
        '<p>Report {} of {} complete{}</p><ul class="vigil-documentation-fields">{}</ul>',
        CSS[state.state],
        state.state,
        state.text,
        done,
        len(REPORT_FIELDS),
        "." if not state.missing else ": fill in the fields marked ✗ (Edit).",
        fields,
    )


incident_page_panel_register(
    key="documentation",
    title="Incident report (48-hour rule)",
    render=incident_panel,
    permission=PERMISSION,
)
