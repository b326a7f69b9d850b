"""The stakeholder schedule (§5.2's stakeholder table; §4.2 step 2 "establish regular update
schedule"): each stakeholder group hears about an active incident at its interval, on its
channel, without anyone having to remember it.

* **Planning.** When an incident is logged (it is active from then on), each active
  :class:`StakeholderGroup` with an interval for the incident's severity gets a
  :class:`StakeholderSchedule`: its first update is due one interval after the incident was
  logged. A severity change re-plans the interval (a group without an interval for the new
  severity pauses; one that gains an interval starts from the change); reopening a resolved
  incident starts the stopped schedules again. "As needed" groups (no interval) have no
  schedule: they are sent on demand (:func:`stakeholder_send_now`). The incident handler
  ``communications.stakeholders`` calls :func:`stakeholder_schedules_sync` and
  :func:`stakeholder_schedules_stop`.
* **Content.** Staff write an internal note for a group (:func:`stakeholder_note_write`); an
  update is composed from the latest note written for the group (or, without one, the latest
  published status update), framed by what the group's row asks for: status and ETA, impact
  assessment, talking points or service impact.
* **The sweep** (:func:`stakeholder_sweep`, beat) claims due schedules by ``next_check_at``
  (indexed) with ``FOR UPDATE SKIP LOCKED``. When nothing new was written since the group's
  last update (no newer note for it, no newer published status update), the communications lead
  is reminded the policy's ``stakeholder_reminder_lead_minutes`` before the due time. At the due
  time the group gets its update, or, with nothing new, "No change since HH:MM, next update at
  HH:MM". Each send is one :class:`StakeholderSend` row, UNIQUE (incident, group, due time,
  kind), written with its outbox rows in the claiming transaction: two sweeps at once send it
  once. A sweep that finds the due time long past (beat was down) sends one catch-up update,
  marked late, and plans the next one an interval from now, not a burst of the missed ones.
* **Resolution** (or closing, or cancelling) stops every schedule of the incident and sends each
  group that was on a schedule, or was sent an update on demand, one final message. A
  cancelled incident sends it only to the groups that had already been told something.

Every message leaves through the outbox, a send's messages together
(``escalation.outbox.notification_enqueue_together``: one INSERT, batch tasks), keyed per
(incident, group, due time, kind, recipient, channel). Times in messages are shown in the
status page's time zone, with the zone's name.

The package, by concern: :mod:`.planning` (starting, re-planning and stopping schedules),
:mod:`.compose` (the message text), :mod:`.recipients` (who a message reaches),
:mod:`.sending` (one send with its outbox rows), :mod:`.sweep` (the beat sweep),
:mod:`.on_demand` (notes and sends by hand), :mod:`.reading` (the schedule as shown) and
:mod:`.common` (constants and small helpers they share).
"""

from .common import LATE_AFTER, NOTE_MAX, NOTE_PERMISSION, SEND_PERMISSION, StakeholderAction
from .on_demand import stakeholder_note_write, stakeholder_send_now
from .planning import stakeholder_schedules_stop, stakeholder_schedules_sync
from .reading import ScheduleRow, stakeholder_schedule_list
from .sweep import stakeholder_sweep

__all__ = [
    "LATE_AFTER",
    "NOTE_MAX",
    "NOTE_PERMISSION",
    "SEND_PERMISSION",
    "ScheduleRow",
    "StakeholderAction",
    "stakeholder_note_write",
    "stakeholder_schedule_list",
    "stakeholder_schedules_stop",
    "stakeholder_schedules_sync",
    "stakeholder_send_now",
    "stakeholder_sweep",
]
