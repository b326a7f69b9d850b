"""The communications lead of an incident as people to reach: the user assigned the role on the
incident, else the Communications Lead role's primary contact, and its backup contact when
asked; each with the addresses it can be reached at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from incidents.models import Contact, Incident, ResponseRole, channel_address

__all__ = ["Person", "comms_leads", "person_for_contact", "person_for_user"]


@dataclass(frozen=True)
class Person:
    key: str
    name: str
    contact: Contact | None = None
    email: str = ""
    phone: str = ""
    slack: str = ""

    def address(self, channel: str) -> str:
        return channel_address(channel, email=self.email, phone=self.phone, slack=self.slack)


def person_for_contact(contact: Contact) -> Person:
    return Person(
        key=f"c{contact.pk}",
        name=contact.name,
        contact=contact,
        email=contact.email,
        phone=contact.phone,
        slack=contact.slack_handle,
    )


def person_for_user(user: Any) -> Person:
    contact = Contact.objects.filter(user=user).order_by("pk").first()
    if contact is not None:
        return person_for_contact(contact)
    return Person(
        key=f"u{user.pk}", name=user.get_full_name() or user.get_username(), email=user.email
    )


def comms_leads(incident: Incident, *, with_backup: bool) -> list[Person]:
    """The communications lead to remind (the assignee, else the role's primary contact),
    and the role's backup contact when ``with_backup``; one entry per person."""
    role = (
        ResponseRole.objects.select_related("primary_contact", "backup_contact")
        .filter(key=ResponseRole.COMMUNICATIONS_LEAD)
        .first()
    )
    assignment = (
        incident.role_assignments.select_related("user")
        .filter(role__key=ResponseRole.COMMUNICATIONS_LEAD, user__isnull=False)
        .first()
    )
    people: list[Person] = []
    if assignment is not None and assignment.user.is_active:
        people.append(person_for_user(assignment.user))
    elif role is not None and role.primary_contact is not None:
        people.append(person_for_contact(role.primary_contact))
    if with_backup and role is not None and role.backup_contact is not None:
        people.append(person_for_contact(role.backup_contact))
    unique: dict[str, Person] = {}
    for person in people:
        unique.setdefault(person.key, person)
    return list(unique.values())
