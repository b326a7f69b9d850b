"""The incident page as a cockpit: its sticky header (ID, severity, status, priority, incident
manager, the SLA countdown and the facts other apps add, such as who is called next) and its
timeline (filtered, ordered, with what arrived since the page was opened marked new).

Both are rendered whole with the page and again, alone, by the page's live endpoint, which
htmx polls every few seconds; without JavaScript the page shows the same and links do the
filtering. Presentation only: the data comes from the selectors and the extension registries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import QueryDict
from django.utils import timezone

from ..models import Incident, Kind, SeverityLevel, Status
from ..selectors import incident_manager_of, incident_sla_clock, incident_timeline
from ..timeformat import when
from . import display as ui
from .extensions import incident_header_facts

# How often the page asks for a fresh header and new timeline entries.
POLL_SECONDS = 5

TIMELINE_FILTERS = {"all": "Everything", "notes": "Notes and decisions"}
TIMELINE_ORDERS = {"oldest": "Oldest first", "newest": "Newest first"}
NOTE_KINDS = (Kind.NOTE, Kind.DECISION)
SLA_LABELS = {"response": "Acknowledge", "resolution": "Resolve"}


def severity_text(severity: SeverityLevel | None) -> str:
    """ "Sev 1 · Critical"."""
    if severity is None:
        return "–"
    return f"Sev {severity.level} · {severity.name}" if severity.name else f"Sev {severity.level}"


def sla_fact(incident: Incident, now: datetime | None = None) -> dict[str, str]:
    """The next target and how long is left: "Acknowledge" · "12 min left", amber
    ("approaching") in its last quarter, red ("breached", "4 min over") once past; a state for
    the colour, the due time on hover."""
    now = now or timezone.now()
    clock = incident_sla_clock(incident, now)
    if incident.status == Status.CANCELLED:
        return {"label": "SLA", "text": "–", "state": "none", "title": "Cancelled."}
    if not clock.target:
        missed = incident.response_breached_at(now) or incident.resolution_breached_at(now)
        return {
            "label": "SLA",
            "text": "target missed" if missed else "targets met",
            "state": "breached" if missed else "met",
            "title": "",
        }
    remaining = clock.remaining_seconds or 0.0
    if remaining < 0:
        state, text = "breached", f"{ui.duration_text(remaining)} over"
    else:
        # The list's rule for amber (the last share of the target's time); a response target
        # missed earlier is said on hover, the clock shown is the one still running.
        state = ui.clock_state(incident, clock)
        state = "approaching" if state in ("warning", "approaching") else "running"
        text = f"{ui.duration_text(remaining)} left"
    title = f"{SLA_LABELS[clock.target]} by {when(clock.due_at)}"
    if clock.target == "resolution" and incident.response_breached_at(now):
        title += " (the response target was missed)"
    return {"label": SLA_LABELS[clock.target], "text": text, "state": state, "title": title}


def header_context(request: Any, incident: Incident) -> dict[str, Any]:
    """What the sticky header shows; ``incident`` comes with its role assignments prefetched."""
    return {
        "incident": incident,
        "severity_text": severity_text(incident.severity),
        "status_badge": ui.status_badge(incident.status),
        "incident_manager": ui.person(incident_manager_of(incident)),
        "sla": sla_fact(incident),
        "facts": incident_header_facts(request=request, incident=incident),
        "poll_seconds": POLL_SECONDS,
    }


def timeline_choice(params: QueryDict) -> tuple[str, str]:
    """The timeline's filter and order from the query string (unknown values: the defaults)."""
    shown = params.get("timeline", "all")
    order = params.get("order", "oldest")
    return (
        shown if shown in TIMELINE_FILTERS else "all",
        order if order in TIMELINE_ORDERS else "oldest",
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def timeline_context(
    incident: Incident, *, params: QueryDict, seen: int | None = None
) -> dict[str, Any]:
    """The timeline's entries for the filter and order in ``params``, in one query.

    ``seen`` is the newest entry id the page had when it was opened (``params["seen"]`` on a
    refresh): later entries are marked new. ``params["last"]`` is the newest id of the previous
    refresh: entries after it are marked fresh (highlighted as they arrive).
    """
    shown, order = timeline_choice(params)
    entries = incident_timeline(incident=incident)
    if shown == "notes":
        entries = entries.filter(kind__in=NOTE_KINDS)
    if order == "newest":
        entries = entries.order_by("-occurred_at", "-id")
    rows = list(entries)
    newest = max((entry.pk for entry in rows), default=0)
    if seen is None:
        seen = _int(params.get("seen"))
    if seen is None:
        seen = newest
    last = _int(params.get("last"))
    if last is None:
        last = newest
    for entry in rows:
        entry.is_new = entry.pk > seen
        entry.is_fresh = entry.pk > last
    links = []
    for key, label in TIMELINE_FILTERS.items():
        links.append(_link("filter", key, label, shown == key, {"timeline": key, "order": order}))
    for key, label in TIMELINE_ORDERS.items():
        links.append(_link("order", key, label, order == key, {"timeline": shown, "order": key}))
    return {
        "entries": rows,
        "filter": shown,
        "order": order,
        "seen": seen,
        "newest": newest,
        "new_count": sum(1 for entry in rows if entry.is_new),
        "links": links,
        "poll_seconds": POLL_SECONDS,
        "now": timezone.now(),
    }


def _link(group: str, key: str, label: str, current: bool, query: dict[str, str]) -> dict:
    params = QueryDict(mutable=True)
    params.update(query)
    return {
        "group": group,
        "key": key,
        "label": label,
        "current": current,
        "query": params.urlencode(),
    }
