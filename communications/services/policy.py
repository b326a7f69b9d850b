"""The communication policy (one row, seeded): which severities need the business liaison's
approval before an update is published, and the 30-minute rule with its reminders."""

from __future__ import annotations

import copy
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction

from incidents.errors import InvalidInput
from incidents.memo import Versioned
from incidents.models import SeverityLevel
from incidents.services.common import audited_save

from ..errors import require
from ..models import CommunicationPolicy, StakeholderGroup, StatusPageSettings

POLICY_FIELDS = ("approval_severities", "first_update_minutes", "reminder_minutes")
MAX_MINUTES = 24 * 60


# The communication policy, the status page's time zone and the active stakeholder groups, read
# for every new incident's schedules and clocks: kept per process while none of them changes
# (:mod:`incidents.memo`).
COMMUNICATION_POLICY = Versioned(
    "communications:policy", models=(CommunicationPolicy, StatusPageSettings, StakeholderGroup)
)


def _policy_row() -> CommunicationPolicy:
    policy, _ = CommunicationPolicy.objects.get_or_create(pk=1)
    return policy


def communication_policy_get() -> CommunicationPolicy:
    """The policy row (created with the defaults if a database lost it); a copy of the one
    kept per process, the caller's own to change."""
    return copy.deepcopy(COMMUNICATION_POLICY.get("policy", _policy_row))


def status_time_zone() -> ZoneInfo:
    """The status page's time zone (UTC when it has none, or an unknown one): what times in
    messages to people outside the response team are written in."""
    name = COMMUNICATION_POLICY.get(
        "time_zone",
        lambda: StatusPageSettings.objects.filter(pk=1).values_list("time_zone", flat=True).first(),
    )
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def stakeholder_groups_active() -> list[StakeholderGroup]:
    """The active stakeholder groups in their order. The groups are shared: not to be
    changed by the caller."""
    return list(
        COMMUNICATION_POLICY.get(
            "stakeholder_groups",
            lambda: list(StakeholderGroup.objects.filter(active=True).order_by("position", "name")),
        )
    )


def _int_list(value: Any, field: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or any(
        isinstance(item, bool) or not isinstance(item, int) for item in value
    ):
        raise InvalidInput({field: "A list of whole numbers, e.g. [1, 2]."})
    return sorted(set(value))


def communication_policy_validate(
    *, approval_severities: Any, first_update_minutes: Any, reminder_minutes: Any
) -> dict[str, Any]:
    """The policy's values checked and normalised (sorted, without repeats). Raises
    InvalidInput naming every field that is wrong."""
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    levels = set(SeverityLevel.objects.values_list("level", flat=True)) or {1, 2, 3, 4}
    try:
        severities = _int_list(approval_severities, "approval_severities")
        unknown = [level for level in severities if level not in levels]
        if unknown:
            raise InvalidInput(
                {
                    "approval_severities": f"Unknown severity levels {unknown}; "
                    f"the levels are {sorted(levels)}."
                }
            )
        cleaned["approval_severities"] = severities
    except InvalidInput as exc:
        errors.update(exc.errors)
    minutes = first_update_minutes
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        errors["first_update_minutes"] = f"Whole minutes from 1 to {MAX_MINUTES}."
        minutes = None
    else:
        cleaned["first_update_minutes"] = minutes
    try:
        reminders = _int_list(reminder_minutes, "reminder_minutes")
        if any(value < 1 for value in reminders):
            raise InvalidInput({"reminder_minutes": "Reminders are at 1 minute or later."})
        if minutes is not None and any(value >= minutes for value in reminders):
            raise InvalidInput(
                {
                    "reminder_minutes": "Reminders must come before the first update is due "
                    f"(under {minutes} minutes)."
                }
            )
        cleaned["reminder_minutes"] = reminders
    except InvalidInput as exc:
        errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors)
    return cleaned


@transaction.atomic
def communication_policy_update(
    *, actor: Any, source: str, policy: CommunicationPolicy | None = None, **changes: Any
) -> CommunicationPolicy:
    """Change the policy (``approval_severities``, ``first_update_minutes``,
    ``reminder_minutes``); the fields not given keep their values. Needs
    ``communications.change_communicationpolicy``. Saved with a history record naming the actor.
    Idempotent: the same values save nothing."""
    require(actor, "communications.change_communicationpolicy", "change the policy")
    unknown = sorted(set(changes) - set(POLICY_FIELDS))
    if unknown:
        raise InvalidInput({name: "Not a field of the communication policy." for name in unknown})
    communication_policy_get()
    locked = CommunicationPolicy.objects.select_for_update().get(pk=1)
    values = {name: changes.get(name, getattr(locked, name)) for name in POLICY_FIELDS}
    cleaned = communication_policy_validate(**values)
    changed = [name for name in POLICY_FIELDS if getattr(locked, name) != cleaned[name]]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, cleaned[name])
    audited_save(locked, actor=actor, reason=f"policy changed ({source}): {', '.join(changed)}")
    return locked
