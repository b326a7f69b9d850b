"""Writes of the service catalogue (components) and of the policy tables: severities, the
priority matrix, response roles, contacts, escalation levels and the alert rules (§7.2).

The admin and the API both call these, so both check the same model permissions, run the same
model validation (``full_clean``) and leave the same audited history rows naming the actor.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import ProtectedError

from ..errors import ActionForbidden, InvalidInput, VigilError
from ..models import (
    AlertRule,
    Contact,
    EscalationContact,
    PriorityMatrixCell,
    ResponseRole,
    Service,
    SeverityLevel,
)
from .common import audited_delete, audited_save

M = TypeVar("M", bound=models.Model)

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
    "default_impact",
    "default_urgency",
)
ROLE_FIELDS = (
    "name",
    "responsibilities",
    "primary_contact",
    "backup_contact",
    "group",
    "position",
)
CONTACT_FIELDS = ("name", "phone", "email", "slack_handle", "user")
ESCALATION_CONTACT_FIELDS = ("name", "contact", "position")
ALERT_RULE_FIELDS = (
    "key",
    "name",
    "description",
    "enabled",
    "position",
    "match_label",
    "match_values",
    "threshold",
    "unit",
    "value_keys",
    "severity",
    "action",
)


class CatalogForbidden(ActionForbidden):
    """The actor lacks the model permission for a catalogue or policy write."""

    def __init__(self, *, action: str, user: object) -> None:
        self.action = action
        VigilError.__init__(self, f"{user} may not {action} (missing permission).")


class ServiceInUse(InvalidInput):
    """A service that incidents reference cannot be deleted (their history would change)."""


class RowInUse(ServiceInUse):
    """A policy row other rows point at (a contact on a role, a level in the matrix) stays."""


def require_policy_perm(actor: Any, perm: str, action: str) -> None:
    """Raise CatalogForbidden unless ``actor`` holds ``perm``. ``None`` is Vigil itself."""
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise CatalogForbidden(action=action, user=actor)


def _unknown(changes: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise InvalidInput({name: "This field cannot be changed here." for name in unknown})


def validated_save(instance: Any, *, actor: Any, reason: str) -> None:
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


def policy_row_update(row: M, *, actor: Any, source: str, changes: dict[str, Any]) -> M:
    """Lock ``row``, apply the changed values, validate and save with an audited reason naming
    the fields (in the model's field order, so the admin and the API write the same reason).
    Must run inside the caller's transaction. No change, no write."""
    model = type(row)
    locked = model._default_manager.select_for_update().get(pk=row.pk)
    order = {field.name: index for index, field in enumerate(model._meta.fields)}
    changed = sorted(
        (name for name, value in changes.items() if getattr(locked, name) != value),
        key=lambda name: order.get(name, len(order)),
    )
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    validated_save(locked, actor=actor, reason=f"updated {', '.join(changed)} via {source}")
    return locked


def policy_row_delete(row: models.Model, *, actor: Any, source: str, in_use: str) -> None:
    """Lock and delete ``row`` with an audited reason; rows that others protect are refused
    with ``in_use`` as the message (nothing is deleted). Must run inside a transaction."""
    locked = type(row)._default_manager.select_for_update().get(pk=row.pk)
    try:
        with transaction.atomic():
            audited_delete(locked, actor=actor, reason=f"deleted via {source}")
    except ProtectedError:
        raise RowInUse({"non_field_errors": in_use}) from None


@transaction.atomic
def service_create(*, actor: Any, source: str, **fields: Any) -> Service:
    """Add a service to the catalogue. Needs ``incidents.add_service``. Not idempotent."""
    require_policy_perm(actor, "incidents.add_service", "add services")
    _unknown(fields, SERVICE_FIELDS)
    service = Service(**fields)
    validated_save(service, actor=actor, reason=f"created via {source}")
    return service


@transaction.atomic
def service_update(*, service: Service, actor: Any, source: str, **changes: Any) -> Service:
    """Edit a service. Needs ``incidents.change_service``. Idempotent: no change, no write."""
    require_policy_perm(actor, "incidents.change_service", "change services")
    _unknown(changes, SERVICE_FIELDS)
    return policy_row_update(service, actor=actor, source=source, changes=changes)


@transaction.atomic
def service_delete(*, service: Service, actor: Any, source: str) -> None:
    """Delete a service no incident references; referenced ones are deactivated instead
    (``is_active=False``) so past incidents keep naming them. Needs ``delete_service``."""
    require_policy_perm(actor, "incidents.delete_service", "delete services")
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
    try:
        audited_delete(locked, actor=actor, reason=f"deleted via {source}")
    except ProtectedError as exc:
        # Integrations, routing rules and maintenance windows that recorded alerts name it.
        names = sorted({str(type(obj)._meta.verbose_name_plural) for obj in exc.protected_objects})
        raise ServiceInUse(
            {
                "slug": (
                    f"Still used by {', '.join(names)}; change those first, or deactivate "
                    "the service (is_active=false) instead of deleting it."
                )
            }
        ) from None


@transaction.atomic
def severity_level_update(
    *, severity: SeverityLevel, actor: Any, source: str, **changes: Any
) -> SeverityLevel:
    """Edit a severity level's definition, targets or channels (§2.1, §5.1).

    Needs ``incidents.change_severitylevel`` (admin level). New targets apply to incidents
    logged or re-classified afterwards. Idempotent.
    """
    require_policy_perm(actor, "incidents.change_severitylevel", "change the severity policy")
    _unknown(changes, SEVERITY_FIELDS)
    return policy_row_update(severity, actor=actor, source=source, changes=changes)


@transaction.atomic
def priority_cell_update(
    *, cell: PriorityMatrixCell, actor: Any, source: str, priority: int
) -> PriorityMatrixCell:
    """Change one cell of the priority matrix (§2.2). Needs
    ``incidents.change_prioritymatrixcell`` (admin level). Existing incidents keep the priority
    they were given; the new value applies when an incident's impact or urgency next changes.
    Idempotent."""
    require_policy_perm(actor, "incidents.change_prioritymatrixcell", "change the priority matrix")
    locked = PriorityMatrixCell.objects.select_for_update().get(pk=cell.pk)
    if locked.priority == priority:
        return locked
    old = locked.priority
    locked.priority = priority
    validated_save(locked, actor=actor, reason=f"priority {old} → {priority} via {source}")
    return locked


@transaction.atomic
def response_role_update(
    *, role: ResponseRole, actor: Any, source: str, **changes: Any
) -> ResponseRole:
    """Edit a response role (§3.1): name, responsibilities, contacts, group, position (not
    its key: code and every incident's assignments refer to it).

    Needs ``incidents.change_responserole`` (admin level). Idempotent.
    """
    require_policy_perm(actor, "incidents.change_responserole", "change the response roles")
    _unknown(changes, ROLE_FIELDS)
    return policy_row_update(role, actor=actor, source=source, changes=changes)


@transaction.atomic
def response_role_create(*, actor: Any, source: str, key: str, **fields: Any) -> ResponseRole:
    """Add a response role (§3.1). Needs ``incidents.add_responserole`` (admin level). Not
    idempotent (a second role with the same key is refused)."""
    require_policy_perm(actor, "incidents.add_responserole", "add response roles")
    _unknown(fields, ROLE_FIELDS)
    role = ResponseRole(key=key, **fields)
    validated_save(role, actor=actor, reason=f"created via {source}")
    return role


# --- contacts and escalation levels (§3.1, §5.1) -----------------------------------------------


@transaction.atomic
def contact_create(*, actor: Any, source: str, **fields: Any) -> Contact:
    """Add a contact (at least one of phone, email, Slack handle). Needs
    ``incidents.add_contact``. Not idempotent."""
    require_policy_perm(actor, "incidents.add_contact", "add contacts")
    _unknown(fields, CONTACT_FIELDS)
    contact = Contact(**fields)
    validated_save(contact, actor=actor, reason=f"created via {source}")
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, actor: Any, source: str, **changes: Any) -> Contact:
    """Edit a contact: how the person is reached, and their Vigil login. Roles and escalation
    levels naming the contact reach the new details at once (running escalations keep the
    snapshot they took). Needs ``incidents.change_contact``. Idempotent."""
    require_policy_perm(actor, "incidents.change_contact", "change contacts")
    _unknown(changes, CONTACT_FIELDS)
    return policy_row_update(contact, actor=actor, source=source, changes=changes)


@transaction.atomic
def contact_delete(*, contact: Contact, actor: Any, source: str) -> None:
    """Delete a contact no response role or escalation level names (those are refused with
    ``RowInUse``). Needs ``incidents.delete_contact``."""
    require_policy_perm(actor, "incidents.delete_contact", "delete contacts")
    policy_row_delete(
        contact,
        actor=actor,
        source=source,
        in_use="A response role or escalation level names this contact; replace it there first.",
    )


@transaction.atomic
def escalation_contact_create(
    *, actor: Any, source: str, key: str, **fields: Any
) -> EscalationContact:
    """Add an escalation level (§5.1) and its contact. Needs ``incidents.add_escalationcontact``
    (admin level). Not idempotent (a second level with the same key is refused)."""
    require_policy_perm(actor, "incidents.add_escalationcontact", "add escalation levels")
    _unknown(fields, ESCALATION_CONTACT_FIELDS)
    level = EscalationContact(key=key, **fields)
    validated_save(level, actor=actor, reason=f"created via {source}")
    return level


@transaction.atomic
def escalation_contact_update(
    *, escalation_contact: EscalationContact, actor: Any, source: str, **changes: Any
) -> EscalationContact:
    """Edit an escalation level: its name, contact or position (not its key, which the
    escalation matrix and policy snapshots refer to). Needs
    ``incidents.change_escalationcontact`` (admin level). Idempotent."""
    require_policy_perm(actor, "incidents.change_escalationcontact", "change escalation levels")
    _unknown(changes, ESCALATION_CONTACT_FIELDS)
    return policy_row_update(escalation_contact, actor=actor, source=source, changes=changes)


@transaction.atomic
def escalation_contact_delete(
    *, escalation_contact: EscalationContact, actor: Any, source: str
) -> None:
    """Delete an escalation level no step of the escalation matrix uses (those are refused
    with ``RowInUse``). Needs ``incidents.delete_escalationcontact``."""
    require_policy_perm(actor, "incidents.delete_escalationcontact", "delete escalation levels")
    policy_row_delete(
        escalation_contact,
        actor=actor,
        source=source,
        in_use="The escalation matrix uses this level; change or delete those steps first.",
    )


# --- alert rules (§7.2) --------------------------------------------------------------------------


@transaction.atomic
def alert_rule_create(*, actor: Any, source: str, **fields: Any) -> AlertRule:
    """Add an alert rule. Needs ``incidents.add_alertrule``. Applies to alerts processed
    afterwards. Not idempotent (a second rule with the same key is refused)."""
    require_policy_perm(actor, "incidents.add_alertrule", "add alert rules")
    _unknown(fields, ALERT_RULE_FIELDS)
    rule = AlertRule(**fields)
    validated_save(rule, actor=actor, reason=f"created via {source}")
    return rule


@transaction.atomic
def alert_rule_update(*, rule: AlertRule, actor: Any, source: str, **changes: Any) -> AlertRule:
    """Edit an alert rule: what it matches, its threshold, the severity and action it gives.
    Needs ``incidents.change_alertrule``. Alerts already classified keep their severity.
    Idempotent."""
    require_policy_perm(actor, "incidents.change_alertrule", "change alert rules")
    _unknown(changes, ALERT_RULE_FIELDS)
    return policy_row_update(rule, actor=actor, source=source, changes=changes)


@transaction.atomic
def alert_rule_delete(*, rule: AlertRule, actor: Any, source: str) -> None:
    """Delete an alert rule; the alerts it classified keep their severity and action (their
    link to the rule is cleared). Needs ``incidents.delete_alertrule``."""
    require_policy_perm(actor, "incidents.delete_alertrule", "delete alert rules")
    policy_row_delete(rule, actor=actor, source=source, in_use="This rule is in use.")


__all__ = [
    "CatalogForbidden",
    "RowInUse",
    "ServiceInUse",
    "alert_rule_create",
    "alert_rule_delete",
    "alert_rule_update",
    "contact_create",
    "contact_delete",
    "contact_update",
    "escalation_contact_create",
    "escalation_contact_delete",
    "escalation_contact_update",
    "policy_row_delete",
    "policy_row_update",
    "priority_cell_update",
    "require_policy_perm",
    "response_role_create",
    "response_role_update",
    "service_create",
    "service_delete",
    "service_update",
    "severity_level_update",
    "validated_save",
]
