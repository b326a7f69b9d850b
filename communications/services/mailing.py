"""What a publication says to each recipient: the customer-facing email (text and HTML parts from
``templates/communications/email/``, list and threading headers) and the JSON document a
webhook subscriber receives (Statuspage's webhook payload shape).

A fan-out renders each template ONCE per publication and audience, with placeholder links, and
puts each recipient's own links in by string replacement (HTML-escaped in the HTML part): ten
thousand recipients cost ten thousand replacements, not twenty thousand template renders.

* **Subject**: ``[<page name>] <public status>: <public title> (<incident number>)`` — the
  number is the incident's public id on the status page, and what the inbound email path
  (``incidents.inbound``) recognises in a reply's subject, so a customer's reply lands on the
  incident's timeline. Maintenance: ``[<page name>] Maintenance <step>: <title>``.
* **Body**: the update's Markdown through the status page's sanitizer
  (``communications.markdown``), the company's name and status page link, the components and
  their status, and the recipient's manage-subscription and unsubscribe links (customer
  contacts: their opt-out link).
* **Headers**: ``Auto-Submitted: auto-generated``, ``X-Auto-Response-Suppress``, ``List-Id``,
  ``List-Unsubscribe`` (the one-click https link, and ``mailto:`` when
  ``VIGIL_EMAIL_UNSUBSCRIBE_MAILTO`` is set) with ``List-Unsubscribe-Post:
  List-Unsubscribe=One-Click`` (RFC 8058), ``Reply-To`` when ``VIGIL_CUSTOMER_EMAIL_REPLY_TO`` is
  set, and threading: ``References`` names a stable root id of the incident (or maintenance
  window) and the previous message this recipient got about it, ``In-Reply-To`` that previous
  message (else the root), so every update of one incident is one conversation. The outbox
  gives each message its ``Message-ID`` from its idempotency key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

from escalation.outbox import email_message_id
from incidents.timeformat import when

from ..markdown import markdown_to_html, markdown_to_text
from ..models import (
    ComponentStatus,
    Maintenance,
    MaintenanceStatus,
    StatusPageSettings,
    StatusUpdate,
    UpdateState,
    UpdateStatus,
)

__all__ = [
    "LINK_MANAGE",
    "LINK_UNSUBSCRIBE",
    "Mailing",
    "PageInfo",
    "email_headers",
    "mailing_for_maintenance",
    "mailing_for_update",
    "page_info",
    "thread_root",
]

# Placeholders the templates are rendered with; each recipient's own links replace them.
LINK_MANAGE = "https://vigil-placeholder.invalid/manage"
LINK_UNSUBSCRIBE = "https://vigil-placeholder.invalid/unsubscribe"

# The maintenance steps subscribers (with maintenance notices) are told about, and how.
MAINTENANCE_STEPS = {
    MaintenanceStatus.SCHEDULED: "scheduled",
    MaintenanceStatus.IN_PROGRESS: "in progress",
    MaintenanceStatus.COMPLETED: "completed",
    MaintenanceStatus.CANCELLED: "cancelled",
}
MAINTENANCE_TEXT = {
    MaintenanceStatus.IN_PROGRESS: "The scheduled maintenance is now in progress.",
    MaintenanceStatus.COMPLETED: "The scheduled maintenance has been completed.",
    MaintenanceStatus.CANCELLED: "The scheduled maintenance has been cancelled; nothing will "
    "change at the time announced.",
}


@dataclass(frozen=True)
class PageInfo:
    name: str
    url: str
    zone: ZoneInfo

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "vigil.invalid"


def page_info() -> PageInfo:
    """The status page's name, public address and time zone (its settings row)."""
    row = StatusPageSettings.objects.filter(pk=1).first() or StatusPageSettings()
    url = (row.url or settings.VIGIL_BASE_URL.rstrip("/") + "/status").rstrip("/")
    try:
        zone = ZoneInfo(row.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return PageInfo(name=row.name or "Service status", url=url, zone=zone)


def thread_root(*, incident_id: int | None = None, maintenance_id: int | None = None) -> str:
    """The stable Message-ID every message about one incident (or maintenance window) refers
    to: no message has it, so mail clients group the messages under it."""
    key = (
        f"thread:incident:{incident_id}" if incident_id else f"thread:maintenance:{maintenance_id}"
    )
    return email_message_id(key)


def _when(value: datetime | None, page: PageInfo) -> str:
    """Vigil's one format, in the status page's zone (the zone its readers see times in)."""
    return when(value, zone=page.zone)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Mailing:
    """One publication's content, rendered once: per audience the subject, text and HTML with
    placeholder links; the webhook document; and what the headers need."""

    subject: str
    text: dict[str, str]
    html: dict[str, str]
    webhook_body: str
    thread_root: str
    list_id: str
    template: str
    reason: str

    def email_for(self, audience: str, *, manage: str, unsubscribe: str) -> tuple[str, str]:
        """The text and HTML parts for one recipient, with their links."""
        text = (
            self.text[audience].replace(LINK_MANAGE, manage).replace(LINK_UNSUBSCRIBE, unsubscribe)
        )
        html = (
            self.html[audience]
            .replace(LINK_MANAGE, escape(manage))
            .replace(LINK_UNSUBSCRIBE, escape(unsubscribe))
        )
        return text, html

    def webhook_for(self, *, unsubscribe: str) -> str:
        # A URL holds no character JSON escapes; json.dumps keeps that true for any input.
        return self.webhook_body.replace(json.dumps(LINK_UNSUBSCRIBE), json.dumps(unsubscribe))


def _list_id(page: PageInfo) -> str:
    name = "".join(ch for ch in page.name if ch not in '<>"\\\r\n').strip() or "Status"
    return f'"{name}" <status-updates.{page.host}>'


def email_headers(mailing: Mailing, *, unsubscribe: str, previous: str = "") -> dict[str, str]:
    """The list and threading headers of one recipient's message (``previous``: the
    Message-ID of the last message this recipient got in the same thread, if any)."""
    unsubscribe_targets = [f"<{unsubscribe}>"]
    mailto = getattr(settings, "VIGIL_EMAIL_UNSUBSCRIBE_MAILTO", "")
    if mailto:
        unsubscribe_targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
    references = mailing.thread_root if not previous else f"{mailing.thread_root} {previous}"
    headers = {
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "OOF, AutoReply",
        "List-Id": mailing.list_id,
        "List-Unsubscribe": ", ".join(unsubscribe_targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "In-Reply-To": previous or mailing.thread_root,
        "References": references,
    }
    reply_to = getattr(settings, "VIGIL_CUSTOMER_EMAIL_REPLY_TO", "")
    if reply_to:
        headers["Reply-To"] = reply_to
    return headers


def _render(template: str, context: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    text, html = {}, {}
    for audience in ("subscriber", "customer"):
        ctx = {**context, "audience": audience, "manage_url": LINK_MANAGE}
        ctx["unsubscribe_url"] = LINK_UNSUBSCRIBE
        text[audience] = render_to_string(f"communications/email/{template}.txt", ctx)
        html[audience] = render_to_string(f"communications/email/{template}.html", ctx)
    return text, html


def _one_line(value: str) -> str:
    return " ".join((value or "").split())


def mailing_for_update(update: StatusUpdate, *, page: PageInfo | None = None) -> Mailing:
    """The content of a published status update (a restoration notice is one too)."""
    page = page or page_info()
    incident = update.incident
    status_label = UpdateStatus(update.public_status).label
    subject = f"[{page.name}] {status_label}: {update.public_title} ({incident.number})"
    shortlink = f"{page.url}/incidents/{incident.number}.html"
    affected = list(update.affected.select_related("component__service").order_by("pk"))
    context = {
        "page_name": page.name,
        "page_url": page.url,
        "incident_url": shortlink,
        "number": incident.number,
        "title": update.public_title,
        "status": status_label,
        "published_at": _when(update.published_at, page),
        "body_text": markdown_to_text(update.body),
        # The status page's sanitizer: only its allowlist of tags survives.
        "body_html": mark_safe(markdown_to_html(update.body)),
        "components": [
            (row.component.name, ComponentStatus(row.new_status).label) for row in affected
        ],
        "restoration": update.kind == "restoration",
    }
    text, html = _render("update", context)
    return Mailing(
        subject=_one_line(subject),
        text=text,
        html=html,
        webhook_body=_update_webhook(update, page=page, shortlink=shortlink),
        thread_root=thread_root(incident_id=incident.pk),
        list_id=_list_id(page),
        template="status_update_email",
        reason=f"Status update of {incident.number}",
    )


def mailing_for_maintenance(
    maintenance: Maintenance, *, step: str, page: PageInfo | None = None
) -> Mailing:
    """The content of one step of a maintenance window (scheduled, started, completed,
    cancelled)."""
    page = page or page_info()
    step_label = MAINTENANCE_STEPS.get(step, step)
    subject = f"[{page.name}] Maintenance {step_label}: {maintenance.title}"
    shortlink = f"{page.url}/maintenance/{maintenance.pk}.html"
    body = maintenance.body if step == MaintenanceStatus.SCHEDULED else ""
    context = {
        "page_name": page.name,
        "page_url": page.url,
        "maintenance_url": shortlink,
        "title": maintenance.title,
        "step": step_label,
        "starts": _when(maintenance.scheduled_for, page),
        "ends": _when(maintenance.scheduled_until, page),
        "note": MAINTENANCE_TEXT.get(step, ""),
        "body_text": markdown_to_text(body),
        "body_html": mark_safe(markdown_to_html(body)),
        "components": [c.name for c in maintenance.components.select_related("service")],
    }
    text, html = _render("maintenance", context)
    return Mailing(
        subject=_one_line(subject),
        text=text,
        html=html,
        webhook_body=_maintenance_webhook(maintenance, step=step, page=page, shortlink=shortlink),
        thread_root=thread_root(maintenance_id=maintenance.pk),
        list_id=_list_id(page),
        template="maintenance_email",
        reason=f"Maintenance {step_label}: {maintenance.title}"[:200],
    )


# --- the webhook document (Statuspage's webhook payload) ------------------------------------


def _meta() -> dict[str, Any]:
    return {"unsubscribe": LINK_UNSUBSCRIBE, "documentation": ""}


def _update_webhook(update: StatusUpdate, *, page: PageInfo, shortlink: str) -> str:
    incident = update.incident
    published = list(
        StatusUpdate.objects.filter(
            incident=incident, state=UpdateState.PUBLISHED, published_at__lte=update.published_at
        )
        .prefetch_related("affected__component__service")
        .order_by("published_at", "pk")
    )
    if update not in published:
        published.append(update)
    updates = []
    monitoring_at = None
    for item in published:
        if item.public_status == UpdateStatus.MONITORING and monitoring_at is None:
            monitoring_at = item.published_at
        updates.append(
            {
                "id": str(item.pk),
                "status": item.public_status,
                "body": markdown_to_text(item.body),
                "incident_id": incident.number,
                "created_at": _iso(item.published_at),
                "updated_at": _iso(item.published_at),
                "display_at": _iso(item.published_at),
                "affected_components": [
                    {
                        "code": row.component.code,
                        "name": row.component.name,
                        "old_status": row.old_status or row.new_status,
                        "new_status": row.new_status,
                    }
                    for row in item.affected.all()
                ],
            }
        )
    resolved = update.public_status in (UpdateStatus.RESOLVED, UpdateStatus.POSTMORTEM)
    document = {
        "meta": _meta(),
        "page": {"id": "vigil", "name": page.name, "url": page.url},
        "incident": {
            "id": incident.number,
            "name": update.public_title,
            "status": update.public_status,
            "created_at": _iso(published[0].published_at),
            "updated_at": _iso(update.published_at),
            "monitoring_at": _iso(monitoring_at),
            "resolved_at": _iso(update.published_at) if resolved else None,
            "shortlink": shortlink,
            "page_id": "vigil",
            "incident_updates": list(reversed(updates)),
        },
    }
    return json.dumps(document, sort_keys=True)


def _maintenance_webhook(
    maintenance: Maintenance, *, step: str, page: PageInfo, shortlink: str
) -> str:
    components = [
        {"code": c.code, "name": c.name, "status": c.status}
        for c in maintenance.components.select_related("service")
    ]
    now = _iso(maintenance.updated_at)
    document = {
        "meta": _meta(),
        "page": {"id": "vigil", "name": page.name, "url": page.url},
        "incident": {
            "id": f"maintenance-{maintenance.pk}",
            "name": maintenance.title,
            "status": step,
            "impact": "maintenance",
            "scheduled_for": _iso(maintenance.scheduled_for),
            "scheduled_until": _iso(maintenance.scheduled_until),
            "created_at": _iso(maintenance.created_at),
            "updated_at": now,
            "resolved_at": _iso(maintenance.completed_at),
            "shortlink": shortlink,
            "page_id": "vigil",
            "components": components,
            "incident_updates": [
                {
                    "id": f"{maintenance.pk}-{step}",
                    "status": step,
                    "body": markdown_to_text(maintenance.body)
                    if step == MaintenanceStatus.SCHEDULED
                    else MAINTENANCE_TEXT.get(step, ""),
                    "incident_id": f"maintenance-{maintenance.pk}",
                    "created_at": now,
                    "display_at": now,
                }
            ],
        },
    }
    return json.dumps(document, sort_keys=True)
