"""What a post-incident review's page reads: a section's Markdown as sanitized HTML, the
incident's times against their targets (§9.1), the incident's timeline with its key moments, and
the Markdown link that cites a timeline entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from incidents.markdown import markdown_to_html
from incidents.models import Incident, Kind, TimelineEntry

__all__ = ["citation_markdown", "review_kpis", "review_section_html", "review_timeline"]


def review_section_html(text: str) -> SafeString:
    """A section's Markdown as sanitized HTML (raw HTML shown as text; http(s), mailto and
    same-page links such as ``#entry-12`` only)."""
    return mark_safe(markdown_to_html(text))


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    measured: str
    taken: timedelta | None
    target: timedelta | None
    target_source: str
    met: bool | None

    @property
    def taken_text(self) -> str:
        return duration_text(self.taken) if self.taken is not None else "not recorded"

    @property
    def target_text(self) -> str:
        return duration_text(self.target) if self.target is not None else "no target"


# §9.1's Mean Time to Detect target. The severity policy holds response and resolution targets
# only, so time to detect is measured against the procedure's KPI table.
DETECT_TARGET = timedelta(minutes=5)


def duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs and not days and not hours:
        parts.append(f"{secs}s")
    return sign + (" ".join(parts) or "0m")


def review_kpis(*, incident: Incident) -> list[Kpi]:
    """This incident's times (§9.1): to detect (impact start → detection), to acknowledge,
    mitigate and resolve (from detection), each against its target — the severity's response
    and resolution targets as the incident's SLA due times hold them, §9.1's 5 minutes for
    detection, and none for mitigation (the policy sets none)."""
    detected = incident.detected_at

    def since(start: datetime | None, end: datetime | None) -> timedelta | None:
        return end - start if start is not None and end is not None else None

    def met(taken: timedelta | None, target: timedelta | None) -> bool | None:
        return None if taken is None or target is None else taken <= target

    severity = f"Sev {incident.severity_id}"
    detect = since(incident.impact_started_at, detected)
    ack = since(detected, incident.acknowledged_at)
    ack_target = incident.response_due_at - detected
    mitigate = since(detected, incident.mitigated_at)
    resolve = since(detected, incident.resolved_at)
    resolve_target = incident.resolution_due_at - detected
    return [
        Kpi("detect", "Time to detect", "impact start → detected", detect, DETECT_TARGET,
            "§9.1 MTTD", met(detect, DETECT_TARGET)),
        Kpi("acknowledge", "Time to acknowledge", "detected → acknowledged", ack, ack_target,
            f"{severity} response target", met(ack, ack_target)),
        Kpi("mitigate", "Time to mitigate", "detected → mitigated", mitigate, None,
            "none in the policy", None),
        Kpi("resolve", "Time to resolve", "detected → resolved", resolve, resolve_target,
            f"{severity} resolution target", met(resolve, resolve_target)),
    ]  # fmt: skip


@dataclass(frozen=True)
class TimelineMoment:
    entry: TimelineEntry
    moment: str  # "" when it is not a key moment

    @property
    def anchor(self) -> str:
        return f"entry-{self.entry.pk}"


_STATUS_MOMENTS = {
    "acknowledge": "Acknowledgement",
    "mitigate": "Mitigation started",
    "monitor": "Mitigated",
    "resolve": "Resolution",
    "close": "Closure",
    "reopen": "Reopened",
}


def _moment(entry: TimelineEntry, incident: Incident, seen: set[str]) -> str:
    if entry.kind == Kind.CREATED:
        return "Detection"
    if entry.kind == Kind.SEVERITY:
        return "Severity change"
    if entry.kind == Kind.ESCALATION:
        return "Escalation"
    if entry.kind != Kind.STATUS:
        return ""
    action = (entry.data or {}).get("action", "")
    moment = _STATUS_MOMENTS.get(action, "")
    if moment == "Acknowledgement":
        return "" if "Acknowledgement" in seen else moment
    if (
        "Acknowledgement" not in seen
        and incident.acknowledged_at is not None
        and entry.occurred_at == incident.acknowledged_at
    ):
        # Taking any action first acknowledges the incident implicitly.
        moment = "Acknowledgement" + (f" · {moment}" if moment else "")
    return moment


def review_timeline(*, incident: Incident) -> list[TimelineMoment]:
    """The incident's timeline, oldest first, its key moments named: detection,
    acknowledgement, severity changes, escalations, mitigation, resolution."""
    entries = incident.timeline.select_related("actor").order_by("occurred_at", "id")
    seen: set[str] = set()
    shown = []
    for entry in entries:
        moment = _moment(entry, incident, seen)
        seen.update(part.strip() for part in moment.split("·") if part.strip())
        shown.append(TimelineMoment(entry=entry, moment=moment))
    return shown


def citation_markdown(entry: TimelineEntry) -> str:
    """The Markdown link that cites ``entry`` in a section (pasted by the page's Cite button)."""
    label = f"{timezone.localtime(entry.occurred_at):%H:%M} {entry.get_kind_display()}"
    return f"[{label}](#entry-{entry.pk})"
