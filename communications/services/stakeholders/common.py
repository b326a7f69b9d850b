"""What the stakeholder schedule's modules share: its constants, the action a sweep or a
service reports, the policy and time-zone look-ups and the time formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from incidents.models import Channel

KEY_PREFIX = "stakeholder"
NOTE_MAX = 4000
# An update sent more than this after its due time is marked late (beat runs every 30 s; a
# send this late means the sweep was not running, or the worker was far behind).
LATE_AFTER = timedelta(minutes=5)
# Reminders of a routine update reach the lead in writing: no phone call every 30 minutes.
REMINDER_CHANNELS = (Channel.SLACK, Channel.EMAIL, Channel.SMS)
NOTE_PERMISSION = "communications.add_stakeholdernote"
SEND_PERMISSION = "communications.add_stakeholdersend"


@dataclass(frozen=True)
class StakeholderAction:
    """One thing a sweep (or a service) sent: ``kind`` is a :class:`SendKind` value."""

    incident: str
    group: str
    kind: str
    due_at: datetime
    late: bool = False
    recipients: int = 0


# --- small helpers -------------------------------------------------------------------------------


def _hhmm(value: datetime, zone: ZoneInfo) -> str:
    local = value.astimezone(zone)
    return f"{local:%H:%M} {local.tzname() or zone.key}"


def _every(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "every hour" if hours == 1 else f"every {hours} hours"
    return f"every {minutes} minutes"


def _stamp(value: datetime) -> str:
    return value.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%S.%f")
