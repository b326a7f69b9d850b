"""Fixtures shared by the paging, acknowledgement, matrix and sweep tests.

The seeded policy holds the procedure's placeholders (``[Phone]``, no Slack handle, no login);
``reachable_policy`` gives every seeded contact a real phone number, a Slack handle and a Vigil
login in its role's group, so every channel of every severity has somewhere to go.

Import the fixtures into a test module::

    from tests.escalation.escalation_fixtures import reachable_policy  # noqa: F401
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group

from incidents.models import Contact, EscalationContact, ResponseRole
from tests.factories import UserFactory

# A Monday morning, far from any day boundary, so incident IDs and due times are predictable.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# §5.1 notification channels per severity, as the procedure states them.
CHANNELS = {
    1: ["phone", "slack", "email"],
    2: ["slack", "email"],
    3: ["email", "slack"],
    4: ["email"],
}
TEAM = ("incident_manager", "technical_lead", "communications_lead")
# The link's key is its fragment: browsers never send it, so no server or proxy logs it.
ACK_LINK = re.compile(r"https?://[^/\s]+/ack/#([^\s|>]+)")


@dataclass
class Policy:
    primary: dict[str, Contact] = field(default_factory=dict)
    backup: dict[str, Contact] = field(default_factory=dict)
    level: dict[str, Contact] = field(default_factory=dict)

    def team(self) -> list[Contact]:
        return [self.primary[key] for key in TEAM]


def _reach(contact: Contact, *, number: int, handle: str, user=None) -> Contact:
    contact.phone = f"+1415555{number:04d}"
    contact.slack_handle = f"@{handle}"
    contact.user = user
    contact.save()
    return contact


@pytest.fixture
def reachable_policy(db) -> Policy:
    policy = Policy()
    number = 100
    for role in ResponseRole.objects.select_related("primary_contact", "backup_contact", "group"):
        slug = role.key.replace("_", "-")
        for kind, contact in (("primary", role.primary_contact), ("backup", role.backup_contact)):
            number += 1
            user = UserFactory(username=f"{slug}-{kind}")
            if role.group is not None:
                user.groups.add(role.group)
            getattr(policy, kind)[role.key] = _reach(
                contact, number=number, handle=f"{slug}-{kind}", user=user
            )
    viewer = Group.objects.get(name="Viewer")
    for level in EscalationContact.objects.select_related("contact"):
        number += 1
        user = UserFactory(username=level.key.replace("_", "-"))
        user.groups.add(viewer)
        policy.level[level.key] = _reach(
            level.contact, number=number, handle=level.key.replace("_", "-"), user=user
        )
    return policy


def ack_token(body: str) -> str:
    """The acknowledge token (the key after the ``#``) in a rendered notification body."""
    match = ACK_LINK.search(body)
    assert match, f"no acknowledge link in: {body!r}"
    return match.group(1)
