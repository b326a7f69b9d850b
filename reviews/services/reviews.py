"""Writing, holding and publishing a post-incident review (§8.2), and what the review page and
the incident report read of it.

* :func:`review_sections_update` edits §8.2's sections (Markdown) and the root cause's category
  (one of :class:`~reviews.models.CauseCategory`, or blank) while the review is booked or held;
  a published review is read-only (409), a cancelled one too.
* :func:`review_mark_held` records the meeting: its date (not in the future) and who attended.
* :func:`review_publish` publishes a held review: never an empty one, never one without an
  action item unless "no actions" is recorded with a reason (400, naming what is missing).
  It is then read-only, shows in the incident's report, and its lessons go to the knowledge
  base when that part of Vigil is installed.
* :func:`review_kpis` and :func:`review_timeline` are what the page's overview shows: the
  incident's times against its severity's targets, and the timeline with its key moments.
* :func:`review_markdown` exports the review; :func:`review_report_follow_ups` and
  :func:`review_report_section` feed the incident report's extension points.

Every write names its actor and source, locks the review, leaves a history row, and refuses
reviews of cancelled incidents (400). Held and published are recorded on the incident's
timeline.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from incidents.errors import (
    ActionForbidden,
    GuardFailed,
    InvalidInput,
    TransitionNotAllowed,
    VigilError,
)
from incidents.markdown import markdown_to_html
from incidents.models import Incident, Kind, Status, TimelineEntry
from incidents.report_extensions import FollowUpAction, ReportSection
from incidents.services.common import audited_save, timeline_record
from incidents.timeformat import when as when_text

from ..models import ActionItem, CauseCategory, Review, ReviewAttendee, ReviewStatus

logger = logging.getLogger(__name__)

__all__ = [
    "AGENDA",
    "CAUSE_CATEGORY_FIELD",
    "SECTION_FIELDS",
    "ReviewConflict",
    "review_can_edit",
    "review_can_publish",
    "review_cause_category_text",
    "review_kpis",
    "review_mark_held",
    "review_markdown",
    "review_publish",
    "review_report_follow_ups",
    "review_report_section",
    "review_section_html",
    "review_sections_update",
    "review_timeline",
]

EDIT_PERMISSION = "reviews.change_review"
PUBLISH_PERMISSION = "reviews.publish_review"
SECTION_MAX = 20_000


@dataclass(frozen=True)
class Section:
    field: str
    label: str


@dataclass(frozen=True)
class AgendaItem:
    """One item of §8.2's agenda with its time box and the review sections written under it."""

    key: str
    title: str
    minutes: int
    sections: tuple[Section, ...]


AGENDA: tuple[AgendaItem, ...] = (
    AgendaItem(
        "overview",
        "Incident overview",
        10,
        (Section("overview", "Summary, timeline review and impact assessment"),),
    ),
    AgendaItem(
        "went-well",
        "What went well",
        20,
        (Section("went_well", "Effective response, good communication, successful recovery"),),
    ),
    AgendaItem(
        "went-wrong",
        "What went wrong",
        30,
        (
            Section("wrong_detection", "Detection delays"),
            Section("wrong_communication", "Communication failures"),
            Section("wrong_technical", "Technical issues"),
            Section("wrong_process", "Process breakdowns"),
        ),
    ),
    AgendaItem(
        "root-cause",
        "Root cause analysis",
        20,
        (
            Section("primary_cause", "Primary root cause"),
            Section("contributing_factors", "Contributing factors"),
            Section("systemic_issues", "Systemic issues"),
        ),
    ),
    AgendaItem(
        "lessons",
        "Lessons learned",
        0,
        (Section("lessons_learned", "Lessons learned"),),
    ),
    AgendaItem(
        "actions",
        "Action items",
        10,
        (Section("no_actions_reason", "No actions: why (only when there is no action item)"),),
    ),
)
SECTION_FIELDS: tuple[str, ...] = tuple(s.field for item in AGENDA for s in item.sections)
# What makes a review not empty: everything written in the meeting but the "no actions" reason.
CONTENT_FIELDS = tuple(field for field in SECTION_FIELDS if field != "no_actions_reason")
# Written next to the primary cause, but a choice rather than Markdown: not a section, and not
# what makes a review non-empty (publishing rules are about what the meeting wrote).
CAUSE_CATEGORY_FIELD = "cause_category"
NOT_CATEGORISED = "not categorised"
SECTION_LABELS = {s.field: s.label for item in AGENDA for s in item.sections}
SECTION_LABELS.update(
    overview="Overview", went_well="What went well", lessons_learned="Lessons learned"
)


class ReviewConflict(TransitionNotAllowed):
    """A step the review's status does not allow (API 409)."""

    def __init__(self, *, action: str, status: str, allowed: list[str] | None = None) -> None:
        self.action, self.status, self.allowed = action, status, allowed or []
        VigilError.__init__(self, f"Cannot {action} a review that is {status}.")


def _require(actor: Any, perm: str, action: str) -> None:
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise ActionForbidden(action=action, user=actor)


def review_can_edit(*, actor: Any, review: Review) -> bool:
    return review.status in (ReviewStatus.BOOKED, ReviewStatus.HELD) and (
        actor is None or (actor.is_active and actor.has_perm(EDIT_PERMISSION))
    )


def review_can_publish(*, actor: Any, review: Review) -> bool:
    return review.status == ReviewStatus.HELD and (
        actor is None or (actor.is_active and actor.has_perm(PUBLISH_PERMISSION))
    )


def _locked(review: Review) -> Review:
    return (
        Review.objects.select_for_update(of=("self",)).select_related("incident").get(pk=review.pk)
    )


def _check_incident(review: Review) -> None:
    if review.incident.status == Status.CANCELLED:
        raise InvalidInput(
            {"incident": f"{review.incident.number} was cancelled: its review cannot change."}
        )


def _check_writable(review: Review, action: str) -> None:
    _check_incident(review)
    if review.status == ReviewStatus.PUBLISHED:
        raise ReviewConflict(action=action, status="published (read-only)")
    if review.status == ReviewStatus.CANCELLED:
        raise ReviewConflict(action=action, status="cancelled", allowed=["book"])


@transaction.atomic
def review_sections_update(*, review: Review, actor: Any, source: str, **sections: Any) -> Review:
    """Change the given §8.2 sections (Markdown text; the others stay) and, as
    ``cause_category``, the root cause's category (a :class:`CauseCategory` value, or blank for
    none). Needs ``reviews.change_review``; the review must be booked or held (409 once
    published or cancelled). Unknown sections, non-text, text over 20,000 characters or an
    unknown category: 400, nothing changed. Idempotent: no change, no write."""
    _require(actor, EDIT_PERMISSION, "edit reviews")
    unknown = sorted(set(sections) - {*SECTION_FIELDS, CAUSE_CATEGORY_FIELD})
    if unknown:
        raise InvalidInput({name: "Not a section of the review." for name in unknown})
    errors: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    for name, value in sections.items():
        if value is None:
            value = ""
        if name == CAUSE_CATEGORY_FIELD:
            if value in ("", *CauseCategory.values):
                cleaned[name] = value
            else:
                errors[name] = (
                    f"One of {', '.join(CauseCategory.values)}, or blank (not categorised)."
                )
        elif not isinstance(value, str):
            errors[name] = "Give text (Markdown)."
        elif len(value) > SECTION_MAX:
            errors[name] = f"At most {SECTION_MAX:,} characters (this has {len(value):,})."
        elif "\x00" in value:
            errors[name] = "The text contains a NUL character."
        else:
            cleaned[name] = value.strip().replace("\r\n", "\n")
    if errors:
        raise InvalidInput(errors)
    locked = _locked(review)
    _check_writable(locked, "edit")
    changed = [name for name, value in cleaned.items() if getattr(locked, name) != value]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, cleaned[name])
    audited_save(locked, actor=actor, reason="sections: " + ", ".join(changed))
    return locked


def _parse_held_at(value: Any) -> datetime:
    if isinstance(value, datetime):
        held_at = value
    else:
        raise InvalidInput({"held_at": "Give the date and time the review was held."})
    if timezone.is_naive(held_at):
        held_at = timezone.make_aware(held_at)
    if held_at > timezone.now() + timedelta(minutes=5):
        raise InvalidInput({"held_at": "The review cannot have been held in the future."})
    return held_at


@transaction.atomic
def review_mark_held(
    *,
    review: Review,
    actor: Any,
    source: str,
    held_at: datetime | None = None,
    attendance: dict[int, bool | None] | None = None,
) -> Review:
    """Record that the review meeting took place at ``held_at`` (default: now; never in the
    future, never before the incident was detected) and who attended (``{attendee id: True |
    False | None}``; attendees not named keep their mark). Needs ``reviews.change_review``.
    Booked → held, with a timeline entry on the incident; a held review may be corrected
    (date, attendance) until it is published. Unknown attendees: 400, nothing changed."""
    _require(actor, EDIT_PERMISSION, "mark reviews held")
    locked = _locked(review)
    _check_writable(locked, "mark held")
    when = _parse_held_at(held_at) if held_at is not None else timezone.now()
    if when < locked.incident.detected_at:
        raise InvalidInput({"held_at": "The review cannot predate the incident's detection."})
    attendance = dict(attendance or {})
    attendees = {a.pk: a for a in locked.attendees.filter(removed_at__isnull=True)}
    unknown = [str(pk) for pk in attendance if pk not in attendees]
    if unknown:
        raise InvalidInput(
            {"attendance": "Not invited to this review: attendee " + ", ".join(unknown) + "."}
        )
    bad = [str(pk) for pk, value in attendance.items() if value not in (True, False, None)]
    if bad:
        raise InvalidInput({"attendance": "Give true, false or null per attendee."})
    for pk, value in attendance.items():
        attendee = attendees[pk]
        if attendee.attended != value:
            attendee.attended = value
            attendee.save(update_fields=["attended"])
    first_time = locked.status == ReviewStatus.BOOKED
    if not first_time and locked.held_at == when and not attendance:
        return locked
    locked.status = ReviewStatus.HELD
    locked.held_at = when
    audited_save(locked, actor=actor, reason="held" if first_time else "held: corrected")
    if first_time:
        present = sum(1 for a in attendees.values() if a.attended)
        timeline_record(
            incident=locked.incident,
            kind=Kind.UPDATE,
            source=source,
            actor=actor,
            message=(
                f"Post-incident review held on {when_text(when)}"
                f" ({present} of {len(attendees)} invited attended)."
            ),
            data={"review": locked.pk, "review_step": "held"},
        )
    return locked


def _knowledge_hook() -> Any:
    """The knowledge base's ``knowledge_article_from_review``, when that module is installed."""
    try:
        module = importlib.import_module("reviews.services.knowledge")
    except ImportError:
        return None
    return getattr(module, "knowledge_article_from_review", None)


@transaction.atomic
def review_publish(*, review: Review, actor: Any, source: str) -> Review:
    """Publish a held review (``reviews.publish_review``): from then on read-only, attached to
    the incident's report, recorded on its timeline, its lessons turned into a knowledge-base
    article when that part is installed. 409 unless held; 400 when it is empty (nothing written
    under §8.2's sections) or has no action item and no "no actions" reason. Idempotent:
    publishing a published review returns it unchanged."""
    _require(actor, PUBLISH_PERMISSION, "publish reviews")
    locked = _locked(review)
    _check_incident(locked)
    if locked.status == ReviewStatus.PUBLISHED:
        return locked
    if locked.status != ReviewStatus.HELD:
        raise ReviewConflict(
            action="publish",
            status=locked.get_status_display().lower() + " (mark it held first)",
            allowed=["held"] if locked.status == ReviewStatus.BOOKED else [],
        )
    errors: dict[str, str] = {}
    if not any(getattr(locked, name).strip() for name in CONTENT_FIELDS):
        errors["sections"] = "The review is empty: write what the meeting found (§8.2)."
    has_actions = ActionItem.objects.filter(incident_id=locked.incident_id).exists()
    if not has_actions and not locked.no_actions_reason.strip():
        errors["action_items"] = (
            "Add at least one action item, or record why there are none (no_actions_reason)."
        )
    if errors:
        raise GuardFailed(action="publish the review", errors=errors)
    locked.status = ReviewStatus.PUBLISHED
    locked.published_at = timezone.now()
    locked.published_by = actor
    audited_save(locked, actor=actor, reason="published")
    timeline_record(
        incident=locked.incident,
        kind=Kind.UPDATE,
        source=source,
        actor=actor,
        message="Post-incident review published (read-only; attached to the incident report).",
        data={"review": locked.pk, "review_step": "published"},
    )
    hook = _knowledge_hook()
    if hook is not None:
        hook(review=locked, actor=actor)
    return locked


# --- what the page reads ------------------------------------------------------------------------


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


# --- the exports ---------------------------------------------------------------------------------


def review_page_url(review: Review) -> str:
    return reverse("admin:reviews_review_change", args=[review.pk])


_ANCHOR_HREF = re.compile(r'href="#(entry-[0-9]+)"')


def _absolute_citations(html: str, review: Review) -> str:
    """Citations (``#entry-12``) point at the review page's timeline from anywhere else."""
    page = review_page_url(review)
    return _ANCHOR_HREF.sub(lambda m: f'href="{page}#{m.group(1)}"', html)


def review_cause_category_text(review: Review) -> str:
    """ "Root cause category: <label>", as the page, the export and the report show it."""
    label = review.get_cause_category_display() if review.cause_category else NOT_CATEGORISED
    return f"Root cause category: {label}"


def review_sections(review: Review) -> list[dict[str, Any]]:
    """The written sections, in agenda order, with their rendered HTML; the primary cause's
    ``note`` names its category."""
    shown = []
    for item in AGENDA:
        for section in item.sections:
            text = getattr(review, section.field)
            if section.field == "no_actions_reason" and not text:
                continue
            shown.append(
                {
                    "agenda": item.title,
                    "field": section.field,
                    "label": section.label,
                    "text": text,
                    "html": review_section_html(text) if text else "",
                    "note": review_cause_category_text(review)
                    if section.field == "primary_cause"
                    else "",
                }
            )
    return shown


def _attendees(review: Review) -> list[ReviewAttendee]:
    return list(review.attendees.filter(removed_at__isnull=True).select_related("user"))


def _actions(incident_id: int) -> list[ActionItem]:
    return list(
        ActionItem.objects.filter(incident_id=incident_id)
        .select_related("owner")
        .order_by("due_date", "id")
    )


def review_markdown(*, review: Review) -> str:
    """The review as a Markdown document (§8.2's order; what people typed escaped, as the
    incident report does)."""
    incident = review.incident
    text = render_to_string(
        "reviews/review.md",
        {
            "review": review,
            "incident": incident,
            "agenda": AGENDA,
            "sections": review_sections(review),
            "kpis": review_kpis(incident=incident),
            "attendees": _attendees(review),
            "actions": _actions(incident.pk),
            "generated_at": timezone.now(),
        },
    )
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _person(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


def review_report_follow_ups(*, incident: Incident) -> Iterable[FollowUpAction]:
    """The incident's action items as the report's follow-up actions."""
    return [
        FollowUpAction(
            title=item.title,
            owner=_person(item.owner),
            due=item.due_date,
            status=item.get_status_display()
            + (f" ({item.wont_do_reason})" if item.wont_do_reason else ""),
            url=item.tracker_url,
        )
        for item in _actions(incident.pk)
    ]


def review_report_section(*, incident: Incident) -> ReportSection | None:
    """The published review of the incident as a section of its report (None before)."""
    review = (
        Review.objects.filter(incident_id=incident.pk, status=ReviewStatus.PUBLISHED)
        .select_related("incident", "published_by", "facilitator")
        .first()
    )
    if review is None:
        return None
    context = {
        "review": review,
        "incident": incident,
        "sections": review_sections(review),
        "attendees": _attendees(review),
        "page_url": review_page_url(review),
    }
    html = _absolute_citations(render_to_string("reviews/report_section.html", context), review)
    markdown = render_to_string("reviews/report_section.md", context)
    return ReportSection(
        title="POST-INCIDENT REVIEW",
        html=html,
        markdown=re.sub(r"\n{3,}", "\n\n", markdown).strip(),
        key="review",
    )
