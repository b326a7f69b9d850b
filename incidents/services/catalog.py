"""Writes of the service catalogue (components) and of the policy tables, for the API.

The admin edits these rows through Django's forms; the API goes through here so that it
checks the same model permissions, runs the same model validation (``full_clean``) and leaves
the same audited history rows naming the actor.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ..errors import ActionForbidden, InvalidInput, VigilError
from ..models import PriorityMatrixCell, ResponseRole, Service, SeverityLevel
from .common import audited_save

SERVICE_FIELDS = (
    "slug",
    "name",
    "public_name",
    "description",
    "kind",
    "tier",
    "customer_facing",
    "owner",
    "is_active",
)
SEVERITY_FIELDS = (
    "name",
    "definition",
    "business_impact",
    "examples",
    "response_target",
    "resolution_target",
    "notification_channels",
)
ROLE_FIELDS = ("name", "responsibilities", "primary_contact", "backup_contact", "position")


class CatalogForbidden(ActionForbidden):
    """The actor lacks the model permission for a catalogue or policy write."""

    def __init__(self, *, action: str, user: object) -> None:
        self.action = action
        VigilError.__init__(self, f"{user} may not {action} (missing permission).")


class ServiceInUse(InvalidInput):
    """A service that incidents reference cannot be deleted (their history would change)."""


def _require(actor: Any, perm: str, action: str) -> None:
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise CatalogForbidden(action=action, user=actor)


def _unknown(changes: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise InvalidInput({name: "This field cannot be changed here." for name in unknown})


def _validated_save(instance: Any, *, actor: Any, reason: str) -> None:
    """full_clean, then an audited save; a unique race lost at the database is an input error."""
    try:
        instance.full_clean()
    except ValidationError as exc:
        raise InvalidInput(
            {field: " ".join(messages) for field, messages in exc.message_dict.items()}
        ) from None
    try:
        with transaction.atomic():
            audited_save(instance, actor=actor, reason=reason)
    except IntegrityError:
        raise InvalidInput({"non_field_errors": "This conflicts with an existing row."}) from None


@transaction.atomic
def service_create(*, actor: Any, source: str, **fields: Any) -> Service:
    """Add a service to the catalogue. Needs ``incidents.add_service``. Not idempotent."""
    _require(actor, "incidents.add_service", "add services")
    _unknown(fields, SERVICE_FIELDS)
    service = Service(**fields)
    _validated_save(service, actor=actor, reason=f"created via {source}")
    return service


@transaction.atomic
def service_update(*, service: Service, actor: Any, source: str, **changes: Any) -> Service:
    """Edit a service. Needs ``incidents.change_service``. Idempotent: no change, no write."""
    _require(actor, "incidents.change_service", "change services")
    _unknown(changes, SERVICE_FIELDS)
    locked = Service.objects.select_for_update().get(pk=service.pk)
    changed = [name for name, value in changes.items() if getattr(locked, name) != value]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    _validated_save(locked, actor=actor, reason=f"updated {', '.join(changed)} via {source}")
    return locked


@transaction.atomic
def service_delete(*, service: Service, actor: Any, source: str) -> None:
    """Delete a service no incident references; referenced ones are deactivated instead
    (``is_active=False``) so past incidents keep naming them. Needs ``delete_service``."""
    _require(actor, "incidents.delete_service", "delete services")
    locked = Service.objects.select_for_update().get(pk=service.pk)
    used = locked.incidents.count()
    if used:
        raise ServiceInUse(
            {
                "slug": (
                    f"{used} incident(s) name this service; deactivate it "
                    "(is_active=false) instead of deleting it."
                )
            }
        )
    locked._history_user = actor  # type: ignore[attr-defined]
    locked._change_reason = f"deleted via {source}"  # type: ignore[attr-defined]
    locked.delete()


@transaction.atomic
def severity_level_update(
    *, severity: SeverityLevel, actor: Any, source: str, **changes: Any
) -> SeverityLevel:
    """Edit a severity level's definition, targets or channels (§2.1, §5.1).

    Needs ``incidents.change_severitylevel`` (admin level). New targets apply to incidents
    logged or re-classified afterwards. Idempotent.
    """
    _require(actor, "incidents.change_severitylevel", "change the severity policy")
    _unknown(changes, SEVERITY_FIELDS)
    locked = SeverityLevel.objects.select_for_update().get(pk=severity.pk)
    changed = [name for name, value in changes.items() if getattr(locked, name) != value]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    _validated_save(locked, actor=actor, reason=f"updated {', '.join(changed)} via {source}")
    return locked


@transaction.atomic
def priority_cell_update(
    *, cell: PriorityMatrixCell, actor: Any, source: str, priority: int
) -> PriorityMatrixCell:
    """Change one cell of the priority matrix (§2.2). Needs
    ``incidents.change_prioritymatrixcell`` (admin level). Existing incidents keep the priority
    they were given; the new value applies when an incident's impact or urgency next changes.
    Idempotent."""
    _require(actor, "incidents.change_prioritymatrixcell", "change the priority matrix")
    locked = PriorityMatrixCell.objects.select_for_update().get(pk=cell.pk)
    if locked.priority == priority:
        return locked
    old = locked.priority
    locked.priority = priority
    _validated_save(locked, actor=actor, reason=f"priority {old} → {priority} via {source}")
    return locked


@transaction.atomic
def response_role_update(
    *, role: ResponseRole, actor: Any, source: str, **changes: Any
) -> ResponseRole:
    """Edit a response role (§3.1): name, responsibilities, contacts, position.

    Needs ``incidents.change_responserole`` (admin level). Idempotent.
    """
    _require(actor, "incidents.change_responserole", "change the response roles")
    _unknown(changes, ROLE_FIELDS)
    locked = ResponseRole.objects.select_for_update().get(pk=role.pk)
    changed = [name for name, value in changes.items() if getattr(locked, name) != value]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    _validated_save(locked, actor=actor, reason=f"updated {', '.join(changed)} via {source}")
    return locked


__all__ = [
    "CatalogForbidden",
    "ServiceInUse",
    "priority_cell_update",
    "response_role_update",
    "service_create",
    "service_delete",
    "service_update",
    "severity_level_update",
]
