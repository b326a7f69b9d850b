"""Pieces shared by the incident services: permission checks, audited saves, timeline writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models.constants import OnConflict
from django.utils import timezone

from ..bulk import rows_insert
from ..errors import ActionForbidden, InvalidInput
from ..memo import Versioned
from ..models import Incident, Kind, PriorityMatrixCell, SeverityLevel, Source, TimelineEntry

User = AbstractBaseUser

# The severity levels and the priority matrix, read for every new incident and every severity
# change: kept per process while neither changes (:mod:`incidents.memo`).
POLICY_ROWS = Versioned("incidents:policy", models=(SeverityLevel, PriorityMatrixCell))


def severity_levels() -> dict[int, SeverityLevel]:
    """Every severity level by its number. Not to be changed by the caller."""
    return POLICY_ROWS.get("severities", lambda: {s.level: s for s in SeverityLevel.objects.all()})


def require_perm(actor: Any, perm: str, action: str) -> None:
    """Raise ActionForbidden unless ``actor`` holds ``perm``. ``None`` is Vigil itself."""
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise ActionForbidden(action=action, user=actor)


def audited_save(instance: models.Model, *, actor: Any, reason: str, **kwargs: Any) -> None:
    """Save a history-tracked row, naming who did it and why in its history record."""
    instance._history_user = actor  # type: ignore[attr-defined]
    # The history column holds 100 characters; PostgreSQL rejects a longer reason outright.
    instance._change_reason = reason[:100]  # type: ignore[attr-defined]
    instance.save(**kwargs)


def audited_delete(instance: models.Model, *, actor: Any, reason: str) -> None:
    """Delete a history-tracked row; its last history record names who did it and why."""
    instance._history_user = actor  # type: ignore[attr-defined]
    instance._change_reason = reason[:100]  # type: ignore[attr-defined]
    instance.delete()


def _timeline_entry(
    *,
    kind: str,
    source: str,
    actor: Any,
    message: str,
    incident: Incident | None = None,
    incident_id: int | None = None,
    data: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> TimelineEntry:
    if (incident is None) == (incident_id is None):
        raise TypeError("A timeline entry names its incident (incident or incident_id).")
    entry = TimelineEntry(
        kind=kind,
        source=source,
        actor=actor,
        message=message,
        data=data or {},
        occurred_at=occurred_at or timezone.now(),
    )
    if incident is not None:
        entry.incident = incident
    else:
        entry.incident_id = incident_id
    return entry


def timeline_record(
    *,
    incident: Incident,
    kind: str,
    source: str,
    actor: Any,
    message: str,
    data: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> TimelineEntry:
    """Append one entry to an incident's timeline. Entries are never edited afterwards."""
    entry = _timeline_entry(
        incident=incident,
        kind=kind,
        source=source,
        actor=actor,
        message=message,
        data=data,
        occurred_at=occurred_at,
    )
    entry.save(force_insert=True)
    return entry


def insert_unless_present(instance: models.Model) -> bool:
    """Insert ``instance`` with one ``INSERT … ON CONFLICT DO NOTHING RETURNING id``: no
    savepoint for a race on a unique key. True (and its pk set) when the row was inserted;
    False when a row with its unique values exists already (the caller reads that one)."""
    model = type(instance)
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    returned = model._default_manager._insert(
        [instance],
        fields=fields,
        returning_fields=[model._meta.pk],
        on_conflict=OnConflict.IGNORE,
    )
    if not (returned and returned[0] and returned[0][0]):  # a skipped row comes back as [None]
        return False
    instance.pk = returned[0][0]
    instance._state.adding = False
    return True


def timeline_record_many(*, entries: Iterable[Mapping[str, Any]]) -> list[TimelineEntry]:
    """Append several timeline entries in one INSERT (say, every alert of one delivery).

    Each item holds :func:`timeline_record`'s keyword arguments; ``incident_id`` may stand in
    for ``incident`` when only the id is at hand. The one bulk path to the timeline: entries
    are never edited afterwards. Not idempotent: each call appends. Nothing to append, no query.
    """
    rows = [_timeline_entry(**entry) for entry in entries]
    if not rows:
        return []
    return rows_insert(rows)


def priority_for(*, impact: str, urgency: str) -> int:
    """Priority 1–4 from the priority matrix (§2.2) as currently configured."""
    cells = POLICY_ROWS.get(
        "matrix",
        lambda: {
            (cell.impact, cell.urgency): cell.priority for cell in PriorityMatrixCell.objects.all()
        },
    )
    priority = cells.get((impact, urgency))
    if priority is None:
        raise InvalidInput(
            {"impact": f"The priority matrix has no cell for urgency {urgency} × impact {impact}."}
        )
    return priority


def apply_sla(incident: Incident, severity: SeverityLevel, *, running_only: bool = False) -> None:
    """Set the response and resolution due times from detection and the severity's targets.

    With ``running_only`` a clock that has stopped (acknowledged, resolved) keeps its due
    time: a response or resolution that met the target of its day is not made late after the
    fact by a later severity change.
    """
    if not (running_only and incident.acknowledged_at is not None):
        incident.response_due_at = incident.detected_at + severity.response_target
    if not (running_only and incident.resolved_at is not None):
        incident.resolution_due_at = incident.detected_at + severity.resolution_target


__all__ = [
    "Kind",
    "Source",
    "apply_sla",
    "audited_delete",
    "audited_save",
    "insert_unless_present",
    "priority_for",
    "require_perm",
    "severity_levels",
    "timeline_record",
    "timeline_record_many",
]
