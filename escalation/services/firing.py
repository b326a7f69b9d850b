"""Firing one escalation step (or the acknowledgement timeout) of a claimed escalation: its
unique event, its page, rendered for ``pages_write``, and its timeline entry once the page is
written. The sweep (:mod:`escalation.services.timers`) decides what is due and writes a
batch's pages and entries together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.models import Kind, Source
from incidents.timeformat import when

from ..models import EscalationEvent, IncidentEscalation
from .paging import PagePlan, PageResult, format_elapsed, recipients_plan
from .recipients import Recipient, recipients_merge
from .snapshot import BACKUP_ROLES, snapshot_severity

__all__ = [
    "CATCH_UP_AFTER",
    "Announced",
    "Fired",
    "Firing",
    "announce",
    "announce_step",
    "create_event",
    "event_fields",
]

# The sweep runs every 30 s; a step fired later than this after its due time was missed by a
# stopped scheduler (or counted from a back-dated detection) and is marked as caught up.
CATCH_UP_AFTER = timedelta(seconds=90)


@dataclass(frozen=True)
class Fired:
    """One step the sweep fired (for the ``escalate`` command and the logs)."""

    incident: str
    step: str
    target: str
    severity: int
    due_at: datetime
    caught_up: bool
    notifications: int

    def __str__(self) -> str:
        late = " (caught up)" if self.caught_up else ""
        return (
            f"{self.incident}: {self.step} → {self.target}, Sev {self.severity}, due "
            f"{when(self.due_at, seconds=True)}{late}, "
            f"{self.notifications} notification(s)"
        )


@dataclass
class Firing:
    """A step (or the acknowledgement timeout: ``step`` None) due on a claimed escalation."""

    esc: IncidentEscalation
    key: str
    due_at: datetime
    step: dict[str, Any] | None
    event: EscalationEvent | None = None


def create_event(**fields: Any) -> EscalationEvent | None:
    try:
        with transaction.atomic():
            return EscalationEvent.objects.create(**fields)
    except IntegrityError:
        return None  # fired already (by a sweep that held the row before us)


def _level(snapshot: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    return snapshot.get("levels", {}).get(step["level"], {"name": step["level"], "contact": None})


def _backups(snapshot: dict[str, Any]) -> tuple[list[Recipient], str]:
    """The backup contacts paged on an acknowledgement timeout, and the target's name."""
    backups = snapshot.get("backups", {})
    recipients: list[Recipient] = []
    roles: list[str] = []
    for key in BACKUP_ROLES:
        entry = backups.get(key)
        if not entry:
            continue
        roles.append(entry["role"])
        if entry["contact"]:
            recipients.append(
                Recipient.from_snapshot(entry["contact"], role=entry["role"], role_key=key)
            )
    target = ("Backups of " + " and ".join(roles)) if roles else "Backup contacts"
    return recipients_merge(recipients), target


def event_fields(firing: Firing, *, now: datetime) -> dict[str, Any]:
    incident = firing.esc.incident
    if firing.step is None:
        elapsed = firing.due_at - incident.detected_at
        target = _backups(firing.esc.policy_snapshot)[1]
    else:
        elapsed = timedelta(seconds=firing.step["elapsed_s"])
        target = _level(firing.esc.policy_snapshot, firing.step)["name"]
    return {
        "incident": incident,
        "step": firing.key,
        "severity": incident.severity_id,
        "elapsed": elapsed,
        "target": target[:80],
        "due_at": firing.due_at,
        "fired_at": now,
        "caught_up": now - firing.due_at > CATCH_UP_AFTER,
    }


# What announcing a fired step returns: its page, rendered, for ``pages_write``, and once the
# page is written, its timeline entry (for ``timeline_record_many``) and what fired.
Announced = tuple[PagePlan, Callable[[], tuple[dict[str, Any], Fired]]]


def announce(
    firing: Firing, *, now: datetime, context: dict[str, Any], zones: dict[int, Any]
) -> Announced:
    """The page of a fired step (its event inserted), and its timeline entry once written."""
    if firing.step is None:
        return _announce_ack_timeout(firing, now=now, context=context, zones=zones)
    return announce_step(firing, now=now, context=context, zones=zones)


def announce_step(
    firing: Firing, *, now: datetime, context: dict[str, Any], zones: dict[int, Any] | None = None
) -> Announced:
    esc, event, step, due_at = firing.esc, firing.event, firing.step, firing.due_at
    assert event is not None and step is not None
    incident = esc.incident
    snapshot = esc.policy_snapshot
    severity = incident.severity_id
    level = _level(snapshot, step)
    elapsed = timedelta(seconds=step["elapsed_s"])
    caught_up = event.caught_up
    channels = snapshot_severity(snapshot, severity)["channels"]
    recipients = (
        [Recipient.from_snapshot(level["contact"], role=level["name"])] if level["contact"] else []
    )
    reason = f"Escalated to {level['name']} (Sev {severity}, {format_elapsed(elapsed)} elapsed)"
    plan = recipients_plan(
        incident=incident,
        recipients=recipients,
        channels=channels,
        kind="step",
        key_prefix=f"escalation:{incident.pk}:{step['step']}",
        reason=reason,
        base_context=context,
        extra_context={
            "target": level["name"],
            "elapsed": format_elapsed(elapsed),
            "caught_up": caught_up,
            "due_at": timezone.localtime(due_at),
        },
        zones=zones,
    )
    return plan, lambda: _step_entry(firing, plan.result, now=now, reason=reason, level=level)


def _step_entry(
    firing: Firing, result: PageResult, *, now: datetime, reason: str, level: dict[str, Any]
) -> tuple[dict[str, Any], Fired]:
    assert firing.event is not None
    message = reason + "."
    if firing.event.caught_up:
        message += f" Sent late: it was due {when(firing.due_at)}."
    if not level["contact"]:
        message += f" No contact is set for {level['name']}: nobody was notified."
    elif result.reached:
        message += f" Notified {result.reached_text()}."
    if result.skipped:
        message += f" Not reachable: {result.skipped_text()}."
    return _entry(firing, result, now=now, message=message, target=True)


def _entry(
    firing: Firing, result: PageResult, *, now: datetime, message: str, target: bool
) -> tuple[dict[str, Any], Fired]:
    """A fired step's timeline entry (for ``timeline_record_many``) and what fired; ``target``:
    the entry's data names the step's target (a matrix step does, the ack timeout does not)."""
    event, due_at = firing.event, firing.due_at
    assert event is not None
    incident = firing.esc.incident
    data: dict[str, Any] = {"event": event.pk, "step": event.step}
    if target:
        data["target"] = event.target
    data |= {
        "due_at": due_at.isoformat(),
        "caught_up": event.caught_up,
        "notifications": [n.pk for n in result.sent],
    }
    entry = {
        "incident": incident,
        "kind": Kind.ESCALATION,
        "source": Source.SYSTEM,
        "actor": None,
        "message": message,
        "data": data,
        "occurred_at": now,
    }
    return entry, Fired(
        incident=incident.number,
        step=event.step,
        target=event.target,
        severity=incident.severity_id,
        due_at=due_at,
        caught_up=event.caught_up,
        notifications=len(result.sent),
    )


def _announce_ack_timeout(
    firing: Firing, *, now: datetime, context: dict[str, Any], zones: dict[int, Any]
) -> Announced:
    esc, event, due_at = firing.esc, firing.event, firing.due_at
    assert event is not None
    incident = esc.incident
    snapshot = esc.policy_snapshot
    severity = incident.severity_id
    recipients, _target = _backups(snapshot)
    response_target = format_elapsed(due_at - incident.detected_at)
    caught_up = event.caught_up
    channels = snapshot_severity(snapshot, severity)["channels"]
    reason = f"Not acknowledged within the {response_target} response target (Sev {severity})"
    plan = recipients_plan(
        incident=incident,
        recipients=recipients,
        channels=channels,
        kind="ack_timeout",
        key_prefix=f"ack-timeout:{incident.pk}",
        reason=reason,
        base_context=context,
        extra_context={"response_target": response_target, "caught_up": caught_up},
        zones=zones,
    )
    return plan, lambda: _ack_timeout_entry(
        firing, plan.result, now=now, reason=reason, anyone=bool(recipients)
    )


def _ack_timeout_entry(
    firing: Firing, result: PageResult, *, now: datetime, reason: str, anyone: bool
) -> tuple[dict[str, Any], Fired]:
    assert firing.event is not None
    if result.reached:
        message = f"{reason}: paged the backup contacts – {result.reached_text()}."
    elif not anyone:
        message = f"{reason}. No backup contacts are set: nobody was paged."
    else:
        message = f"{reason}. No backup contact could be reached."
    if firing.event.caught_up:
        message += f" Sent late: it was due {when(firing.due_at)}."
    if result.skipped:
        message += f" Not reachable: {result.skipped_text()}."
    return _entry(firing, result, now=now, message=message, target=False)
