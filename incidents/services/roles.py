"""Response roles on an incident: assigning, unassigning and claiming them, and who may hold one."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from ..errors import InvalidInput
from ..events import INCIDENT_ROLE_ASSIGNED, announce
from ..models import ACTIVE_STATUSES, Incident, Kind, ResponseRole, RoleAssignment
from .common import audited_save, require_perm, timeline_record
from .incidents import FINAL_STATUSES, actor_id
from .policy import can_hold_response_role, response_role_refusal


def check_role_holders(roles: dict[str, Any]) -> None:
    """Refuse (InvalidInput on ``roles``) users named for a role who cannot hold one."""
    if not any(user is not None for user in roles.values()):
        return
    errors = []
    names = dict(ResponseRole.objects.values_list("key", "name"))
    for key, user in roles.items():
        if (
            user is not None
            and not isinstance(user, (int, str))
            and not can_hold_response_role(user)
        ):
            errors.append(response_role_refusal(user, names.get(key, key)))
    if errors:
        raise InvalidInput({"roles": " ".join(errors)})


@transaction.atomic
def incident_role_assign(
    *,
    incident: Incident,
    role: ResponseRole | str,
    user: Any,
    actor: Any,
    source: str,
) -> RoleAssignment | None:
    """Assign (or with ``user=None`` unassign) a response role on an incident (§3.1).

    Refused (InvalidInput) once the incident is closed or cancelled: who held which role is
    part of its record; and for a user who cannot hold a role (a read-only Viewer, see
    ``policy.can_hold_response_role``). Writes a timeline entry and a history record and sends
    ``incident_role_assigned`` after commit. Idempotent: assigning the current holder again
    is a no-op, in any status.
    """
    require_perm(actor, "incidents.assign_incident_roles", "assign roles on")
    return role_assign(incident=incident, role=role, user=user, actor=actor, source=source)


@transaction.atomic
def incident_role_claim(
    *,
    incident: Incident,
    role: ResponseRole | str,
    user: Any,
    source: str,
    why: str,
) -> RoleAssignment | None:
    """``user`` takes ``role`` on ``incident`` if nobody holds it (acknowledging the page
    they were sent for it, say); ``why`` says how, on the timeline entry. Needs no permission
    to assign roles (taking an empty role one was paged for is not assigning others), but
    the user must be able to hold one, and the incident must be active. Returns the new
    assignment, or None when the role was held (by anyone, the user included), the incident
    is not active, or the user cannot hold it. Idempotent."""
    if not isinstance(role, ResponseRole):
        role = ResponseRole.objects.filter(key=role).first()
        if role is None:
            return None
    if not can_hold_response_role(user):
        return None
    status = (
        Incident.objects.select_for_update().values_list("status", flat=True).get(pk=incident.pk)
    )
    if status not in ACTIVE_STATUSES:
        return None
    if RoleAssignment.objects.filter(incident=incident, role=role).exists():
        return None
    return role_assign(incident=incident, role=role, user=user, actor=user, source=source, why=why)


def role_assign(
    *,
    incident: Incident,
    role: ResponseRole | str,
    user: Any,
    actor: Any,
    source: str,
    why: str = "",
) -> RoleAssignment | None:
    if not isinstance(role, ResponseRole):
        try:
            role = ResponseRole.objects.get(key=role)
        except ResponseRole.DoesNotExist:
            raise InvalidInput({"role": f"Unknown role {role!r}."}) from None
    if user is not None and not isinstance(user, get_user_model()):
        try:
            user = get_user_model().objects.get(pk=user)
        except (get_user_model().DoesNotExist, ValueError, TypeError):
            raise InvalidInput({"user": f"Unknown user {user!r}."}) from None
    if user is not None and not user.is_active:
        raise InvalidInput({"user": f"{user} is not an active user."})
    if user is not None and not can_hold_response_role(user):
        raise InvalidInput({"user": response_role_refusal(user, role.name)})
    # Lock the incident so two assignments of the same role queue instead of colliding.
    status = (
        Incident.objects.select_for_update().values_list("status", flat=True).get(pk=incident.pk)
    )
    current = RoleAssignment.objects.filter(incident=incident, role=role).first()
    if (current.user_id if current else None) == (user.pk if user else None):
        return current
    if status in FINAL_STATUSES:
        raise InvalidInput(
            {
                "role": f"The incident is {status}; its response roles are part of its record "
                f"and no longer change ({role.name})."
            }
        )

    previous = current.user if current else None
    if user is None:
        current._history_user = actor
        current._change_reason = "unassigned"
        current.delete()
        assignment = None
        message = f"{role.name}: {_name(previous)} unassigned."
    else:
        assignment = current or RoleAssignment(incident=incident, role=role)
        assignment.user = user
        assignment.assigned_at = timezone.now()
        assignment.assigned_by = actor
        audited_save(assignment, actor=actor, reason="assigned")
        message = f"{role.name}: {_name(user)} assigned" + (
            f" (replacing {_name(previous)})." if previous else "."
        )
        if why:
            message = f"{role.name}: {_name(user)} ({why})."
    role_data: dict[str, Any] = {"role": role.key, "user": user.pk if user else None}
    if why:
        role_data["why"] = why
    timeline_record(
        incident=incident,
        kind=Kind.ROLE,
        source=source,
        actor=actor,
        message=message,
        data=role_data,
    )
    announce(
        INCIDENT_ROLE_ASSIGNED,
        incident=incident,
        role_key=role.key,
        user_id=user.pk if user else None,
        actor_id=actor_id(actor),
        source=source,
    )
    return assignment


def _name(user: Any) -> str:
    if user is None:
        return "nobody"
    return user.get_full_name() or user.get_username()


__all__ = [
    "check_role_holders",
    "incident_role_assign",
    "incident_role_claim",
    "role_assign",
]
