"""The status page's HTML (and its stylesheet): ``index.html``, one page per incident with a
published update (``incidents/<number>.html``), the history (``history.html``, the three most
recent months, and ``history/<YYYY-MM>.html``, one per month with incidents, each linking to
the next older and newer), one page per maintenance (``maintenance/<id>.html``) and
``status.css``.

Everything comes from the public snapshot (:mod:`.snapshot`) and the uptime of the components
(:mod:`.uptime`); templates autoescape every value, and only the sanitized ``body_html`` of
updates and maintenance is marked safe. Times are shown in the page's time zone.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nh3
from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe

from ..markdown import ATTRIBUTES, TAGS, URL_SCHEMES
from ..models import ComponentStatus, MaintenanceStatus, UpdateStatus
from .site import Artifact, RenderContext, renderer
from .snapshot import UNRESOLVED, public_snapshot
from .uptime import DAYS, Uptime, uptime_compute

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"
SVG = "image/svg+xml"
HISTORY_MONTHS = 3  # months on history.html, newest first (as Statuspage's history shows)

STATUS_LABELS = dict(ComponentStatus.choices)
UPDATE_LABELS = dict(UpdateStatus.choices)
MAINTENANCE_LABELS = dict(MaintenanceStatus.choices)
ACTIVE_MAINTENANCE = {MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING}


def page_zone(context: RenderContext) -> ZoneInfo:
    """The page's time zone (UTC if the setting names none that exists)."""
    if "zone" not in context.memo:
        name = public_snapshot(context)["page"]["time_zone"] or "UTC"
        try:
            context.memo["zone"] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            context.memo["zone"] = ZoneInfo("UTC")
    return context.memo["zone"]


def component_uptime(context: RenderContext) -> dict[str, Uptime]:
    """The 90-day uptime of every component of the snapshot, by code (memoized per render)."""
    if "uptime" not in context.memo:
        components = [
            (item["id"], date.fromisoformat(item["start_date"]))
            for item in public_snapshot(context)["components"]
            if not item["group"]
        ]
        context.memo["uptime"] = uptime_compute(
            components=components, now=context.now, tz=page_zone(context)
        )
    return context.memo["uptime"]


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class _Views:
    """Turns the snapshot's dicts into what the templates show (local times, labels, HTML)."""

    def __init__(self, context: RenderContext):
        self.context = context
        self.snapshot = public_snapshot(context)
        self.zone = page_zone(context)
        self.body_html: dict[str, str] = self.snapshot["body_html"]

    def when(self, value: str | None) -> dict[str, str] | None:
        moment = _parse(value)
        if moment is None:
            return None
        local = moment.astimezone(self.zone)
        return {
            "iso": value,
            "text": f"{local:%b} {local.day}, {local.year}, {local:%H:%M} {local.tzname()}",
            "month": f"{local:%Y-%m}",
        }

    def incident(self, item: dict[str, Any]) -> dict[str, Any]:
        updates = [
            {
                "status": item_update["status"],
                "label": UPDATE_LABELS.get(item_update["status"], item_update["status"]),
                "at": self.when(item_update["display_at"]),
                "body": _safe(self.body_html.get(item_update["id"], "")),
                "components": [
                    {"name": c["name"], "label": STATUS_LABELS.get(c["new_status"], "")}
                    for c in item_update["affected_components"]
                ],
            }
            for item_update in item["incident_updates"]
        ]
        return {
            "number": item["id"],
            "name": item["name"],
            "status": item["status"],
            "label": UPDATE_LABELS.get(item["status"], item["status"]),
            "impact": item["impact"],
            "created": self.when(item["created_at"]),
            "resolved": self.when(item["resolved_at"]),
            "updates": updates,
            "components": [c["name"] for c in item["components"]],
            "url": f"incidents/{item['id']}",
        }

    def maintenance(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": item["id"],
            "name": item["name"],
            "status": item["status"],
            "label": MAINTENANCE_LABELS.get(item["status"], item["status"]),
            "scheduled_for": self.when(item["scheduled_for"]),
            "scheduled_until": self.when(item["scheduled_until"]),
            "body": _safe(self.body_html.get(f"maintenance-{item['id']}", "")),
            "steps": [
                {
                    "label": MAINTENANCE_LABELS.get(step["status"], step["status"]),
                    "at": self.when(step["display_at"]),
                    "text": step["body"] if step["status"] != MaintenanceStatus.SCHEDULED else "",
                }
                for step in item["incident_updates"]
            ],
            "components": [c["name"] for c in item["components"]],
            "url": f"maintenance/{item['id']}",
        }

    def component(self, item: dict[str, Any], uptime: dict[str, Uptime]) -> dict[str, Any]:
        days = uptime[item["id"]].days if item["id"] in uptime else []
        percent = uptime[item["id"]].percent if item["id"] in uptime else None
        bars = []
        for n, day in enumerate(days):
            when = f"{day.date:%b} {day.date.day}, {day.date.year}"
            if not day.has_data:
                text = f"{when}: no data"
            elif day.downtime <= 0:
                text = f"{when}: no downtime"
            else:
                parts = []
                if day.major_seconds:
                    parts.append(f"{_duration(day.major_seconds)} major outage")
                if day.partial_seconds:
                    parts.append(f"{_duration(day.partial_seconds)} partial outage")
                text = f"{when}: {_floor2(day.percent)} % uptime ({', '.join(parts)})"
            bars.append({"x": n * 5, "level": day.level, "text": text})
        bad = [bar["text"] for bar, day in zip(bars, days, strict=True) if day.downtime > 0]
        summary = f"Uptime of {item['name']} over the last {len(days)} days: " + (
            f"{_floor2(percent)} %." if percent is not None else "no data."
        )
        summary += (" Days with downtime: " + "; ".join(bad) + ".") if bad else " No downtime."
        return {
            "code": item["id"],
            "name": item["name"],
            "summary": summary,
            "description": item["description"] or "",
            "status": item["status"],
            "label": STATUS_LABELS.get(item["status"], item["status"]),
            "bars": bars,
            "width": max(len(bars) * 5 - 2, 0),
            "percent": None if percent is None else f"{_floor2(percent)} %",
        }

    def shown(self, item: dict[str, Any]) -> bool:
        if not item.get("showcase", True):
            return False
        return not (item["only_show_if_degraded"] and item["status"] == "operational")


def _safe(body_html: str) -> str:
    """A body's HTML, the one thing the templates do not escape. It was sanitized when it was
    written (communications.markdown); it is cleaned again with the same allowlist here, so
    HTML stored by any other path cannot reach the page either (idempotent on clean HTML)."""
    return mark_safe(
        nh3.clean(
            body_html,
            tags=TAGS,
            attributes=ATTRIBUTES,
            url_schemes=URL_SCHEMES,
            link_rel="nofollow noopener noreferrer",
        )
    )


def _http_url(value: str) -> str:
    """``value`` if it is an http(s) address (the settings' URL fields are validated by the
    admin; a value stored any other way never becomes a ``javascript:`` link), else ``""``."""
    value = (value or "").strip()
    return value if value.lower().startswith(("https://", "http://")) else ""


def _floor2(percent: float) -> str:
    """Two decimals, rounded down (99.999 % is not shown as 100.00 %)."""
    return f"{int(percent * 100) / 100:.2f}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def _page(template: str, views: _Views, depth: int, **extra: Any) -> Artifact:
    """A page of the site; ``depth``: how many folders below the site's root it is (its links
    are relative, so the static export works wherever it is hosted)."""
    page_settings = views.snapshot["settings"]
    context = {
        "page": views.snapshot["page"],
        "status": views.snapshot["status"],
        "settings": page_settings,
        "root": "../" * depth,
        "current": template.rsplit("/", 1)[-1].split(".")[0],
        "links": {
            "home": _http_url(page_settings.home_url),
            "logo": _http_url(page_settings.logo_url),
            "support": _http_url(page_settings.support_url),
            # The subscription form is dynamic, served by Vigil itself (absolute, so the link
            # also works from a static export hosted elsewhere).
            "subscribe": f"{settings.VIGIL_BASE_URL.rstrip('/')}{reverse('status:subscribe')}",
        },
        "zone": views.zone.key,
        "generated": views.when(views.snapshot["page"]["updated_at"]),
        **extra,
    }
    return Artifact(render_to_string(template, context).encode(), HTML)


@renderer
def status_pages(context: RenderContext) -> dict[str, Artifact]:
    views = _Views(context)
    snapshot = views.snapshot
    uptime = component_uptime(context)
    files: dict[str, Artifact] = {}

    groups = []
    for group in snapshot["groups"]:
        children = [views.component(c, uptime) for c in group["children"] if views.shown(c)]
        if children:
            groups.append(
                {
                    "id": group["id"],
                    "name": group["name"],
                    "description": group["description"] or "",
                    "status": group["status"],
                    "label": STATUS_LABELS.get(group["status"], group["status"]),
                    "components": children,
                }
            )
    ungrouped = [views.component(c, uptime) for c in snapshot["ungrouped"] if views.shown(c)]
    # Groups and ungrouped components in page order (the snapshot's ``components`` order).
    order = {item["id"]: n for n, item in enumerate(snapshot["components"])}
    ordered = sorted(
        [("group", g, order.get(g["id"], 0)) for g in groups]
        + [("component", c, order.get(c["code"], 0)) for c in ungrouped],
        key=lambda entry: entry[2],
    )
    # A group, or a run of ungrouped components (one list).
    sections: list[tuple[str, Any]] = []
    for kind, item, _ in ordered:
        if kind == "component" and sections and sections[-1][0] == "components":
            sections[-1][1].append(item)
        else:
            sections.append(("components", [item]) if kind == "component" else (kind, item))

    incidents = [views.incident(item) for item in snapshot["incidents"]]
    by_number = {item["number"]: item for item in incidents}
    active = [by_number[item["id"]] for item in snapshot["unresolved"]]
    maintenances = [views.maintenance(item) for item in snapshot["scheduled_maintenances"]]
    active_maintenance = [m for m in maintenances if m["status"] in ACTIVE_MAINTENANCE]
    upcoming = sorted(
        (m for m in maintenances if m["status"] == MaintenanceStatus.SCHEDULED),
        key=lambda m: m["scheduled_for"]["iso"],
    )

    files["index.html"] = _page(
        "status/index.html",
        views,
        0,
        sections=sections,
        active=active,
        active_maintenance=active_maintenance,
        upcoming=upcoming,
        days=DAYS,
        recent=[i for i in incidents if i["status"] not in UNRESOLVED][:5],
    )
    for incident in incidents:
        files[f"incidents/{incident['number']}.html"] = _page(
            "status/incident.html", views, 1, incident=incident
        )
    for maintenance in maintenances:
        files[f"maintenance/{maintenance['id']}.html"] = _page(
            "status/maintenance.html", views, 1, maintenance=maintenance
        )
    files.update(_history(views, incidents, context.now))
    files["status.css"] = Artifact(render_to_string("status/status.css").encode(), CSS)
    files["favicon.svg"] = Artifact(_favicon(), SVG)
    return files


@functools.cache
def _favicon() -> bytes:
    """Vigil's icon, part of the site so that a static export carries it too."""
    return Path(finders.find("incidents/favicon.svg")).read_bytes()


def _history(views: _Views, incidents: list[dict[str, Any]], now: datetime) -> dict[str, Artifact]:
    """``history.html`` (the current month and the two before it, empty months included) and
    one page per month with incidents, newest first, each linking to its neighbours."""
    by_month: dict[str, list[dict[str, Any]]] = {}
    for incident in incidents:
        by_month.setdefault(incident["created"]["month"], []).append(incident)
    months = sorted(by_month, reverse=True)
    local = now.astimezone(views.zone)
    recent = []
    year, month = local.year, local.month
    for _ in range(HISTORY_MONTHS):
        key = f"{year:04d}-{month:02d}"
        recent.append({"key": key, "name": _month_name(key), "incidents": by_month.get(key, [])})
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    index = [{"key": key, "name": _month_name(key), "count": len(by_month[key])} for key in months]
    files = {
        "history.html": _page(
            "status/history.html",
            views,
            0,
            months=recent,
            index=index,
            older=next((m for m in months if m < recent[-1]["key"]), None),
        )
    }
    for n, key in enumerate(months):
        files[f"history/{key}.html"] = _page(
            "status/history_month.html",
            views,
            1,
            month={"key": key, "name": _month_name(key), "incidents": by_month[key]},
            newer=months[n - 1] if n > 0 else None,
            older=months[n + 1] if n + 1 < len(months) else None,
            newer_name=_month_name(months[n - 1]) if n > 0 else "",
            older_name=_month_name(months[n + 1]) if n + 1 < len(months) else "",
        )
    return files


def _month_name(key: str) -> str:
    return datetime.strptime(key, "%Y-%m").strftime("%B %Y")
