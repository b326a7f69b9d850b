"""The 30-minute rule in the admin: the countdown of the first public update on the incident
page, and the customer-facing incidents still waiting for theirs on the admin index. Both are
added through the core's extension points (``incidents.admin.extensions``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from incidents.admin.extensions import admin_index_panel_register, incident_page_panel_register
from incidents.models import Incident

from ..selectors import Countdown, first_update_clocks_open, first_update_countdown

PERMISSION = "communications.view_firstupdateclock"
# The admin's clock styles (incidents/static/incidents/admin.css).
CSS = {
    "due": "vigil-clock-warning",
    "overdue": "vigil-clock-breached",
    "met": "vigil-clock-met",
    "late": "vigil-clock-breached",
    "stopped": "vigil-clock-none",
    "none": "vigil-clock-none",
}


def countdown_html(countdown: Countdown) -> Any:
    return format_html(
        '<span class="{}" data-first-update="{}">{}</span>',
        CSS[countdown.state],
        countdown.state,
        countdown.text,
    )


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    countdown = first_update_countdown(incident=incident)
    return format_html('<p class="vigil-first-update">{}</p>', countdown_html(countdown))


def index_panel(*, request: HttpRequest) -> Any:
    rows, total = first_update_clocks_open()
    if not rows:
        return None
    body = format_html_join(
        "\n",
        '<tr><td class="nowrap"><a href="{}">{}</a></td>'
        '<td class="vigil-dashboard-title">{}</td><td>Sev {}</td><td class="nowrap">{}</td></tr>',
        (
            (
                reverse("admin:incidents_incident_change", args=[incident.pk]),
                incident.number,
                incident.title,
                incident.severity_id,
                countdown_html(countdown),
            )
            for incident, countdown in rows
        ),
    )
    more = (
        format_html('<p class="vigil-dashboard-links">{} more not shown.</p>', total - len(rows))
        if total > len(rows)
        else ""
    )
    return format_html(
        '<p class="vigil-dashboard-links">Customer-facing incidents whose first public status '
        "update is still to be published.</p>"
        '<table class="vigil-table"><thead><tr><th scope="col">ID</th><th scope="col">Title</th>'
        '<th scope="col">Sev</th><th scope="col">First public update</th></tr></thead>'
        "<tbody>{}</tbody></table>{}",
        body,
        more,
    )


incident_page_panel_register(
    key="first-update", title="First public update", render=incident_panel, permission=PERMISSION
)
admin_index_panel_register(
    key="first-update",
    title="First public updates due",
    render=index_panel,
    permission=PERMISSION,
)
