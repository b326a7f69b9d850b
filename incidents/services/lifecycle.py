"""The lifecycle services: one per transition, each the only caller of its model transition.

Each locks the incident row, returns early when the change already happened (so repeating an
action is harmless), checks the role permission, the source status and the guard, saves (which
writes the history record), appends a timeline entry and sends ``incident_transitioned`` after
commit. Order of checks: permission (403), already done (no-op), status (409), guard (400).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from ..errors import GuardFailed, InvalidInput, TransitionNotAllowed
from ..events import INCIDENT_TRANSITIONED, announce
from ..guards import close_guard_errors
from ..models import (
    CLOSE_REQUIRED_FIELDS,
    RESOLVE_REQUIRED_FIELDS,
    Incident,
    Kind,
    Status,
    missing_fields,
)
from .common import audited_save, require_perm, timeline_record

ACTIONS = (
    "acknowledge",
    "investigate",
    "mitigate",
    "monitor",
    "resolve",
    "reopen",
    "close",
    "cancel",
)


def _last_action(incident: Incident) -> str | None:
    entry = incident.timeline.filter(kind=Kind.STATUS).order_by("-occurred_at", "-id").first()
    return entry.data.get("action") if entry is not None else None


def _reopened(incident: Incident) -> bool:
    # Investigating is also where "investigate" leads; only a reopen that really happened
    # makes a second reopen a no-op, otherwise reopening a never-resolved incident would
    # silently "succeed".
    return incident.status == Status.INVESTIGATING and _last_action(incident) == "reopen"


# What each action looks like once it has happened; repeating it then changes nothing.
_ALREADY_DONE: dict[str, Callable[[Incident], bool]] = {
    "acknowledge": lambda i: i.acknowledged_at is not None and i.status != Status.OPEN,
    "investigate": lambda i: i.status == Status.INVESTIGATING,
    "mitigate": lambda i: i.status == Status.MITIGATING,
    "monitor": lambda i: i.status == Status.MONITORING,
    "resolve": lambda i: i.status == Status.RESOLVED,
    "reopen": _reopened,
    "close": lambda i: i.status == Status.CLOSED,
    "cancel": lambda i: i.status == Status.CANCELLED,
}


def action_permission(action: str) -> str:
    return f"incidents.{action}_incident"


def actions_available(incident: Incident, user: Any = None) -> list[str]:
    """Actions possible from the incident's status (and, given a user, permitted to them)."""
    return [
        action
        for action in ACTIONS
        if can_proceed(getattr(incident, action), check_conditions=False)
        and (user is None or user.has_perm(action_permission(action)))
    ]


def _guard_errors(fields: tuple[str, ...], action: str) -> Callable[[Incident], dict[str, str]]:
    def check(incident: Incident) -> dict[str, str]:
        return {name: f"Required to {action}." for name in missing_fields(incident, fields)}

    return check


def _no_guard(incident: Incident) -> dict[str, str]:
    return {}


def _run(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    action: str,
    prepare: Callable[[Incident], None] | None = None,
    guard: Callable[[Incident], dict[str, str]] = _no_guard,
    transition_kwargs: dict[str, Any] | None = None,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> Incident:
    require_perm(actor, action_permission(action), action)
    locked = Incident.objects.select_for_update().get(pk=incident.pk)
    if _ALREADY_DONE[action](locked):
        return locked
    if not can_proceed(getattr(locked, action), check_conditions=False):
        raise TransitionNotAllowed(
            action=action, status=locked.status, allowed=actions_available(locked, actor)
        )
    if prepare is not None:
        prepare(locked)
    errors = guard(locked)
    if errors:
        raise GuardFailed(action=action, errors=errors)

    from_status = locked.status
    now = timezone.now()
    implicit_ack = locked.acknowledged_at is None and action not in ("acknowledge", "cancel")
    getattr(locked, action)(at=now, **(transition_kwargs or {}))
    audited_save(locked, actor=actor, reason=action)

    message = f"Status: {Status(from_status).label} → {Status(locked.status).label}."
    if implicit_ack and locked.acknowledged_at is not None:
        message += " (Acknowledged by taking action.)"
    if note:
        message += f" {note}"
    timeline_record(
        incident=locked,
        kind=Kind.STATUS,
        source=source,
        actor=actor,
        message=message,
        data={"action": action, "from": from_status, "to": locked.status, **(data or {})},
        occurred_at=now,
    )
    announce(
        INCIDENT_TRANSITIONED,
        incident=locked,
        action=action,
        from_status=from_status,
        to_status=locked.status,
        actor_id=actor.pk if actor is not None else None,
        source=source,
    )
    return locked


@transaction.atomic
def incident_acknowledge(*, incident: Incident, actor: Any, source: str) -> Incident:
    """Acknowledge an open incident (stops the acknowledgement timer). Idempotent."""
    return _run(incident=incident, actor=actor, source=source, action="acknowledge")


@transaction.atomic
def incident_investigate(*, incident: Incident, actor: Any, source: str) -> Incident:
    """Move to investigating (§4.2 step 2); from open this also acknowledges. Idempotent."""
    return _run(incident=incident, actor=actor, source=source, action="investigate")


@transaction.atomic
def incident_mitigate(*, incident: Incident, actor: Any, source: str) -> Incident:
    """Move to mitigating: a fix or containment is being applied. Idempotent."""
    return _run(incident=incident, actor=actor, source=source, action="mitigate")


@transaction.atomic
def incident_monitor(*, incident: Incident, actor: Any, source: str) -> Incident:
    """Move to monitoring: impact mitigated, watching the fix (§4.2 step 3). Idempotent."""
    return _run(incident=incident, actor=actor, source=source, action="monitor")


@transaction.atomic
def incident_resolve(
    *, incident: Incident, actor: Any, source: str, resolution: str = ""
) -> Incident:
    """Resolve: service restored. Needs a resolution (given here or already recorded).

    Resolution stops escalation (receivers of ``incident_transitioned``). Idempotent.
    """
    resolution = (resolution or "").strip()

    def prepare(locked: Incident) -> None:
        if resolution:
            locked.resolution = resolution

    return _run(
        incident=incident,
        actor=actor,
        source=source,
        action="resolve",
        prepare=prepare,
        guard=_guard_errors(RESOLVE_REQUIRED_FIELDS, "resolve"),
    )


@transaction.atomic
def incident_reopen(*, incident: Incident, actor: Any, source: str, reason: str = "") -> Incident:
    """Reopen a resolved incident back to investigating (the fix did not hold). Idempotent."""
    reason = (reason or "").strip()
    return _run(
        incident=incident,
        actor=actor,
        source=source,
        action="reopen",
        note=f"Reopened: {reason}" if reason else "Reopened.",
        data={"reason": reason},
    )


@transaction.atomic
def incident_close(*, incident: Incident, actor: Any, source: str) -> Incident:
    """Close a resolved incident (§4.2 step 4). Needs summary, root cause, resolution and
    business impact, so the §6.2 report is complete, and whatever the registered close guards
    (``incidents.guards``, e.g. a booked review) require. Incident Manager only. Idempotent."""
    fields_missing = _guard_errors(CLOSE_REQUIRED_FIELDS, "close")

    def guard(locked: Incident) -> dict[str, str]:
        return fields_missing(locked) or close_guard_errors(locked)

    return _run(
        incident=incident,
        actor=actor,
        source=source,
        action="close",
        guard=guard,
    )


@transaction.atomic
def incident_cancel(
    *,
    incident: Incident,
    actor: Any,
    source: str,
    reason: str = "",
    duplicate_of: Incident | str | None = None,
) -> Incident:
    """Cancel an active incident as a false alarm (with a reason) or as a duplicate of another.

    A duplicate also gets a timeline entry on the incident it duplicates. Incident Manager
    only. Idempotent.
    """
    require_perm(actor, action_permission("cancel"), "cancel")
    reason = (reason or "").strip()
    original = None
    if duplicate_of not in (None, ""):
        if isinstance(duplicate_of, Incident):
            number_or_pk = {"pk": duplicate_of.pk}
        else:
            number_or_pk = {"number": str(duplicate_of).strip()}
        original_pk = Incident.objects.filter(**number_or_pk).values_list("pk", flat=True).first()
        if original_pk is None:
            raise InvalidInput({"duplicate_of": f"No incident {duplicate_of}."})
        if original_pk == incident.pk:
            raise InvalidInput({"duplicate_of": "An incident cannot duplicate itself."})
        # Lock both rows, always in pk order, and read the original under the lock: two
        # incidents cancelled as duplicates of each other at the same moment must not both
        # succeed (each would point at a cancelled original).
        rows = {
            row.pk: row
            for row in Incident.objects.select_for_update()
            .filter(pk__in=[incident.pk, original_pk])
            .order_by("pk")
        }
        original = rows[original_pk]
        if original.status == Status.CANCELLED:
            raise InvalidInput(
                {"duplicate_of": f"{original.number} is itself cancelled; name the original."}
            )

    def guard(locked: Incident) -> dict[str, str]:
        if not reason and original is None:
            return {"reason": "Give a reason, or the incident this one duplicates."}
        return {}

    note = f"Duplicate of {original.number}." if original else ""
    if reason:
        note = (note + f" Reason: {reason}").strip()
    result = _run(
        incident=incident,
        actor=actor,
        source=source,
        action="cancel",
        guard=guard,
        transition_kwargs={"reason": reason, "duplicate_of": original},
        note=note,
        data={"reason": reason, "duplicate_of": original.number if original else None},
    )
    if original is not None and result.duplicate_of_id == original.pk:
        already = original.timeline.filter(kind=Kind.UPDATE, data__duplicate=result.number).exists()
        if not already:
            timeline_record(
                incident=original,
                kind=Kind.UPDATE,
                source=source,
                actor=actor,
                message=f"{result.number} was cancelled as a duplicate of this incident.",
                data={"duplicate": result.number},
            )
    return result


_SERVICES: dict[str, Callable[..., Incident]] = {
    "acknowledge": incident_acknowledge,
    "investigate": incident_investigate,
    "mitigate": incident_mitigate,
    "monitor": incident_monitor,
    "resolve": incident_resolve,
    "reopen": incident_reopen,
    "close": incident_close,
    "cancel": incident_cancel,
}


def incident_transition(
    *, incident: Incident, action: str, actor: Any, source: str, **params: Any
) -> Incident:
    """Dispatch ``action`` to its service (for the admin buttons and the API's action routes).

    Parameters the action does not take are refused with ``InvalidInput`` rather than a
    ``TypeError``, so a client sending ``reason`` to ``acknowledge`` gets a clear 400.
    """
    try:
        service = _SERVICES[action]
    except KeyError:
        raise InvalidInput({"action": f"Unknown action {action!r}."}) from None
    accepted = set(inspect.signature(service).parameters) - {"incident", "actor", "source"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InvalidInput({name: f"Not a parameter of {action}." for name in unknown})
    return service(incident=incident, actor=actor, source=source, **params)
