"""Action items (issue 12, §8.2's four kinds): created from a review or from the incident, owned,
dated, reminded before and after their due date, and followed to done or "won't do".

Who may do what (granted by ``reviews/migrations/0002_action_item_permissions.py``):

* every role group reads action items (``view_actionitem``);
* the incident manager and the technical lead create and edit them (``add_``/``change_``) and
  change any item's status;
* an item's owner may change the status of their own item (start, done, won't do, reopen)
  without any edit permission, nothing else of it;
* only the incident manager deletes (``delete_actionitem``), and only while the item's review is
  not published (afterwards it is part of the record: mark it "won't do" with a reason).

A published review is read-only: no item is added to it (409), and the content of its items
(kind, title, description) no longer changes (409); their follow-through still does (owner, due
date, priority, tracker link, status). An item created from the incident joins the incident's
review while that review is booked or held, and stays outside it once the review is published or
cancelled (a follow-up found later).

Reminders are scheduled here (:func:`reminder_schedule`, ``next_reminder_at`` on the item) and
sent by :mod:`.action_reminders`: before the due date, on it, and weekly once it has passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import BooleanField, Case, Q, QuerySet, Value, When
from django.utils import timezone

from incidents.errors import ActionForbidden, InvalidInput, TransitionNotAllowed, VigilError
from incidents.models import Incident, Kind, Status
from incidents.services.common import audited_delete, audited_save, timeline_record
from incidents.timeformat import when as when_text

from ..models import (
    ActionItem,
    ActionKind,
    ActionPriority,
    ActionStatus,
    Review,
    ReviewPolicy,
    ReviewStatus,
)

TITLE_MAX = 200
DESCRIPTION_MAX = 20_000
REASON_MAX = 2_000
ACTIVE = (ActionStatus.OPEN, ActionStatus.IN_PROGRESS)
CLOSED = (ActionStatus.DONE, ActionStatus.WONT_DO)
CONTENT_FIELDS = ("kind", "title", "description")
EDITABLE_FIELDS = (*CONTENT_FIELDS, "owner", "due_date", "priority", "tracker_url")
OVERDUE_EVERY_DAYS = 7

PERM_VIEW = "reviews.view_actionitem"
PERM_ADD = "reviews.add_actionitem"
PERM_CHANGE = "reviews.change_actionitem"
PERM_DELETE = "reviews.delete_actionitem"


# --- errors ------------------------------------------------------------------------------------


class ActionItemForbidden(ActionForbidden):
    """The actor may not do this to the action item (API 403)."""

    def __init__(self, *, action: str, message: str) -> None:
        self.action = action
        VigilError.__init__(self, message)


class ActionItemConflict(TransitionNotAllowed):
    """Not possible in the item's (or its review's) current state (API 409)."""

    def __init__(self, *, action: str, state: str, message: str, allowed: list[str] | None = None):
        self.action, self.status, self.allowed = action, state, allowed or []
        VigilError.__init__(self, message)


def _require(actor: Any, perm: str, action: str) -> None:
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise ActionItemForbidden(
            action=action, message=f"{actor} may not {action} (missing role permission)."
        )


def action_item_can_edit(*, actor: Any) -> bool:
    return actor is None or (actor.is_active and actor.has_perm(PERM_CHANGE))


def action_item_can_set_status(*, actor: Any, item: ActionItem) -> bool:
    """Editors change any item's status; an owner that of their own items."""
    if action_item_can_edit(actor=actor):
        return True
    return bool(actor.is_active and actor.pk == item.owner_id)


# --- reads -------------------------------------------------------------------------------------


def action_today() -> date:
    """Today's date for due dates and "overdue" (the server's ``TIME_ZONE``)."""
    return timezone.localdate()


def action_item_is_overdue(item: ActionItem, *, today: date | None = None) -> bool:
    """Open or in progress past its due date."""
    return item.status in ACTIVE and item.due_date < (today or action_today())


def overdue_q(today: date | None = None) -> Q:
    return Q(status__in=ACTIVE, due_date__lt=today or action_today())


def action_items_annotated(queryset: QuerySet | None = None) -> QuerySet:
    """Action items with ``is_overdue`` computed by the database (for lists and filters)."""
    queryset = ActionItem.objects.all() if queryset is None else queryset
    return queryset.annotate(
        is_overdue=Case(
            When(overdue_q(), then=Value(True)), default=Value(False), output_field=BooleanField()
        )
    )


# --- validation --------------------------------------------------------------------------------


def _active_user(owner: Any) -> Any:
    User = get_user_model()
    pk = getattr(owner, "pk", owner)
    if isinstance(pk, bool) or not isinstance(pk, int):
        if isinstance(pk, str) and pk.isdigit():
            pk = int(pk)
        else:
            raise InvalidInput({"owner": "Give the owner as a Vigil user."})
    user = User.objects.filter(pk=pk, is_active=True).first()
    if user is None:
        raise InvalidInput({"owner": "The owner must be an active Vigil user."})
    return user


def _clean(field: str, value: Any, *, today: date) -> Any:
    if field == "kind":
        if value not in ActionKind.values:
            raise InvalidInput({"kind": f"Choose one of: {', '.join(ActionKind.values)}."})
        return value
    if field == "priority":
        if value not in ActionPriority.values:
            raise InvalidInput({"priority": f"Choose one of: {', '.join(ActionPriority.values)}."})
        return value
    if field == "title":
        title = " ".join(str(value or "").split())
        if not title:
            raise InvalidInput({"title": "Give the action item a title."})
        if len(title) > TITLE_MAX:
            raise InvalidInput({"title": f"At most {TITLE_MAX} characters."})
        return title
    if field == "description":
        text = str(value or "").strip()
        if len(text) > DESCRIPTION_MAX:
            raise InvalidInput({"description": f"At most {DESCRIPTION_MAX} characters."})
        return text
    if field == "due_date":
        if not isinstance(value, date) or isinstance(value, datetime):
            raise InvalidInput({"due_date": "Give the due date as a date (YYYY-MM-DD)."})
        if value < today:
            raise InvalidInput({"due_date": f"The due date cannot be before today ({today})."})
        return value
    if field == "tracker_url":
        url = str(value or "").strip()
        if not url:
            return ""
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or any(ch.isspace() or ord(ch) < 32 for ch in url)
        ):
            raise InvalidInput({"tracker_url": "Give an http(s) link to the tracker's issue."})
        if len(url) > 500:
            raise InvalidInput({"tracker_url": "At most 500 characters."})
        return url
    if field == "owner":
        return _active_user(value)
    raise InvalidInput({field: "This field cannot be changed here."})


def _incident_review(incident: Incident) -> Review | None:
    return Review.objects.filter(incident_id=incident.pk).first()


# --- reminders' schedule -----------------------------------------------------------------------


def reminder_policy() -> ReviewPolicy:
    return ReviewPolicy.objects.order_by("pk").first() or ReviewPolicy()


def _zone(policy: ReviewPolicy) -> ZoneInfo:
    try:
        return ZoneInfo(policy.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def reminder_index(name: str) -> int:
    """The order of a reminder: before 0, due 1, overdue 2, overdue-k k+1."""
    if name == "before":
        return 0
    if name == "due":
        return 1
    if name == "overdue":
        return 2
    if name.startswith("overdue-") and name[8:].isdigit():
        return int(name[8:]) + 1
    return -1


def reminder_schedule(*, due_date: date, policy: ReviewPolicy) -> Iterator[tuple[str, datetime]]:
    """The reminders of an item due on ``due_date``, in order, without end (weekly overdue)."""
    zone = _zone(policy)

    def at(day: date) -> datetime:
        return datetime.combine(day, policy.workday_start, tzinfo=zone)

    if policy.action_reminder_days:
        yield "before", at(due_date - timedelta(days=policy.action_reminder_days))
    yield "due", at(due_date)
    yield "overdue", at(due_date + timedelta(days=1))
    k = 2
    while True:
        yield f"overdue-{k}", at(due_date + timedelta(days=1 + OVERDUE_EVERY_DAYS * (k - 1)))
        k += 1


def pending(item: ActionItem, policy: ReviewPolicy) -> Iterator[tuple[str, datetime]]:
    """The reminders after the latest one sent."""
    last = max((reminder_index(name) for name in item.reminders_sent or []), default=-1)
    for name, at in reminder_schedule(due_date=item.due_date, policy=policy):
        if reminder_index(name) > last:
            yield name, at


def _next_reminder_at(item: ActionItem, policy: ReviewPolicy) -> datetime | None:
    if item.status not in ACTIVE:
        return None
    return next(pending(item, policy))[1]


# --- writes ------------------------------------------------------------------------------------


def owner_name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "nobody"


def _timeline(item: ActionItem, *, actor: Any, source: str, message: str, what: str) -> None:
    timeline_record(
        incident=item.incident,
        kind=Kind.UPDATE,
        source=source,
        actor=actor,
        message=message,
        data={"action_item": item.pk, "action": what},
    )


@transaction.atomic
def action_item_create(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    kind: str,
    title: str,
    owner: Any,
    due_date: date,
    priority: str = ActionPriority.MEDIUM,
    description: str = "",
    tracker_url: str = "",
    review: Review | None = None,
    from_review: bool = False,
) -> ActionItem:
    """Add an action item to ``incident`` (from its review page with ``from_review``, else
    from the incident). Needs ``reviews.add_actionitem``.

    Refused with nothing written: 403 without the permission; 400 for a cancelled incident, a
    due date before today, an owner who is not an active user, an empty or too long title, a
    tracker link that is not http(s), an unknown kind or priority; 409 when the item would be
    added to a published (or cancelled) review. Writes a timeline entry on the incident and
    schedules the owner's reminders. Not idempotent: each call adds an item."""
    _require(actor, PERM_ADD, "add action items")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status == Status.CANCELLED:
        raise InvalidInput({"incident": "The incident was cancelled: it takes no action items."})
    today = action_today()
    values = {
        "kind": _clean("kind", kind, today=today),
        "title": _clean("title", title, today=today),
        "owner": _clean("owner", owner, today=today),
        "due_date": _clean("due_date", due_date, today=today),
        "priority": _clean("priority", priority, today=today),
        "description": _clean("description", description, today=today),
        "tracker_url": _clean("tracker_url", tracker_url, today=today),
    }
    if review is None and from_review:
        review = _incident_review(incident)
        if review is None:
            raise InvalidInput({"review": "The incident has no review yet."})
    if review is not None:
        if review.incident_id != incident.pk:
            raise InvalidInput({"review": "That review is of another incident."})
        if review.status in (ReviewStatus.PUBLISHED, ReviewStatus.CANCELLED):
            raise ActionItemConflict(
                action="add an action item",
                state=review.status,
                message=f"The review is {review.status}: no action item can be added to it. "
                "Add it from the incident instead.",
            )
    else:
        candidate = _incident_review(incident)
        if candidate is not None and candidate.status in (ReviewStatus.BOOKED, ReviewStatus.HELD):
            review = candidate
    item = ActionItem(incident=incident, review=review, created_by=actor, **values)
    item.next_reminder_at = _next_reminder_at(item, reminder_policy())
    audited_save(item, actor=actor, reason=f"Action item added ({source})")
    _timeline(
        item,
        actor=actor,
        source=source,
        what="created",
        message=(
            f"Action item added: {item.title} ({item.get_kind_display()}, "
            f"{item.get_priority_display().lower()} priority), owned by {owner_name(item.owner)}, "
            f"due {when_text(item.due_date)}."
        ),
    )
    return item


def _locked(item: ActionItem) -> ActionItem:
    return (
        ActionItem.objects.select_for_update(of=("self",))
        .select_related("incident", "owner", "review")
        .get(pk=item.pk)
    )


def _published(item: ActionItem) -> bool:
    return item.review is not None and item.review.status == ReviewStatus.PUBLISHED


@transaction.atomic
def action_item_update(*, item: ActionItem, actor: Any, source: str, **changes: Any) -> ActionItem:
    """Change an item's fields (kind, title, description, owner, due_date, priority,
    tracker_url); only those given change. Needs ``reviews.change_actionitem``. 400 for a bad
    value (a due date moved before today, an inactive owner...); 409 for the content (kind,
    title, description) of an item of a published review. A new due date starts the reminders
    afresh. Idempotent: no change, no write."""
    _require(actor, PERM_CHANGE, "change action items")
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput({name: "This field cannot be changed here." for name in sorted(unknown)})
    locked = _locked(item)
    today = action_today()
    changed: dict[str, Any] = {}
    for field, value in changes.items():
        if field == "due_date" and value == locked.due_date:
            continue
        cleaned = _clean(field, value, today=today)
        current = locked.owner if field == "owner" else getattr(locked, field)
        if cleaned != current:
            changed[field] = cleaned
    if not changed:
        return locked
    frozen = sorted(set(changed) & set(CONTENT_FIELDS))
    if frozen and _published(locked):
        raise ActionItemConflict(
            action="edit",
            state="published",
            message="The item's review is published: its kind, title and description no longer "
            "change (its owner, due date, priority, tracker link and status still do).",
        )
    for field, value in changed.items():
        setattr(locked, field, value)
    if "due_date" in changed:
        locked.reminders_sent = []
    locked.next_reminder_at = _next_reminder_at(locked, reminder_policy())
    audited_save(locked, actor=actor, reason=f"Action item changed: {', '.join(sorted(changed))}")
    return locked


STATUS_WORDS = {
    ActionStatus.OPEN: "reopened",
    ActionStatus.IN_PROGRESS: "started",
    ActionStatus.DONE: "done",
    ActionStatus.WONT_DO: "won't do",
}


@transaction.atomic
def action_item_set_status(
    *, item: ActionItem, actor: Any, source: str, status: str, reason: str = ""
) -> ActionItem:
    """Move an item to ``status``: open (reopen), in_progress, done (sets ``completed_at``) or
    wont_do (needs ``reason``). Any status may follow any other. Editors may, and the item's
    owner for their own item (403 otherwise); 400 for an unknown status or "won't do" without a
    reason. Done, won't do and reopening write a timeline entry; done and won't do stop the
    reminders, reopening resumes them (those already sent are not sent again). Idempotent: the
    same status again changes nothing."""
    if status not in ActionStatus.values:
        raise InvalidInput({"status": f"Choose one of: {', '.join(ActionStatus.values)}."})
    locked = _locked(item)
    if not action_item_can_set_status(actor=actor, item=locked):
        raise ActionItemForbidden(
            action="change the status",
            message=f"{actor} may not change the status of this action item (only its owner "
            "and the incident's managers may).",
        )
    reason = (reason or "").strip()
    if status == ActionStatus.WONT_DO and not reason:
        raise InvalidInput({"reason": "Say why this action item will not be done."})
    if len(reason) > REASON_MAX:
        raise InvalidInput({"reason": f"At most {REASON_MAX} characters."})
    if locked.status == status:
        return locked
    previous = locked.status
    locked.status = status
    locked.completed_at = timezone.now() if status == ActionStatus.DONE else None
    locked.wont_do_reason = reason if status == ActionStatus.WONT_DO else ""
    locked.next_reminder_at = _next_reminder_at(locked, reminder_policy())
    audited_save(locked, actor=actor, reason=f"Action item {STATUS_WORDS[status]}")
    if status == ActionStatus.DONE:
        message = f"Action item done: {locked.title}."
    elif status == ActionStatus.WONT_DO:
        message = f"Action item will not be done: {locked.title}. Reason: {reason}"
    elif previous in CLOSED:
        message = f"Action item reopened: {locked.title}."
    else:
        message = ""
    if message:
        _timeline(locked, actor=actor, source=source, what=status, message=message)
    return locked


@transaction.atomic
def action_item_delete(*, item: ActionItem, actor: Any, source: str) -> None:
    """Delete an item added by mistake. Needs ``reviews.delete_actionitem`` (the incident
    manager); 409 once its review is published (mark it "won't do" instead). Writes a timeline
    entry; its history keeps the deleted row."""
    _require(actor, PERM_DELETE, "delete action items")
    locked = _locked(item)
    if _published(locked):
        raise ActionItemConflict(
            action="delete",
            state="published",
            message="The item's review is published: it stays on record. Mark it \"won't do\" "
            "with a reason instead.",
        )
    _timeline(
        locked,
        actor=actor,
        source=source,
        what="deleted",
        message=f"Action item deleted: {locked.title}.",
    )
    audited_delete(locked, actor=actor, reason=f"Action item deleted ({source})")
