"""Who a stakeholder message reaches (the group's members on its channels, or the
communications lead for a reminder) and the outbox rows written for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from escalation.outbox import OutboxMessage, notification_enqueue_together
from incidents.models import Channel, Contact, Incident

from ...models import SendKind, StakeholderGroup
from ..comms_leads import Person, comms_leads, person_for_contact, person_for_user
from .common import KEY_PREFIX, REMINDER_CHANNELS, _stamp


@dataclass(frozen=True)
class _Recipient:
    key: str
    name: str
    channel: str
    address: str
    contact: Contact | None = None


@dataclass
class _Reach:
    recipients: list[_Recipient] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _group_channels(group: StakeholderGroup) -> list[str]:
    channels = [group.channel]
    for channel in group.extra_channels or []:
        if channel in Channel.values and channel not in channels:
            channels.append(channel)
    return channels


def _members(group: StakeholderGroup) -> _Reach:
    """Each member's address on each of the group's channels; a bare address (a Slack channel,
    a mailing list) is on the group's own channel. One message per channel and address."""
    reach = _Reach()
    seen: set[tuple[str, str]] = set()
    channels = _group_channels(group)
    for member in group.members.select_related("contact", "user").order_by("pk"):
        targets: list[tuple[str, str, str, Contact | None]] = []
        if member.contact is not None or member.user is not None:
            if member.contact is None and not member.user.is_active:
                continue
            person: Person = (
                person_for_contact(member.contact)
                if member.contact is not None
                else person_for_user(member.user)
            )
            for channel in channels:
                targets.append((channel, person.address(channel), person.name, person.contact))
        else:
            targets.append((group.channel, member.address.strip(), member.address, None))
        for channel, address, name, contact in targets:
            if not address:
                reach.skipped.append({"recipient": name, "channel": channel})
                continue
            if (channel, address.lower()) in seen:
                continue
            seen.add((channel, address.lower()))
            reach.recipients.append(
                _Recipient(
                    key=f"m{member.pk}",
                    name=name,
                    channel=channel,
                    address=address,
                    contact=contact,
                )
            )
    return reach


def _leads_reach(incident: Incident) -> _Reach:
    reach = _Reach()
    channels = [c for c in incident.severity.notification_channels if c in REMINDER_CHANNELS] or [
        Channel.EMAIL
    ]
    for person in comms_leads(incident, with_backup=False):
        for channel in channels:
            address = person.address(channel)
            if not address:
                reach.skipped.append({"recipient": person.name, "channel": channel})
                continue
            reach.recipients.append(
                _Recipient(
                    key=person.key,
                    name=person.name,
                    channel=channel,
                    address=address,
                    contact=person.contact,
                )
            )
    return reach


def _enqueue(
    *,
    incident: Incident,
    group: StakeholderGroup,
    kind: str,
    due_at: datetime,
    reach: _Reach,
    subject: str,
    body: str,
) -> list[int]:
    return notification_enqueue_together(
        [
            OutboxMessage(
                incident=incident,
                channel=recipient.channel,
                recipient=recipient.address,
                subject=subject,
                body=body,
                template=f"communications/stakeholder_{kind}",
                reason=f"Stakeholder {SendKind(kind).label.lower()}: {group.name}"[:200],
                idempotency_key=(
                    f"{KEY_PREFIX}:{incident.pk}:{group.pk}:{_stamp(due_at)}:{kind}:"
                    f"{recipient.key}:{recipient.channel}"
                ),
                contact=recipient.contact,
                context={
                    "kind": "stakeholder",
                    "send": kind,
                    "group": group.name,
                    "incident": incident.number,
                },
            )
            for recipient in reach.recipients
        ]
    )


def _reached_text(reach: _Reach) -> str:
    by_name: dict[str, list[str]] = {}
    for r in reach.recipients:
        by_name.setdefault(r.name, []).append(Channel(r.channel).label)
    return "; ".join(f"{name} by {', '.join(channels)}" for name, channels in by_name.items())
