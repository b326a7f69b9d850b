"""Writing, holding and publishing a post-incident review (§8.2): its agenda and sections.

* :func:`review_sections_update` edits §8.2's sections (Markdown) and the root cause's category
  (one of :class:`~reviews.models.CauseCategory`, or blank) while the review is booked or held;
  a published review is read-only (409), a cancelled one too.
* :func:`review_mark_held` records the meeting: its date (not in the future) and who attended.
* :func:`review_publish` publishes a held review: never an empty one, never one without an
  action item unless "no actions" is recorded with a reason (400, naming what is missing).
  It is then read-only, shows in the incident's report, and its lessons go to the knowledge
  base when that part of Vigil is installed.

Every write names its actor and source, locks the review, leaves a history row, and refuses
reviews of cancelled incidents (400). Held and published are recorded on the incident's
timeline. What the review page reads is in :mod:`.review_page`, the Markdown export and the
incident report's parts in :mod:`.review_exports`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from incidents.errors import (
    ActionForbidden,
    GuardFailed,
    InvalidInput,
    TransitionNotAllowed,
    VigilError,
)
from incidents.models import Kind, Status
from incidents.services.common import audited_save, timeline_record
from incidents.timeformat import when as when_text

from ..models import ActionItem, CauseCategory, Review, ReviewStatus

logger = logging.getLogger(__name__)

__all__ = [
    "AGENDA",
    "CAUSE_CATEGORY_FIELD",
    "SECTION_FIELDS",
    "ReviewConflict",
    "review_can_edit",
    "review_can_publish",
    "review_mark_held",
    "review_publish",
    "review_sections_update",
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
