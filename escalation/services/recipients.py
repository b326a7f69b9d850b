"""Who a page reaches: a person (a Contact, or a user with no Contact) with the addresses
they can be reached at and the response roles they are paged for, and the response team of an
incident (the paged roles' holders, else their primary contacts)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection

from incidents.memo import Versioned
from incidents.models import (
    Channel,
    Contact,
    Incident,
    ResponseRole,
    RoleAssignment,
    channel_address,
)
from incidents.queue_statements import columns_sql, row_from_db

__all__ = [
    "BROADCAST_CHANNELS",
    "BROADCAST_RECIPIENT",
    "PAGED_ROLES",
    "PEOPLE",
    "Recipient",
    "contact_ids_known",
    "recipient_for_contact",
    "recipient_for_user",
    "recipients_merge",
    "response_team",
]

PAGED_ROLES = (
    ResponseRole.INCIDENT_MANAGER,
    ResponseRole.TECHNICAL_LEAD,
    ResponseRole.COMMUNICATIONS_LEAD,
)
# Channels that reach a place (a Teams channel, a receiving system) rather than a person: one
# message per page, to the destination configured under this name.
BROADCAST_CHANNELS = (Channel.TEAMS, Channel.WEBHOOK)
BROADCAST_RECIPIENT = "default"

# The paged roles with their primary contacts, and which contacts exist: read for every new
# incident's pages, kept per process while no role or contact changes (:mod:`incidents.memo`).
PEOPLE = Versioned("escalation:people", models=(ResponseRole, Contact))


def contact_ids_known() -> frozenset[int]:
    """The ids of every contact. Not to be changed by the caller."""
    return PEOPLE.get(
        "contact_ids", lambda: frozenset(Contact.objects.values_list("pk", flat=True))
    )


# --- recipients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A person to page, with the addresses they can be reached at.

    ``key`` identifies the person in idempotency keys: ``c<id>`` for a Contact, ``u<id>`` for
    a user with no Contact. ``user_id`` is the login their acknowledge links act as.
    ``role_keys`` are the response roles (keys) they are paged for, carried in their
    acknowledge links: acknowledging gives them an empty one (``incident_role_claim``).
    """

    key: str
    name: str
    roles: tuple[str, ...] = ()
    role_keys: tuple[str, ...] = ()
    contact_id: int | None = None
    user_id: int | None = None
    email: str = ""
    phone: str = ""
    slack: str = ""

    def address(self, channel: str) -> str:
        """The address for ``channel``, or "" when this person cannot be reached on it."""
        if channel in BROADCAST_CHANNELS:
            return BROADCAST_RECIPIENT
        return channel_address(channel, email=self.email, phone=self.phone, slack=self.slack)

    @property
    def label(self) -> str:
        return f"{' / '.join(self.roles)} {self.name}".strip() if self.roles else self.name

    def snapshot(self) -> dict[str, Any]:
        """The recipient as stored in a policy snapshot (plain JSON)."""
        return {
            "key": self.key,
            "name": self.name,
            "contact_id": self.contact_id,
            "user_id": self.user_id,
            "email": self.email,
            "phone": self.phone,
            "slack": self.slack,
        }

    @classmethod
    def from_snapshot(
        cls, data: dict[str, Any], *, role: str = "", role_key: str = ""
    ) -> Recipient:
        return cls(
            key=data["key"],
            name=data.get("name", ""),
            roles=(role,) if role else (),
            role_keys=(role_key,) if role_key else (),
            contact_id=data.get("contact_id"),
            user_id=data.get("user_id"),
            email=data.get("email", ""),
            phone=data.get("phone", ""),
            slack=data.get("slack", ""),
        )


def recipient_for_contact(contact: Contact, *, role: str = "", role_key: str = "") -> Recipient:
    return Recipient(
        key=f"c{contact.pk}",
        name=contact.name,
        roles=(role,) if role else (),
        role_keys=(role_key,) if role_key else (),
        contact_id=contact.pk,
        user_id=contact.user_id,
        email=contact.email,
        phone=contact.phone,
        slack=contact.slack_handle,
    )


def recipient_for_user(user: Any, *, role: str = "", role_key: str = "") -> Recipient:
    """The user's Contact (their phone and Slack), or else the user with their email only."""
    contact = Contact.objects.filter(user=user).order_by("pk").first()
    if contact is not None:
        return recipient_for_contact(contact, role=role, role_key=role_key)
    return Recipient(
        key=f"u{user.pk}",
        name=user.get_full_name() or user.get_username(),
        roles=(role,) if role else (),
        role_keys=(role_key,) if role_key else (),
        user_id=user.pk,
        email=user.email or "",
    )


def recipients_merge(recipients: Iterable[Recipient]) -> list[Recipient]:
    """One entry per person, holding every role they were chosen for, in first-seen order."""
    merged: dict[str, Recipient] = {}
    for recipient in recipients:
        known = merged.get(recipient.key)
        if known is None:
            merged[recipient.key] = recipient
        else:
            roles = known.roles + tuple(r for r in recipient.roles if r not in known.roles)
            keys = known.role_keys + tuple(
                k for k in recipient.role_keys if k not in known.role_keys
            )
            merged[recipient.key] = replace(known, roles=roles, role_keys=keys)
    return list(merged.values())


def _paged_role_holders(incident_id: int) -> dict[str, Any]:
    """The users holding the incident's paged roles, by role key: one statement, built once
    (it runs for every page of every incident)."""
    user_model = get_user_model()
    with connection.cursor() as cursor:
        cursor.execute(_holders_sql(), [incident_id, *PAGED_ROLES])
        return {row[0]: row_from_db(user_model, row[1:]) for row in cursor.fetchall()}


@cache
def _holders_sql() -> str:
    q = connection.ops.quote_name
    user_model = get_user_model()
    field = RoleAssignment._meta.get_field
    return (
        f"SELECT r.{q(ResponseRole._meta.get_field('key').column)}, {columns_sql(user_model, 'u')} "
        f"FROM {q(RoleAssignment._meta.db_table)} a "
        f"INNER JOIN {q(ResponseRole._meta.db_table)} r "
        f"ON r.{q(ResponseRole._meta.pk.column)} = a.{q(field('role').column)} "
        f"INNER JOIN {q(user_model._meta.db_table)} u "
        f"ON u.{q(user_model._meta.pk.column)} = a.{q(field('user').column)} "
        f"WHERE a.{q(field('incident').column)} = %s "
        f"AND r.{q(ResponseRole._meta.get_field('key').column)} "
        f"IN ({', '.join(['%s'] * len(PAGED_ROLES))})"
    )


def response_team(incident: Incident) -> tuple[list[Recipient], list[str]]:
    """The people holding the paged roles now, and the roles nobody can be paged for."""
    assigned = _paged_role_holders(incident.pk)
    roles = PEOPLE.get(
        "paged_roles",
        lambda: list(
            ResponseRole.objects.filter(key__in=PAGED_ROLES).select_related("primary_contact")
        ),
    )
    found: list[Recipient] = []
    nobody: list[str] = []
    for role in sorted(roles, key=lambda r: PAGED_ROLES.index(r.key)):
        user = assigned.get(role.key)
        if user is not None:
            found.append(recipient_for_user(user, role=role.name, role_key=role.key))
        elif role.primary_contact is not None:
            found.append(
                recipient_for_contact(role.primary_contact, role=role.name, role_key=role.key)
            )
        else:
            nobody.append(role.name)
    return recipients_merge(found), nobody
