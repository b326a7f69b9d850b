"""The stakeholder schedule (§5.2's table): each group hears on its interval while the incident
is active, the communications lead is reminded before an update with nothing new, "no change"
messages, a final message on resolution, one catch-up after a beat outage, sends on demand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from communications.models import (
    SendKind,
    StakeholderGroup,
    StakeholderMember,
    StakeholderNote,
    StakeholderSchedule,
    StakeholderSend,
    StatusPageSettings,
    StatusUpdate,
    UpdateState,
    UpdateStatus,
)
from communications.services.stakeholders import (
    stakeholder_note_write,
    stakeholder_send_now,
    stakeholder_sweep,
)
from communications.tasks import stakeholder_sweep_task
from escalation.models import Notification
from incidents.errors import ActionForbidden, InvalidInput
from incidents.models import Incident, Source, TimelineEntry
from incidents.services import (
    incident_cancel,
    incident_change_severity,
    incident_create,
    incident_reopen,
    incident_resolve,
)
from tests.events import followed
from tests.outbox import published_tasks

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

EXEC, BIZ, SUPPORT, PARTNERS = (
    "Executive team",
    "Business units",
    "Customer support",
    "Partners",
)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def group(name: str) -> StakeholderGroup:
    return StakeholderGroup.objects.get(name=name)


def create(severity: int = 1, **kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return followed(incident_create)(actor=None, source=Source.SYSTEM, severity=severity, **kwargs)


def resolve(incident: Incident) -> Incident:
    return followed(incident_resolve)(
        incident=incident, actor=None, source=Source.SYSTEM, resolution="Rolled back."
    )


def note(incident: Incident, name: str, body: str, actor=None) -> StakeholderNote:
    return stakeholder_note_write(
        incident=incident, group=group(name), body=body, actor=actor, source=Source.ADMIN
    )


def publish(incident: Incident, at: datetime) -> StatusUpdate:
    return StatusUpdate.objects.create(
        incident=incident,
        public_title="Checkout errors",
        public_status=UpdateStatus.IDENTIFIED,
        body="A faulty release is being rolled back.",
        state=UpdateState.PUBLISHED,
        published_at=at,
    )


def sends(incident: Incident) -> list[tuple[int, str, str, int]]:
    """(sent at, group, kind, due at), minutes after T0, in the order they went out."""
    return [
        (
            round((s.sent_at - T0) / MIN),
            s.group.name,
            s.kind,
            round((s.due_at - T0) / MIN),
        )
        for s in StakeholderSend.objects.filter(incident=incident)
        .select_related("group")
        .order_by("sent_at", "group__position", "kind")
    ]


def run_minutes(clock, start: int, end: int) -> None:
    """Beat every minute from ``start`` to ``end`` (inclusive), minutes after T0."""
    for minute in range(start, end + 1):
        clock.move_to(T0 + minute * MIN)
        stakeholder_sweep_task()


# --- the seeded table --------------------------------------------------------------------------


def test_the_seeded_table_is_5_2_value_for_value():
    rows = [
        (g.name, g.channel, g.extra_channels, g.intervals, g.content, g.as_needed)
        for g in StakeholderGroup.objects.order_by("position")
    ]
    assert rows == [
        (EXEC, "email", ["sms"], {"1": 120}, "status_eta", False),
        (BIZ, "email", [], {"1": 240, "2": 240}, "impact", False),
        (SUPPORT, "slack", [], {"1": 30, "2": 30}, "talking_points", False),
        (PARTNERS, "email", [], {}, "service_impact", True),
    ]
    executives = [m.contact.email for m in group(EXEC).members.order_by("pk")]
    assert executives == ["it-manager@example.com", "cto@example.com", "ceo@example.com"]
    assert [m.address for m in group(SUPPORT).members.all()] == ["#support"]


# --- the 6-hour Sev 1 --------------------------------------------------------------------------


def test_a_six_hour_sev_1_sends_every_group_its_updates_and_reminders_on_time(clock):
    incident = create(severity=1)
    schedules = {s.group.name: s for s in StakeholderSchedule.objects.filter(incident=incident)}
    assert set(schedules) == {EXEC, BIZ, SUPPORT}  # Partners: as needed, no schedule
    assert schedules[EXEC].next_due_at == T0 + 120 * MIN

    run_minutes(clock, 1, 44)
    note(incident, SUPPORT, "Tell callers checkout fails; no workaround yet.")
    run_minutes(clock, 45, 99)
    note(incident, EXEC, "Cause found (bad release); rollback under way, ETA 13:30.")
    run_minutes(clock, 100, 194)
    publish(incident, T0 + 195 * MIN)
    run_minutes(clock, 195, 364)
    clock.move_to(T0 + 365 * MIN)
    resolve(incident)
    run_minutes(clock, 366, 400)

    R, S, N, F = SendKind.REMINDER, SendKind.SCHEDULED, SendKind.NO_CHANGE, SendKind.FINAL
    assert sends(incident) == [
        (20, SUPPORT, R, 30),
        (30, SUPPORT, S, 30),
        (60, SUPPORT, S, 60),  # the note written at +45
        (80, SUPPORT, R, 90),
        (90, SUPPORT, N, 90),
        (110, SUPPORT, R, 120),
        (120, EXEC, S, 120),  # the note written at +100: no reminder
        (120, SUPPORT, N, 120),
        (140, SUPPORT, R, 150),
        (150, SUPPORT, N, 150),
        (170, SUPPORT, R, 180),
        (180, SUPPORT, N, 180),
        (210, SUPPORT, S, 210),  # the status update published at +195
        (230, SUPPORT, R, 240),
        (240, EXEC, S, 240),
        (240, BIZ, S, 240),
        (240, SUPPORT, N, 240),
        (260, SUPPORT, R, 270),
        (270, SUPPORT, N, 270),
        (290, SUPPORT, R, 300),
        (300, SUPPORT, N, 300),
        (320, SUPPORT, R, 330),
        (330, SUPPORT, N, 330),
        (350, EXEC, R, 360),
        (350, SUPPORT, R, 360),
        (360, EXEC, N, 360),
        (360, SUPPORT, N, 360),
        (365, EXEC, F, 365),
        (365, BIZ, F, 365),
        (365, SUPPORT, F, 365),
    ]
    assert not StakeholderSend.objects.filter(late=True).exists()
    assert set(StakeholderSchedule.objects.values_list("next_check_at", flat=True)) == {None}

    # Through the outbox: the executives by email (their phones are the seeded placeholders),
    # #support on Slack, the reminders to the communications lead's primary contact by email.
    outbox = Notification.objects.filter(
        incident=incident, idempotency_key__startswith="stakeholder:"
    )
    by_recipient = {}
    for n in outbox:
        by_recipient.setdefault((n.channel, n.recipient), 0)
        by_recipient[(n.channel, n.recipient)] += 1
    assert by_recipient == {
        ("email", "it-manager@example.com"): 4,
        ("email", "cto@example.com"): 4,
        ("email", "ceo@example.com"): 4,
        ("email", "business-units@example.com"): 2,
        ("slack", "#support"): 13,
        ("email", "communications-lead-primary@example.com"): 11,
    }
    assert outbox.count() == len(set(outbox.values_list("idempotency_key", flat=True)))


def test_messages_say_what_the_row_asks_for_in_the_status_page_time_zone(clock):
    StatusPageSettings.objects.update_or_create(pk=1, defaults={"time_zone": "Europe/Paris"})
    incident = create(severity=1, business_impact="Orders cannot be placed.")
    note(incident, EXEC, "Rollback under way, ETA 13:30.")
    note(incident, SUPPORT, "Checkout fails; no workaround yet.")
    run_minutes(clock, 30, 30)
    run_minutes(clock, 60, 60)
    run_minutes(clock, 120, 120)

    support = StakeholderSend.objects.get(group=group(SUPPORT), due_at=T0 + 30 * MIN)
    assert support.kind == SendKind.SCHEDULED
    assert "Talking points (written 11:00 CET):" in support.body
    assert "Checkout fails; no workaround yet." in support.body
    assert "Next update at 12:00 CET." in support.body

    no_change = StakeholderSend.objects.get(group=group(SUPPORT), due_at=T0 + 60 * MIN)
    assert no_change.kind == SendKind.NO_CHANGE
    assert no_change.body.startswith("No change since 11:30 CET, next update at 12:30 CET.")

    executive = StakeholderSend.objects.get(group=group(EXEC), kind=SendKind.SCHEDULED)
    assert "Status and ETA (written 11:00 CET):" in executive.body
    assert "Rollback under way, ETA 13:30." in executive.body
    assert "Severity: Sev 1 (Critical) · Status: Open" in executive.body
    assert "Resolution target (Sev 1): 15:00 CET" in executive.body
    mail = Notification.objects.get(
        recipient="ceo@example.com", idempotency_key__contains=":scheduled:"
    )
    assert mail.subject == f"{incident.number}: Status and ETA for Executive team"
    assert mail.body == executive.body


def test_a_sev_3_incident_has_no_stakeholder_schedule(clock):
    incident = create(severity=3)
    assert not StakeholderSchedule.objects.filter(incident=incident).exists()
    run_minutes(clock, 0, 0)
    clock.move_to(T0 + 300 * MIN)
    assert stakeholder_sweep() == []


def test_a_severity_change_re_plans_the_intervals(clock):
    incident = create(severity=2)
    assert {s.group.name for s in StakeholderSchedule.objects.filter(incident=incident)} == {
        BIZ,
        SUPPORT,
    }
    clock.move_to(T0 + 50 * MIN)
    followed(incident_change_severity)(
        incident=incident, actor=None, source=Source.SYSTEM, severity=1
    )
    executive = StakeholderSchedule.objects.get(incident=incident, group=group(EXEC))
    assert executive.next_due_at == T0 + 170 * MIN  # two hours from the change

    clock.move_to(T0 + 70 * MIN)
    followed(incident_change_severity)(
        incident=incident, actor=None, source=Source.SYSTEM, severity=3
    )
    rows = StakeholderSchedule.objects.filter(incident=incident)
    assert {(s.group.name, s.interval_minutes, s.next_due_at) for s in rows} == {
        (EXEC, None, None),
        (BIZ, None, None),
        (SUPPORT, None, None),
    }
    clock.move_to(T0 + 300 * MIN)
    assert stakeholder_sweep() == []
    assert sends(incident) == []


# --- downtime -----------------------------------------------------------------------------------


def test_a_three_hour_beat_outage_is_caught_up_once_marked_late(clock):
    incident = create(severity=1)
    run_minutes(clock, 1, 30)  # support's first update at +30
    # Beat is down from +31 to +210: support missed +60 ... +210, the executives +120.
    clock.move_to(T0 + 211 * MIN)
    first = stakeholder_sweep()
    again = stakeholder_sweep()

    assert again == []
    assert sorted((a.group, a.kind, a.late) for a in first) == [
        (SUPPORT, SendKind.NO_CHANGE, True),
        (EXEC, SendKind.SCHEDULED, True),
    ]
    late = StakeholderSend.objects.filter(incident=incident, late=True).order_by("group__position")
    assert [(s.group.name, s.due_at) for s in late] == [
        (EXEC, T0 + 120 * MIN),
        (SUPPORT, T0 + 60 * MIN),
    ]
    assert "This update is late: it was due at 11:00 UTC and is sent at 13:31 UTC." in (
        late[1].body
    )
    # The next ones are one interval from now, not a burst of the missed ones.
    due = dict(
        StakeholderSchedule.objects.filter(incident=incident).values_list(
            "group__name", "next_due_at"
        )
    )
    assert due[SUPPORT] == T0 + 241 * MIN
    assert due[EXEC] == T0 + 331 * MIN
    assert due[BIZ] == T0 + 240 * MIN  # not missed yet
    run_minutes(clock, 212, 240)
    assert (
        StakeholderSend.objects.filter(incident=incident, group=group(SUPPORT))
        .exclude(kind=SendKind.REMINDER)
        .count()
        == 2
    )


def test_a_sweep_a_little_behind_keeps_the_cadence_and_is_not_late(clock):
    incident = create(severity=1)
    clock.move_to(T0 + 32 * MIN)
    stakeholder_sweep()
    send = StakeholderSend.objects.get(incident=incident, kind=SendKind.SCHEDULED)
    assert (send.due_at, send.late) == (T0 + 30 * MIN, False)
    schedule = StakeholderSchedule.objects.get(incident=incident, group=group(SUPPORT))
    assert schedule.next_due_at == T0 + 60 * MIN


# --- resolution ---------------------------------------------------------------------------------


def test_resolution_sends_one_final_message_and_reopening_starts_again(clock):
    incident = create(severity=1)
    clock.move_to(T0 + 10 * MIN)
    resolve(incident)
    resolve(incident)  # idempotent
    finals = StakeholderSend.objects.filter(incident=incident, kind=SendKind.FINAL)
    assert sorted(finals.values_list("group__name", flat=True)) == [BIZ, SUPPORT, EXEC]
    assert "was resolved at 10:10 UTC" in finals.get(group=group(EXEC)).body
    assert "Resolution: Rolled back." in finals.get(group=group(EXEC)).body

    clock.move_to(T0 + 20 * MIN)
    incident = followed(incident_reopen)(incident=incident, actor=None, source=Source.SYSTEM)
    schedule = StakeholderSchedule.objects.get(incident=incident, group=group(SUPPORT))
    assert (schedule.stopped_at, schedule.next_due_at) == (None, T0 + 50 * MIN)
    clock.move_to(T0 + 25 * MIN)
    resolve(incident)
    assert StakeholderSend.objects.filter(incident=incident, kind=SendKind.FINAL).count() == 6


def test_a_cancelled_incident_sends_a_final_message_only_to_groups_already_told(clock):
    incident = create(severity=1)
    run_minutes(clock, 30, 30)
    clock.move_to(T0 + 40 * MIN)
    followed(incident_cancel)(
        incident=incident, actor=None, source=Source.SYSTEM, reason="False alarm"
    )
    finals = StakeholderSend.objects.filter(incident=incident, kind=SendKind.FINAL)
    assert [f.group.name for f in finals] == [SUPPORT]
    assert "Reason: False alarm" in finals[0].body
    clock.move_to(T0 + 500 * MIN)
    assert stakeholder_sweep() == []


# --- on demand ----------------------------------------------------------------------------------


def test_partners_are_sent_on_demand_and_hear_the_resolution(clock, communications_lead):
    incident = create(severity=1)
    with pytest.raises(InvalidInput, match="Nothing has been written for Partners"):
        stakeholder_send_now(
            incident=incident, group=group(PARTNERS), actor=communications_lead, source="admin"
        )
    clock.move_to(T0 + 15 * MIN)
    note(incident, PARTNERS, "Order API unavailable; retries will fail until resolved.")
    send = stakeholder_send_now(
        incident=incident, group=group(PARTNERS), actor=communications_lead, source="admin"
    )
    assert (send.kind, send.due_at, send.sent_by, send.recipients) == (
        SendKind.ON_DEMAND,
        T0 + 15 * MIN,
        communications_lead,
        1,
    )
    assert "Service impact (written 10:15 UTC):" in send.body
    assert "Affected services:" in send.body
    mail = Notification.objects.get(recipient="partners@example.com")
    assert mail.channel == "email" and mail.body == send.body

    with pytest.raises(InvalidInput, match="Nothing new since Partners's last update at 10:15"):
        stakeholder_send_now(
            incident=incident, group=group(PARTNERS), actor=communications_lead, source="admin"
        )
    clock.move_to(T0 + 40 * MIN)
    resolve(incident)
    assert StakeholderSend.objects.filter(
        incident=incident, group=group(PARTNERS), kind=SendKind.FINAL
    ).exists()
    assert Notification.objects.filter(recipient="partners@example.com").count() == 2


def test_members_are_reached_on_every_channel_of_the_group(clock, make_user):
    executives = group(EXEC)
    contact = executives.members.first().contact
    contact.phone = "+14155550100"
    contact.save()
    user = make_user(username="coo", email="coo@example.com")
    StakeholderMember.objects.create(group=executives, user=user)
    incident = create(severity=1)
    note(incident, EXEC, "Rollback under way.")
    run_minutes(clock, 120, 120)
    reached = sorted(
        Notification.objects.filter(
            incident=incident, idempotency_key__contains=":scheduled:"
        ).values_list("channel", "recipient")
    )
    assert ("sms", "+14155550100") in reached
    assert ("email", "coo@example.com") in reached
    assert len([r for r in reached if r[0] == "email"]) == 4


def test_a_send_to_a_group_is_one_insert_and_batch_tasks_on_the_incidents_queue(
    clock, make_user, django_capture_on_commit_callbacks, monkeypatch
):
    published, singles = published_tasks(monkeypatch)
    for n in range(3):
        user = make_user(username=f"vp{n}", email=f"vp{n}@example.com")
        StakeholderMember.objects.create(group=group(EXEC), user=user)
    incident = create(severity=1)
    note(incident, EXEC, "Rollback under way.")
    clock.move_to(T0 + 120 * MIN)
    with django_capture_on_commit_callbacks(execute=True):
        stakeholder_sweep_task()
    [send] = StakeholderSend.objects.filter(incident=incident, group=group(EXEC))
    [entry] = TimelineEntry.objects.filter(incident=incident, data__send=send.pk)
    sent = list(
        Notification.objects.filter(pk__in=entry.data["notifications"]).values_list(
            "pk", "recipient"
        )
    )
    assert len(sent) == send.recipients == 6  # the group's 3 seeded members and 3 more
    assert {"vp0@example.com", "vp1@example.com", "vp2@example.com"} <= {r for _, r in sent}
    mine = [(ids, queue) for ids, queue in published if set(ids) & set(entry.data["notifications"])]
    assert mine == [(sorted(entry.data["notifications"]), "vigil.urgent")]
    assert singles == []  # no stakeholder message in a task of its own


# --- permissions and bad input ------------------------------------------------------------------


def test_only_the_communications_lead_and_incident_managers_write_notes_and_send(
    clock, communications_lead, incident_manager, viewer, technical_lead
):
    incident = create(severity=1)
    for user in (viewer, technical_lead):
        with pytest.raises(ActionForbidden):
            note(incident, SUPPORT, "x", actor=user)
        with pytest.raises(ActionForbidden):
            stakeholder_send_now(
                incident=incident, group=group(SUPPORT), actor=user, source="admin"
            )
    note(incident, SUPPORT, "From the lead.", actor=communications_lead)
    note(incident, EXEC, "From the manager.", actor=incident_manager)
    assert StakeholderNote.objects.count() == 2


def test_bad_notes_are_refused_and_nothing_is_stored(clock, communications_lead):
    incident = create(severity=1)
    with pytest.raises(InvalidInput, match="Write what"):
        note(incident, SUPPORT, "   ", actor=communications_lead)
    with pytest.raises(InvalidInput, match="At most 4000"):
        note(incident, SUPPORT, "x" * 4001, actor=communications_lead)
    resolve(incident)
    with pytest.raises(InvalidInput, match="resolved"):
        note(incident, SUPPORT, "Late note", actor=communications_lead)
    assert not StakeholderNote.objects.exists()
