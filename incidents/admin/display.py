"""How incidents look in the admin: badges, clocks and durations. Presentation only."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html

from ..models import Incident, SeverityLevel, Status
from ..selectors import SlaClock, incident_sla_clock
from ..timeformat import duration_text, when

# A running clock turns amber ("approaching", with the words "due soon") when less than this
# share of its target's time is left, counted from detection: under 4 of a Sev 1's 15 minutes
# to respond, 1 h of a 4 h resolution target. One share for every severity keeps the warning
# in proportion to the target: a 72 h target is not amber for days, nor a 15 min one never.
APPROACHING_SHARE = 0.25
APPROACHING_WORDS = "due soon"


def target_text(value: timedelta | None) -> str:
    """A policy target as the procedure writes it: "15 min", "1 h", "72 h"."""
    if value is None:
        return "–"
    minutes = int(value.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} min"
    return f"{minutes // 60} h"


def severity_text(severity: SeverityLevel | None) -> str:
    """A severity with its name, as people say it: "Sev 1 (Critical)"."""
    if severity is None:
        return "–"
    return f"Sev {severity.level} ({severity.name})" if severity.name else f"Sev {severity.level}"


def severity_badge(severity: SeverityLevel | None, *, level: int | None = None) -> str:
    if severity is None and level is None:
        return "–"
    level = severity.level if severity is not None else level
    name = severity.name if severity is not None else ""
    return format_html(
        '<span class="vigil-badge vigil-sev vigil-sev-{}" title="{}">Sev {}</span>',
        level,
        name,
        level,
    )


def status_badge(status: str) -> str:
    return format_html(
        '<span class="vigil-badge vigil-status vigil-status-{}">{}</span>',
        status,
        Status(status).label,
    )


def clock_state(incident: Incident, clock: SlaClock) -> str:
    """ "breached", "approaching", "running", "met" or "none" (for the CSS class)."""
    if incident.status == Status.CANCELLED:
        return "none"
    if clock.breached:
        return "breached"
    if not clock.target:
        return "met"
    total = (clock.due_at - incident.detected_at).total_seconds()
    if total > 0 and clock.remaining_seconds < total * APPROACHING_SHARE:
        return "approaching"
    return "running"


def clock_text(incident: Incident, clock: SlaClock) -> str:
    if incident.status == Status.CANCELLED:
        return "–"
    if not clock.target:
        return "Targets met" if clock.met else "Target missed"
    label = "Response" if clock.target == "response" else "Resolution"
    remaining = clock.remaining_seconds
    if remaining < 0:
        return f"{label} breached {duration_text(remaining)} ago"
    if clock.breached:
        # A missed target stays visible while a clock runs: acknowledged after the response
        # target, or a recorded breach whose due time moved later (a lower severity).
        missed = _missed(incident)
        return f"{missed} missed · {label.lower()} in {duration_text(remaining)}"
    return f"{label} in {duration_text(remaining)}"


def _missed(incident: Incident) -> str:
    return "Response" if incident.response_breached_at() else "Resolution"


def clock_parts(incident: Incident, clock: SlaClock) -> tuple[str, str]:
    """The clock for a narrow column: the figure, and what it counts towards."""
    if incident.status == Status.CANCELLED:
        return "–", ""
    if not clock.target:
        return ("Met", "targets") if clock.met else ("Missed", "a target")
    remaining = clock.remaining_seconds
    if remaining < 0:
        return "Breached", f"{clock.target} · {duration_text(remaining)} ago"
    if clock.breached:
        return duration_text(remaining), f"to {clock.target}; {_missed(incident).lower()} was late"
    return duration_text(remaining), f"to {clock.target}"


def sla_badge(incident: Incident, now: datetime | None = None, *, compact: bool = False) -> str:
    clock = incident_sla_clock(incident, now)
    title = ""
    if clock.due_at is not None:
        title = f"{clock.target.capitalize()} due {when(clock.due_at)}"
    state = clock_state(incident, clock)
    approaching = state == "approaching"
    if approaching:
        title += f", under {APPROACHING_SHARE:.0%} of the target's time left"
    if compact:
        figure, note = clock_parts(incident, clock)
        if approaching:
            note = f"{note} · {APPROACHING_WORDS}"
        return format_html(
            '<span class="vigil-clock vigil-clock-{}" title="{}">{}</span>'
            '<span class="vigil-clock-note">{}</span>',
            state,
            title,
            figure,
            note,
        )
    return format_html(
        '<span class="vigil-clock vigil-clock-{}" title="{}">{}</span>',
        state,
        title,
        clock_text(incident, clock) + (f" · {APPROACHING_WORDS}" if approaching else ""),
    )


def age_text(incident: Incident, now: datetime | None = None) -> str:
    now = now or timezone.now()
    end = incident.resolved_at or incident.cancelled_at
    if end is not None and not incident.is_active:
        return f"lasted {duration_text((end - incident.detected_at).total_seconds())}"
    return duration_text((now - incident.detected_at).total_seconds())


def person(user: object) -> str:
    if user is None:
        return "–"
    return user.get_full_name() or user.get_username()
