"""Field-level history of an incident, read from its django-simple-history records.

Every save by a service leaves a history record naming the actor and the reason; each entry
here is one record with the fields that differ from the record before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..models import Incident, Service
from ..serializers import iso, user_ref

TRACKED = (
    "title",
    "summary",
    "severity",
    "impact",
    "urgency",
    "priority",
    "status",
    "detection_source",
    "customer_facing",
    "affected_users",
    "business_impact",
    "root_cause",
    "resolution",
    "lessons_learned",
    "cancel_reason",
    "duplicate_of",
    "impact_started_at",
    "detected_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "cancelled_at",
    "response_due_at",
    "resolution_due_at",
)
_ATTNAMES = {name: Incident._meta.get_field(name).attname for name in TRACKED}
TYPES = {"+": "created", "~": "changed", "-": "deleted"}


def incident_history_records(*, incident: Incident):
    """The incident's history records, with who made them and their services, oldest first."""
    return Incident.history.filter(id=incident.pk).select_related("history_user")


def _services_by_record(records: Sequence[Any]) -> dict[int, list[int]]:
    """The services each history record names, in one query for all of them."""
    through = Incident.history.model._meta.get_field("historicalincident_services").related_model
    rows = through.objects.filter(history_id__in=[record.history_id for record in records])
    services: dict[int, list[int]] = {record.history_id: [] for record in records}
    for history_id, service_id in rows.values_list("history_id", "service_id"):
        services[history_id].append(service_id)
    return {history_id: sorted(ids) for history_id, ids in services.items()}


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return value


def _snapshot(record: Any, services: dict[int, list[int]]) -> dict[str, Any]:
    values = {name: getattr(record, attname) for name, attname in _ATTNAMES.items()}
    values["services"] = services[record.history_id]
    return values


def history_entries(records: Sequence[Any], previous: Any | None) -> list[dict[str, Any]]:
    """One entry per record with the fields changed since the record before it."""
    services = _services_by_record([*records, *([previous] if previous is not None else [])])
    snapshots = [_snapshot(record, services) for record in records]
    before = _snapshot(previous, services) if previous is not None else None

    service_ids = {pk for snap in snapshots for pk in snap["services"]}
    if before is not None:
        service_ids.update(before["services"])
    duplicate_ids = {snap["duplicate_of"] for snap in snapshots if snap["duplicate_of"]}
    if before is not None and before["duplicate_of"]:
        duplicate_ids.add(before["duplicate_of"])
    slugs = dict(Service.objects.filter(pk__in=service_ids).values_list("pk", "slug"))
    numbers = dict(Incident.objects.filter(pk__in=duplicate_ids).values_list("pk", "number"))

    def shown(name: str, value: Any) -> Any:
        if name == "services":
            return [slugs.get(pk, f"#{pk}") for pk in value]
        if name == "duplicate_of" and value is not None:
            return numbers.get(value, value)
        return _value(value)

    entries = []
    for record, snap in zip(records, snapshots, strict=True):
        names = [*TRACKED, "services"]
        if before is None:
            changes = [
                {"field": name, "old": None, "new": shown(name, snap[name])}
                for name in names
                if snap[name] not in (None, "", [])
            ]
        else:
            changes = [
                {
                    "field": name,
                    "old": shown(name, before[name]),
                    "new": shown(name, snap[name]),
                }
                for name in names
                if before[name] != snap[name]
            ]
        entries.append(
            {
                "id": record.history_id,
                "at": iso(record.history_date),
                "user": user_ref(record.history_user),
                "type": TYPES.get(record.history_type, "changed"),
                "reason": record.history_change_reason,
                "changes": changes,
            }
        )
        before = snap
    return entries


def previous_record(*, incident: Incident, before_history_id: int) -> Any | None:
    return (
        incident_history_records(incident=incident)
        .filter(history_id__lt=before_history_id)
        .order_by("-history_id")
        .first()
    )
