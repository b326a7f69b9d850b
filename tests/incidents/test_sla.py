"""SLA clocks (§2.1 response and resolution targets): due times from detection, recomputed on
a severity change, breach flags and filters, and the breach sweep noting each breach once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction

from incidents.errors import ActionForbidden, InvalidInput
from incidents.events import INCIDENT_SEVERITY_CHANGED, INCIDENT_SLA_BREACHED
from incidents.models import EventStatus, Incident, IncidentEvent, Kind, SlaBreach, Source
from incidents.selectors import dashboard_summary, incident_sla_clock
from incidents.services import (
    incident_acknowledge,
    incident_cancel,
    incident_change_severity,
    incident_create,
    incident_resolve,
    sla_breaches_record,
)
from incidents.services import sla as sla_service
from incidents.tasks import sla_sweep_task

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RESPONSE = {
    1: timedelta(minutes=15),
    2: timedelta(hours=1),
    3: timedelta(hours=4),
    4: timedelta(hours=24),
}
RESOLUTION = {
    1: timedelta(hours=4),
    2: timedelta(hours=8),
    3: timedelta(hours=24),
    4: timedelta(hours=72),
}


def at(**delta) -> datetime:
    return T0 + timedelta(**delta)


def create(severity: int = 1, detected_at: datetime | None = None, **kwargs) -> Incident:
    with time_machine.travel(T0, tick=False):
        return incident_create(
            actor=None,
            source=Source.SYSTEM,
            title=f"Sev {severity} incident",
            severity=severity,
            detected_at=detected_at,
            **kwargs,
        )


def act(when: datetime, service, incident: Incident, **kwargs) -> Incident:
    with time_machine.travel(when, tick=False):
        return service(incident=incident, actor=None, source=Source.SYSTEM, **kwargs)


def sweep(when: datetime) -> int:
    with time_machine.travel(when, tick=False):
        return sla_breaches_record()


def fresh(incident: Incident) -> Incident:
    return Incident.objects.get(pk=incident.pk)


def recorded(name: str) -> list[tuple]:
    """(incident id, payload, actor id, source) of every ``name`` event recorded, in order."""
    return [
        (e.incident_id, e.payload, e.actor_id, e.source)
        for e in IncidentEvent.objects.filter(name=name).order_by("id")
    ]


# --- due times -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("severity", [1, 2, 3, 4])
def test_due_times_from_detection_per_severity(severity):
    incident = create(severity)
    assert incident.detected_at == T0
    assert incident.response_due_at == T0 + RESPONSE[severity]
    assert incident.resolution_due_at == T0 + RESOLUTION[severity]


@pytest.mark.django_db
def test_due_times_count_from_the_detection_time_not_the_logging_time():
    incident = create(2, detected_at=at(minutes=-40))
    assert incident.response_due_at == at(minutes=20)
    assert incident.resolution_due_at == at(hours=8, minutes=-40)


@pytest.mark.django_db
def test_correcting_the_detection_time_moves_both_clocks():
    from incidents.services import incident_update

    incident = create(2)
    incident = act(at(minutes=5), incident_update, incident, detected_at=at(minutes=-30))
    assert incident.response_due_at == at(minutes=30)
    assert incident.resolution_due_at == at(hours=7, minutes=30)


# --- severity change -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_raising_severity_recomputes_both_clocks_and_records_it(incident_manager):
    incident = create(3)
    with time_machine.travel(at(minutes=10), tick=False):
        result = incident_change_severity(
            incident=incident,
            actor=incident_manager,
            source=Source.ADMIN,
            severity=1,
            reason="Payments affected too.",
        )
    # Recorded with the change; its followers run only after the transaction commits.
    event = IncidentEvent.objects.get(name=INCIDENT_SEVERITY_CHANGED)
    assert (event.status, event.occurred_at) == (EventStatus.PENDING, at(minutes=10))
    stored = fresh(incident)
    assert (result.severity_id, stored.severity_id) == (1, 1)
    assert stored.response_due_at == T0 + RESPONSE[1]
    assert stored.resolution_due_at == T0 + RESOLUTION[1]

    entry = stored.timeline.filter(kind=Kind.SEVERITY).get()
    assert (entry.kind, entry.source, entry.actor) == (
        Kind.SEVERITY,
        Source.ADMIN,
        incident_manager,
    )
    assert entry.data == {"from": 3, "to": 1, "reason": "Payments affected too."}
    assert "Sev 3 → Sev 1" in entry.message and "Payments affected too." in entry.message
    record = stored.history.latest()
    assert (record.severity_id, record.history_user) == (1, incident_manager)
    assert recorded(INCIDENT_SEVERITY_CHANGED) == [
        (
            incident.pk,
            {"old_severity": 3, "new_severity": 1},
            incident_manager.pk,
            Source.ADMIN,
        )
    ]


@pytest.mark.django_db
def test_lowering_severity_gives_more_time():
    incident = create(1)
    incident = act(at(minutes=5), incident_change_severity, incident, severity=4)
    assert incident.response_due_at == T0 + RESPONSE[4]
    assert incident.resolution_due_at == T0 + RESOLUTION[4]
    assert "lowered" in incident.timeline.filter(kind=Kind.SEVERITY).get().message


@pytest.mark.django_db
def test_after_acknowledgement_only_the_resolution_clock_moves():
    incident = create(3)
    incident = act(at(hours=2), incident_acknowledge, incident)  # on time for Sev 3 (4 h)
    incident = act(at(hours=2, minutes=5), incident_change_severity, incident, severity=1)
    assert incident.response_due_at == T0 + RESPONSE[3]  # stopped clock keeps its target
    assert incident.resolution_due_at == T0 + RESOLUTION[1]
    assert not incident.response_breached_at(at(hours=3))
    assert not Incident.objects.filter(pk=incident.pk).response_breached(at(hours=3)).exists()


@pytest.mark.django_db
def test_after_resolution_the_severity_and_both_clocks_are_frozen():
    incident = create(2)
    incident = act(at(hours=6), incident_resolve, incident, resolution="Fixed.")
    due = (incident.response_due_at, incident.resolution_due_at)
    with pytest.raises(InvalidInput) as info:
        act(at(hours=7), incident_change_severity, incident, severity=1)
    assert list(info.value.errors) == ["severity"]
    incident = fresh(incident)
    assert incident.severity_id == 2
    assert (incident.response_due_at, incident.resolution_due_at) == due
    assert not incident.resolution_breached_at(at(hours=7))


@pytest.mark.django_db
def test_same_severity_is_a_no_op():
    incident = create(2)
    counts = (incident.timeline.count(), incident.history.count())
    act(at(minutes=1), incident_change_severity, incident, severity=2)
    assert (incident.timeline.count(), incident.history.count()) == counts
    assert recorded(INCIDENT_SEVERITY_CHANGED) == []


@pytest.mark.django_db
@pytest.mark.parametrize("severity", [0, 5, "high", None, "1; drop table"])
def test_unknown_severity_is_rejected_and_nothing_changes(severity):
    incident = create(2)
    before = Incident.objects.filter(pk=incident.pk).values().get()
    with pytest.raises(InvalidInput) as info:
        act(at(minutes=1), incident_change_severity, incident, severity=severity)
    assert list(info.value.errors) == ["severity"]
    assert "known levels: 1, 2, 3, 4" in info.value.message
    assert Incident.objects.filter(pk=incident.pk).values().get() == before


@pytest.mark.django_db
@pytest.mark.parametrize("status_action", ["close", "cancel"])
def test_severity_is_frozen_once_closed_or_cancelled(status_action):
    incident = create(2, summary="s", root_cause="r", resolution="x", business_impact="b")
    if status_action == "close":
        from incidents.services import incident_close

        incident = act(at(hours=1), incident_resolve, incident)
        incident = act(at(hours=2), incident_close, incident)
    else:
        incident = act(at(hours=1), incident_cancel, incident, reason="False alarm.")
    with pytest.raises(InvalidInput):
        act(at(hours=3), incident_change_severity, incident, severity=1)
    assert fresh(incident).severity_id == 2


@pytest.mark.django_db
@pytest.mark.parametrize("group", ["Communications Lead", "Business Liaison", "Viewer"])
def test_only_responders_change_severity(group, make_user):
    user = make_user(group, username="someone")
    incident = create(3)
    with pytest.raises(ActionForbidden):
        incident_change_severity(incident=incident, actor=user, source=Source.API, severity=1)
    assert fresh(incident).severity_id == 3


@pytest.mark.django_db
def test_severity_change_moves_clocks_across_a_breach():
    # Sev 3 at 30 minutes is on time; raised to Sev 1 it is 15 minutes late.
    incident = create(3)
    assert not incident.response_breached_at(at(minutes=30))
    incident = act(at(minutes=30), incident_change_severity, incident, severity=1)
    assert incident.response_breached_at(at(minutes=30))
    assert Incident.objects.response_breached(at(minutes=30)).filter(pk=incident.pk).exists()


# --- breach flags and filters --------------------------------------------------------------------


def flags(incident: Incident, now: datetime) -> dict[str, bool]:
    qs = Incident.objects.filter(pk=incident.pk)
    return {
        "response": incident.response_breached_at(now),
        "resolution": incident.resolution_breached_at(now),
        "qs_response": qs.response_breached(now).exists(),
        "qs_resolution": qs.resolution_breached(now).exists(),
        "qs_breached": qs.breached(now).exists(),
        "qs_not_breached": qs.not_breached(now).exists(),
    }


def expect(response: bool, resolution: bool) -> dict[str, bool]:
    return {
        "response": response,
        "resolution": resolution,
        "qs_response": response,
        "qs_resolution": resolution,
        "qs_breached": response or resolution,
        "qs_not_breached": not (response or resolution),
    }


@pytest.mark.django_db
def test_unacknowledged_incident_before_and_after_its_targets():
    incident = create(1)
    assert flags(incident, at(minutes=14, seconds=59)) == expect(False, False)
    assert flags(incident, at(minutes=15)) == expect(False, False)  # due is not late
    assert flags(incident, at(minutes=15, seconds=1)) == expect(True, False)
    assert flags(incident, at(hours=4, seconds=1)) == expect(True, True)


@pytest.mark.django_db
def test_acknowledged_on_time_stays_met():
    incident = act(at(minutes=14), incident_acknowledge, create(1))
    assert flags(incident, at(minutes=16)) == expect(False, False)
    assert flags(incident, at(hours=5)) == expect(False, True)


@pytest.mark.django_db
def test_acknowledged_late_stays_breached():
    incident = act(at(minutes=20), incident_acknowledge, create(1))
    assert flags(incident, at(minutes=21)) == expect(True, False)
    assert flags(incident, at(days=30)) == expect(True, True)


@pytest.mark.django_db
@pytest.mark.parametrize(("hours", "late"), [(3, False), (5, True)])
def test_resolution_on_time_or_late_is_final(hours, late):
    incident = act(at(minutes=5), incident_acknowledge, create(1))
    incident = act(at(hours=hours), incident_resolve, incident, resolution="Fixed.")
    assert flags(incident, at(days=10)) == expect(False, late)


@pytest.mark.django_db
def test_cancelled_incident_never_breaches():
    incident = act(at(minutes=5), incident_cancel, create(1), reason="Test page.")
    assert flags(incident, at(days=10)) == expect(False, False)


@pytest.mark.django_db
def test_breached_and_not_breached_partition_all_incidents():
    met = act(at(minutes=5), incident_acknowledge, create(1))
    waiting_late = create(1)
    acked_late = act(at(minutes=30), incident_acknowledge, create(1))
    young = create(4)
    cancelled = act(at(minutes=1), incident_cancel, create(1), reason="No.")
    now = at(hours=1)
    breached = set(Incident.objects.breached(now))
    assert breached == {waiting_late, acked_late}
    assert set(Incident.objects.not_breached(now)) == {met, young, cancelled}
    assert set(Incident.objects.response_breached(now)) == {waiting_late, acked_late}
    assert set(Incident.objects.resolution_breached(now)) == set()
    assert set(Incident.objects.resolution_breached(at(hours=5))) == {met, waiting_late, acked_late}
    assert dashboard_summary(now=now)["breached_total"] == 2


@pytest.mark.django_db
def test_sla_clock_shows_the_clock_that_matters():
    incident = create(1)
    clock = incident_sla_clock(incident, now=at(minutes=10))
    assert (clock.target, clock.due_at, clock.remaining_seconds, clock.breached) == (
        "response",
        at(minutes=15),
        300,
        False,
    )
    incident = act(at(minutes=12), incident_acknowledge, incident)
    clock = incident_sla_clock(incident, now=at(hours=5))
    assert (clock.target, clock.breached) == ("resolution", True)
    assert clock.remaining_seconds == -3600


# --- the breach sweep ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_sweep_notes_each_breach_exactly_once():
    incident = create(1)
    assert sweep(at(minutes=15)) == 0  # due, not yet late
    assert sweep(at(minutes=16)) == 1
    assert sweep(at(minutes=16)) == 0
    assert sweep(at(minutes=30)) == 0
    entries = list(incident.timeline.filter(kind=Kind.SLA))
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.source, entry.actor, entry.occurred_at) == (Source.SYSTEM, None, at(minutes=16))
    assert entry.data == {"target": "response", "due_at": at(minutes=15).isoformat()}
    assert "Response target breached" in entry.message
    breach = SlaBreach.objects.get(incident=incident)
    assert (breach.target, breach.due_at, breach.noted_at) == (
        "response",
        at(minutes=15),
        at(minutes=16),
    )
    assert recorded(INCIDENT_SLA_BREACHED) == [
        (
            incident.pk,
            {"target": "response", "due_at": at(minutes=15).isoformat()},
            None,
            Source.SYSTEM,
        )
    ]

    assert sweep(at(hours=4, minutes=1)) == 1  # then the resolution target
    assert sweep(at(hours=5)) == 0
    assert list(incident.timeline.filter(kind=Kind.SLA).values_list("data__target", flat=True)) == [
        "response",
        "resolution",
    ]


@pytest.mark.django_db
def test_sweep_skips_acknowledged_resolved_and_cancelled_incidents():
    acknowledged = act(at(minutes=5), incident_acknowledge, create(1))
    resolved = act(at(minutes=5), incident_resolve, create(1), resolution="Fixed.")
    cancelled = act(at(minutes=5), incident_cancel, create(1), reason="Duplicate page.")
    waiting = create(1)

    assert sweep(at(minutes=20)) == 1
    assert list(SlaBreach.objects.values_list("incident", "target")) == [(waiting.pk, "response")]
    # Past the resolution target only the still-unresolved active incidents are noted.
    assert sweep(at(hours=5)) == 2
    assert set(
        SlaBreach.objects.filter(target="resolution").values_list("incident", flat=True)
    ) == {
        acknowledged.pk,
        waiting.pk,
    }
    for incident in (resolved, cancelled):
        assert not incident.timeline.filter(kind=Kind.SLA).exists()


@pytest.mark.django_db
def test_sweep_notes_nothing_before_any_target():
    for severity in (1, 2, 3, 4):
        create(severity)
    assert sweep(at(minutes=15)) == 0
    assert not SlaBreach.objects.exists()


@pytest.mark.django_db
def test_a_moved_due_time_can_be_breached_again_but_the_same_one_only_once():
    incident = create(1)
    assert sweep(at(minutes=20)) == 1  # Sev 1 response (15 min) missed
    act(at(minutes=25), incident_change_severity, incident, severity=2)  # now due at 1 h
    assert sweep(at(minutes=30)) == 0
    assert sweep(at(hours=1, minutes=1)) == 1  # the new target is missed too
    act(at(hours=1, minutes=2), incident_change_severity, incident, severity=1)  # due 15 min
    assert sweep(at(hours=1, minutes=3)) == 0  # that breach was already noted
    assert sorted(SlaBreach.objects.filter(target="response").values_list("due_at", flat=True)) == [
        at(minutes=15),
        at(hours=1),
    ]


@pytest.mark.django_db
def test_sweep_pages_through_many_due_incidents(monkeypatch):
    monkeypatch.setattr(sla_service, "BATCH", 2)
    incidents = [create(1) for _ in range(5)]
    assert sweep(at(minutes=20)) == 5
    assert set(SlaBreach.objects.values_list("incident", flat=True)) == {i.pk for i in incidents}


@pytest.mark.django_db
def test_sweep_announces_nothing_when_rolled_back():
    incident = create(1)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        sweep(at(minutes=20))
        assert len(recorded(INCIDENT_SLA_BREACHED)) == 1
        raise Abort
    assert recorded(INCIDENT_SLA_BREACHED) == []
    assert not incident.timeline.filter(kind=Kind.SLA).exists()
    assert sweep(at(minutes=20)) == 1


@pytest.mark.django_db
def test_the_celery_task_runs_the_sweep():
    incident = create(1)
    with time_machine.travel(at(minutes=20), tick=False):
        result = sla_sweep_task.apply()
    assert result.successful()
    assert result.get() == 1
    assert incident.timeline.filter(kind=Kind.SLA).count() == 1
    assert sla_sweep_task.name == "incidents.sla_sweep"


# --- concurrency (PostgreSQL) --------------------------------------------------------------------


def run_threads(count: int, target) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            target(n)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a sweep hung"
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_sweeps_note_each_breach_once():
    incidents = [create(1) for _ in range(12)]
    results: list[int] = []

    def one_sweep(n: int) -> None:
        results.append(sla_breaches_record(now=at(hours=5)))

    errors = run_threads(4, one_sweep)
    assert errors == []
    # 12 response and 12 resolution breaches, shared between the sweeps, none twice.
    assert sum(results) == 24
    assert SlaBreach.objects.count() == 24
    for incident in incidents:
        assert incident.timeline.filter(kind=Kind.SLA).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_sweep_leaves_a_locked_incident_to_the_next_sweep(monkeypatch):
    # With one-row batches, re-reading from the start would spin on the locked row for as
    # long as the lock is held; keyset pagination moves past it.
    monkeypatch.setattr(sla_service, "BATCH", 1)
    locked, free = create(1), create(1)
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                Incident.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        assert sla_breaches_record(now=at(minutes=20)) == 1
        assert list(SlaBreach.objects.values_list("incident", flat=True)) == [free.pk]
    finally:
        release.set()
        holder.join(timeout=30)
    assert sla_breaches_record(now=at(minutes=21)) == 1
    assert SlaBreach.objects.filter(incident=locked).count() == 1
