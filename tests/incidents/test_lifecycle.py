"""The incident lifecycle: the whole status × action matrix, permissions per role group, guards,
idempotency, and what each transition writes (timeline, history, timestamps, event)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction

from incidents.errors import ActionForbidden, GuardFailed, InvalidInput, TransitionNotAllowed
from incidents.events import INCIDENT_TRANSITIONED, events_subscribe, events_unsubscribe
from incidents.models import (
    EventHandling,
    EventStatus,
    HandlingStatus,
    Incident,
    Kind,
    ReportStatus,
    Source,
    Status,
)
from incidents.selectors import actions_available
from incidents.services import (
    ACTIONS,
    incident_acknowledge,
    incident_cancel,
    incident_close,
    incident_create,
    incident_resolve,
    incident_transition,
    incident_update,
)
from tests.events import follow_events
from tests.factories import IncidentFactory, UserFactory

pytestmark = pytest.mark.django_db

OK, NOOP, REFUSED = "ok", "noop", "refused"

# Timeline kinds written by the apps that follow the core's events, not by the core.
OTHER_APPS_KINDS = (Kind.NOTIFICATION, Kind.ESCALATION, Kind.COMMUNICATION)

# What each action does from each status. NOOP: the action already happened, so repeating it
# changes nothing. Incidents reach each status along tests.factories.PATH_TO (the cancelled one
# was cancelled while still open, so it was never acknowledged).
MATRIX = {
    Status.OPEN: {
        "acknowledge": OK,
        "investigate": OK,
        "mitigate": OK,
        "monitor": OK,
        "resolve": OK,
        "reopen": REFUSED,
        "close": REFUSED,
        "cancel": OK,
    },
    Status.ACKNOWLEDGED: {
        "acknowledge": NOOP,
        "investigate": OK,
        "mitigate": OK,
        "monitor": OK,
        "resolve": OK,
        "reopen": REFUSED,
        "close": REFUSED,
        "cancel": OK,
    },
    Status.INVESTIGATING: {
        "acknowledge": NOOP,
        "investigate": NOOP,
        "mitigate": OK,
        "monitor": OK,
        "resolve": OK,
        "reopen": REFUSED,  # never resolved, so there is nothing to reopen
        "close": REFUSED,
        "cancel": OK,
    },
    Status.MITIGATING: {
        "acknowledge": NOOP,
        "investigate": OK,
        "mitigate": NOOP,
        "monitor": OK,
        "resolve": OK,
        "reopen": REFUSED,
        "close": REFUSED,
        "cancel": OK,
    },
    Status.MONITORING: {
        "acknowledge": NOOP,
        "investigate": OK,
        "mitigate": OK,
        "monitor": NOOP,
        "resolve": OK,
        "reopen": REFUSED,
        "close": REFUSED,
        "cancel": OK,
    },
    Status.RESOLVED: {
        "acknowledge": NOOP,
        "investigate": REFUSED,
        "mitigate": REFUSED,
        "monitor": REFUSED,
        "resolve": NOOP,
        "reopen": OK,
        "close": OK,
        "cancel": REFUSED,
    },
    Status.CLOSED: {
        "acknowledge": NOOP,
        "investigate": REFUSED,
        "mitigate": REFUSED,
        "monitor": REFUSED,
        "resolve": REFUSED,
        "reopen": REFUSED,
        "close": NOOP,
        "cancel": REFUSED,
    },
    Status.CANCELLED: {
        "acknowledge": REFUSED,
        "investigate": REFUSED,
        "mitigate": REFUSED,
        "monitor": REFUSED,
        "resolve": REFUSED,
        "reopen": REFUSED,
        "close": REFUSED,
        "cancel": NOOP,
    },
}

TARGET = {
    "acknowledge": Status.ACKNOWLEDGED,
    "investigate": Status.INVESTIGATING,
    "mitigate": Status.MITIGATING,
    "monitor": Status.MONITORING,
    "resolve": Status.RESOLVED,
    "reopen": Status.INVESTIGATING,
    "close": Status.CLOSED,
    "cancel": Status.CANCELLED,
}

# What each action needs to succeed when its guard is met.
PARAMS = {"resolve": {"resolution": "Rolled back release 4.2."}, "cancel": {"reason": "Dup."}}

# Every group's lifecycle actions, as seeded from the procedure.
RESPONDER = {"acknowledge", "investigate", "mitigate", "monitor", "resolve", "reopen"}
GROUP_ACTIONS = {
    "Incident Manager": set(ACTIONS),
    "Technical Lead": RESPONDER,
    "Communications Lead": {"acknowledge"},
    "Business Liaison": set(),
    "Viewer": set(),
}
# A status each action is possible from, to test permissions alone.
START = {
    "acknowledge": Status.OPEN,
    "investigate": Status.ACKNOWLEDGED,
    "mitigate": Status.INVESTIGATING,
    "monitor": Status.MITIGATING,
    "resolve": Status.MONITORING,
    "reopen": Status.RESOLVED,
    "close": Status.RESOLVED,
    "cancel": Status.OPEN,
}

COMPLETE = {
    "summary": "Checkout returned 500s for all customers.",
    "root_cause": "A bad configuration push.",
    "resolution": "Reverted the configuration.",
    "business_impact": "About 2,000 failed orders.",
}


def complete_incident(status: str, **kwargs) -> Incident:
    """An incident in ``status`` whose report fields are filled, so no guard gets in the way."""
    return IncidentFactory(status=status, **{**COMPLETE, **kwargs})


def snapshot(incident: Incident) -> dict:
    """Every stored field (timestamps included), the services, timeline, history and event
    rows."""
    fresh = Incident.objects.get(pk=incident.pk)
    return {
        "row": Incident.objects.filter(pk=incident.pk).values().get(),
        "services": list(fresh.services.values_list("pk", flat=True)),
        "timeline": list(fresh.timeline.values_list("pk", flat=True)),
        "history": list(fresh.history.values_list("pk", flat=True)),
        "events": list(fresh.events.values_list("pk", flat=True)),
    }


def transitioned(incident: Incident, before: dict) -> list[dict]:
    """The ``incident_transitioned`` events recorded since the ``before`` snapshot, in order,
    as their payloads with the actor id and source."""
    events = incident.events.filter(name=INCIDENT_TRANSITIONED).exclude(pk__in=before["events"])
    return [{**e.payload, "actor_id": e.actor_id, "source": e.source} for e in events]


def allowed_from(status: str) -> list[str]:
    return [action for action in ACTIONS if MATRIX[status][action] == OK]


# --- the matrix ----------------------------------------------------------------------------------


def test_matrix_covers_every_status_and_action():
    assert set(MATRIX) == set(Status.values)
    assert all(set(row) == set(ACTIONS) for row in MATRIX.values())


@pytest.mark.parametrize(
    ("status", "action"),
    [(status, action) for status in MATRIX for action in ACTIONS],
)
def test_transition_matrix(status, action, superuser, django_capture_on_commit_callbacks):
    incident = complete_incident(status)
    before = snapshot(incident)
    outcome = MATRIX[status][action]

    with django_capture_on_commit_callbacks() as callbacks:
        if outcome == REFUSED:
            with pytest.raises(TransitionNotAllowed) as info:
                incident_transition(
                    incident=incident,
                    action=action,
                    actor=superuser,
                    source=Source.API,
                    **PARAMS.get(action, {}),
                )
        else:
            result = incident_transition(
                incident=incident,
                action=action,
                actor=superuser,
                source=Source.API,
                **PARAMS.get(action, {}),
            )

    after = snapshot(incident)
    if outcome == REFUSED:
        error = info.value
        assert (error.action, error.status) == (action, status)
        assert error.allowed == allowed_from(status)
        assert f"Cannot {action} an incident that is {status}" in error.message
        assert after == before
        assert callbacks == []
    elif outcome == NOOP:
        assert result.status == status
        assert after == before
        assert callbacks == []
    else:
        assert result.status == TARGET[action]
        assert Incident.objects.get(pk=incident.pk).status == TARGET[action]
        # Other apps react after commit with entries of their own (notifications); the core's
        # are the rest.
        new_entries = incident.timeline.exclude(pk__in=before["timeline"]).exclude(
            kind__in=OTHER_APPS_KINDS
        )
        assert new_entries.count() == 1
        entry = new_entries.get()
        assert (entry.kind, entry.source, entry.actor) == (Kind.STATUS, Source.API, superuser)
        assert entry.data["action"] == action
        assert (entry.data["from"], entry.data["to"]) == (status, TARGET[action])
        new_history = incident.history.exclude(pk__in=before["history"])
        assert new_history.count() == 1
        record = new_history.get()
        assert (record.history_user, record.history_change_reason) == (superuser, action)
        assert record.status == TARGET[action]
        # Recorded in the transition's transaction; nothing follows it before the commit.
        assert incident.events.exclude(pk__in=before["events"]).get().status == (
            EventStatus.PENDING
        )
        assert len(callbacks) == 1  # the kick of its followers
        assert transitioned(incident, before) == [
            {
                "action": action,
                "from_status": status,
                "to_status": TARGET[action],
                "actor_id": superuser.pk,
                "source": Source.API,
            }
        ]


def test_acknowledging_an_incident_cancelled_after_acknowledgement_is_a_no_op(superuser):
    incident = IncidentFactory(status="acknowledged")
    incident = incident_cancel(incident=incident, actor=superuser, source=Source.API, reason="x")
    before = snapshot(incident)
    incident_acknowledge(incident=incident, actor=superuser, source=Source.API)
    assert snapshot(incident) == before


def test_repeated_reopen_is_a_no_op_but_reopening_after_more_work_is_refused(superuser):
    incident = complete_incident("resolved")
    incident_transition(incident=incident, action="reopen", actor=superuser, source=Source.API)
    before = snapshot(incident)
    incident_transition(incident=incident, action="reopen", actor=superuser, source=Source.API)
    assert snapshot(incident) == before

    incident_transition(incident=incident, action="mitigate", actor=superuser, source=Source.API)
    incident_transition(incident=incident, action="investigate", actor=superuser, source=Source.API)
    with pytest.raises(TransitionNotAllowed):
        incident_transition(incident=incident, action="reopen", actor=superuser, source=Source.API)


def test_refusal_lists_only_the_actions_this_user_may_take(technical_lead):
    incident = complete_incident("resolved")
    with pytest.raises(TransitionNotAllowed) as info:
        incident_transition(
            incident=incident, action="investigate", actor=technical_lead, source=Source.ADMIN
        )
    assert info.value.allowed == ["reopen"]  # closing is the Incident Manager's


def test_unknown_action_and_unknown_parameter_are_invalid_input(superuser, incident):
    with pytest.raises(InvalidInput) as info:
        incident_transition(incident=incident, action="explode", actor=superuser, source="api")
    assert "action" in info.value.errors
    with pytest.raises(InvalidInput) as info:
        incident_transition(
            incident=incident, action="acknowledge", actor=superuser, source="api", reason="x"
        )
    assert "reason" in info.value.errors
    assert Incident.objects.get(pk=incident.pk).status == Status.OPEN


# --- permissions per role group ------------------------------------------------------------------

ROLE_USERS = [*GROUP_ACTIONS, "superuser", "no group", "inactive Incident Manager"]


def user_for(label: str):
    if label == "superuser":
        return UserFactory(username="root", is_superuser=True)
    if label == "no group":
        return UserFactory(username="nobody")
    if label == "inactive Incident Manager":
        return UserFactory(username="gone", is_active=False, groups=["Incident Manager"])
    return UserFactory(username=label.lower().replace(" ", "-"), groups=[label])


def permitted(label: str, action: str) -> bool:
    if label == "superuser":
        return True
    return action in GROUP_ACTIONS.get(label, set())


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("label", ROLE_USERS)
def test_permissions_per_role(label, action):
    user = user_for(label)
    incident = complete_incident(START[action])
    before = snapshot(incident)

    if permitted(label, action):
        result = incident_transition(
            incident=incident,
            action=action,
            actor=user,
            source=Source.ADMIN,
            **PARAMS.get(action, {}),
        )
        assert result.status == TARGET[action]
        assert incident.timeline.filter(kind=Kind.STATUS).latest("id").actor == user
    else:
        with pytest.raises(ActionForbidden) as info:
            incident_transition(
                incident=incident,
                action=action,
                actor=user,
                source=Source.ADMIN,
                **PARAMS.get(action, {}),
            )
        assert info.value.action == action
        assert snapshot(incident) == before


def test_actions_available_per_role_and_status():
    """What the admin's buttons and the API's ``actions`` show: the actions possible from the
    status that the user may take."""
    incidents = {status: complete_incident(status) for status in MATRIX}
    for label in ROLE_USERS:
        user = user_for(label)
        for status, incident in incidents.items():
            expected = [action for action in allowed_from(status) if permitted(label, action)]
            assert actions_available(incident, user) == expected, (label, status)


def test_forbidden_comes_before_already_done(viewer):
    incident = IncidentFactory(status="acknowledged")
    with pytest.raises(ActionForbidden):
        incident_acknowledge(incident=incident, actor=viewer, source=Source.API)


def test_vigil_itself_may_act(incident):
    result = incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)
    entry = result.timeline.filter(kind=Kind.STATUS).latest("id")
    assert (entry.actor, entry.source, entry.actor_label) == (None, Source.SYSTEM, "Vigil")


# --- guards --------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["", "   ", None])
def test_resolve_needs_a_resolution(given, superuser):
    incident = IncidentFactory(status="investigating", resolution="")
    before = snapshot(incident)
    with pytest.raises(GuardFailed) as info:
        incident_resolve(incident=incident, actor=superuser, source=Source.API, resolution=given)
    assert info.value.action == "resolve"
    assert list(info.value.errors) == ["resolution"]
    assert snapshot(incident) == before


def test_resolve_takes_the_resolution_given(superuser):
    incident = IncidentFactory(status="investigating", resolution="")
    result = incident_resolve(
        incident=incident, actor=superuser, source=Source.API, resolution="  Restarted the pool. "
    )
    assert result.status == Status.RESOLVED
    assert Incident.objects.get(pk=incident.pk).resolution == "Restarted the pool."


def test_resolve_accepts_a_resolution_already_recorded(superuser):
    incident = IncidentFactory(status="investigating", resolution="Failed over to the replica.")
    result = incident_resolve(incident=incident, actor=superuser, source=Source.API)
    assert result.status == Status.RESOLVED
    assert result.resolution == "Failed over to the replica."


@pytest.mark.parametrize(
    "missing",
    [
        ("summary",),
        ("root_cause",),
        ("resolution",),
        ("business_impact",),
        ("summary", "root_cause"),
        ("summary", "root_cause", "resolution", "business_impact"),
    ],
    ids="+".join,
)
def test_close_needs_the_report_fields(missing, incident_manager):
    incident = complete_incident("resolved")
    # Blank them through the service, as an editor would (a resolution can be blanked after
    # resolving, so close checks it again).
    incident = incident_update(
        incident=incident, actor=None, source=Source.SYSTEM, **{name: "  " for name in missing}
    )
    before = snapshot(incident)
    with pytest.raises(GuardFailed) as info:
        incident_close(incident=incident, actor=incident_manager, source=Source.ADMIN)
    assert set(info.value.errors) == set(missing)
    assert snapshot(incident) == before


def test_close_with_every_report_field(incident_manager):
    incident = complete_incident("resolved")
    result = incident_close(incident=incident, actor=incident_manager, source=Source.ADMIN)
    assert result.status == Status.CLOSED


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_cancel_needs_a_reason_or_a_duplicate(reason, incident_manager):
    incident = IncidentFactory()
    before = snapshot(incident)
    with pytest.raises(GuardFailed) as info:
        incident_cancel(incident=incident, actor=incident_manager, source=Source.API, reason=reason)
    assert list(info.value.errors) == ["reason"]
    assert snapshot(incident) == before


def test_cancel_as_false_alarm_records_the_reason(incident_manager):
    incident = IncidentFactory()
    result = incident_cancel(
        incident=incident, actor=incident_manager, source=Source.API, reason="Probe misfired."
    )
    assert (result.status, result.cancel_reason, result.duplicate_of) == (
        Status.CANCELLED,
        "Probe misfired.",
        None,
    )
    assert "Probe misfired." in result.timeline.filter(kind=Kind.STATUS).latest("id").message


@pytest.mark.parametrize("by", ["number", "instance"])
def test_cancel_as_duplicate_links_both_incidents(by, incident_manager):
    original = IncidentFactory(status="investigating")
    incident = IncidentFactory()
    result = incident_cancel(
        incident=incident,
        actor=incident_manager,
        source=Source.API,
        duplicate_of=original.number if by == "number" else original,
    )
    assert result.status == Status.CANCELLED
    assert result.duplicate_of == original
    assert (
        result.timeline.filter(kind=Kind.STATUS).latest("id").data["duplicate_of"]
        == original.number
    )
    note = original.timeline.filter(kind=Kind.UPDATE).latest("id")
    assert note.kind == Kind.UPDATE
    assert note.data == {"duplicate": incident.number}
    assert original.timeline.filter(kind=Kind.STATUS).count() == 2  # untouched otherwise

    # Repeating it is a no-op on both incidents.
    counts = (incident.timeline.count(), original.timeline.count())
    incident_cancel(
        incident=incident, actor=incident_manager, source=Source.API, duplicate_of=original
    )
    assert (incident.timeline.count(), original.timeline.count()) == counts


def test_cancel_as_duplicate_of_a_closed_incident(incident_manager):
    original = complete_incident("closed")
    incident = IncidentFactory()
    result = incident_cancel(
        incident=incident, actor=incident_manager, source=Source.API, duplicate_of=original.number
    )
    assert result.duplicate_of == original


@pytest.mark.parametrize("case", ["itself", "itself by number", "cancelled", "unknown"])
def test_cancel_rejects_a_bad_duplicate(case, incident_manager):
    incident = IncidentFactory()
    duplicate_of = {
        "itself": incident,
        "itself by number": incident.number,
        "cancelled": lambda: IncidentFactory(status="cancelled").number,
        "unknown": "INC-1999-0101-001",
    }[case]
    if callable(duplicate_of):
        duplicate_of = duplicate_of()
    before = snapshot(incident)
    with pytest.raises(InvalidInput) as info:
        incident_cancel(
            incident=incident,
            actor=incident_manager,
            source=Source.API,
            reason="Seen twice.",
            duplicate_of=duplicate_of,
        )
    assert list(info.value.errors) == ["duplicate_of"]
    assert snapshot(incident) == before


def test_cancel_checks_permission_before_the_duplicate(viewer):
    incident = IncidentFactory()
    with pytest.raises(ActionForbidden):
        incident_cancel(incident=incident, actor=viewer, source=Source.API, duplicate_of="INC-X")


def test_a_stale_original_instance_is_read_again(incident_manager):
    original = IncidentFactory()
    stale = Incident.objects.get(pk=original.pk)
    incident_cancel(incident=original, actor=incident_manager, source=Source.API, reason="Test.")
    incident = IncidentFactory()
    with pytest.raises(InvalidInput) as info:
        incident_cancel(
            incident=incident, actor=incident_manager, source=Source.API, duplicate_of=stale
        )
    assert "itself cancelled" in info.value.errors["duplicate_of"]


# --- what a transition writes --------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_timestamps_along_the_whole_lifecycle(incident_manager):
    def act(minutes, action, **params):
        with time_machine.travel(at(minutes), tick=False):
            return incident_transition(
                incident=incident, action=action, actor=incident_manager, source="admin", **params
            )

    with time_machine.travel(T0, tick=False):
        incident = incident_create(
            actor=incident_manager, source="admin", title="Checkout down", severity=1, **COMPLETE
        )
    assert (incident.detected_at, incident.acknowledged_at) == (T0, None)

    i = act(3, "acknowledge")
    assert i.acknowledged_at == at(3)
    i = act(5, "investigate")
    i = act(20, "mitigate")
    assert (i.acknowledged_at, i.mitigated_at) == (at(3), None)
    i = act(40, "monitor")
    assert i.mitigated_at == at(40)
    i = act(60, "resolve")
    assert (i.acknowledged_at, i.mitigated_at, i.resolved_at) == (at(3), at(40), at(60))
    i = act(70, "reopen")
    assert i.resolved_at is None
    i = act(90, "resolve")
    assert i.resolved_at == at(90)
    i = act(120, "close")
    assert i.closed_at == at(120)

    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.acknowledged_at, stored.mitigated_at) == (at(3), at(40))
    assert (stored.resolved_at, stored.closed_at, stored.cancelled_at) == (at(90), at(120), None)
    statuses = list(stored.timeline.filter(kind=Kind.STATUS).values_list("occurred_at", flat=True))
    assert statuses == [at(m) for m in (3, 5, 20, 40, 60, 70, 90, 120)]
    # created, then one history record per transition
    assert stored.history.count() == 1 + 8


@pytest.mark.parametrize("action", ["investigate", "mitigate", "monitor", "resolve"])
def test_acting_on_an_open_incident_acknowledges_it(action, superuser):
    with time_machine.travel(T0, tick=False):
        incident = complete_incident("open")
    with time_machine.travel(at(7), tick=False):
        result = incident_transition(
            incident=incident,
            action=action,
            actor=superuser,
            source="api",
            **PARAMS.get(action, {}),
        )
    assert result.acknowledged_at == at(7)
    assert (
        "Acknowledged by taking action"
        in result.timeline.filter(kind=Kind.STATUS).latest("id").message
    )
    if action in ("monitor", "resolve"):
        assert result.mitigated_at == at(7)


def test_cancel_sets_cancelled_at_and_leaves_acknowledged_unset(incident_manager):
    with time_machine.travel(T0, tick=False):
        incident = IncidentFactory()
    with time_machine.travel(at(4), tick=False):
        result = incident_cancel(
            incident=incident, actor=incident_manager, source="api", reason="Test alert."
        )
    assert (result.cancelled_at, result.acknowledged_at) == (at(4), None)


def test_the_callers_instance_is_not_changed_by_a_refused_transition(superuser):
    incident = IncidentFactory(status="closed", **COMPLETE)
    with pytest.raises(TransitionNotAllowed):
        incident_transition(incident=incident, action="reopen", actor=superuser, source="api")
    assert incident.status == Status.CLOSED


# --- the event is recorded with the transition and followed after commit, never on rollback ----


def test_transition_event_is_recorded_with_it_and_followed_after_commit(
    superuser, django_capture_on_commit_callbacks
):
    incident = IncidentFactory()
    follow_events()
    before = snapshot(incident)
    with django_capture_on_commit_callbacks() as callbacks:
        incident_acknowledge(incident=incident, actor=superuser, source=Source.WEBHOOK)
    assert [(c["action"], c["actor_id"], c["source"]) for c in transitioned(incident, before)] == [
        ("acknowledge", superuser.pk, "webhook")
    ]
    event = incident.events.get(name=INCIDENT_TRANSITIONED, payload__action="acknowledge")
    assert event.status == EventStatus.PENDING
    assert [c.__qualname__.split(".")[0] for c in callbacks] == ["announce"]  # kick on commit
    follow_events()  # what the kicked task does
    event.refresh_from_db()
    assert event.status == EventStatus.DONE


def test_no_event_and_nothing_written_when_the_transaction_rolls_back(
    superuser, django_capture_on_commit_callbacks
):
    incident = IncidentFactory()
    before = snapshot(incident)

    class Abort(Exception):
        pass

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Abort),
        transaction.atomic(),
    ):
        incident_acknowledge(incident=incident, actor=superuser, source=Source.API)
        raise Abort
    assert callbacks == []
    assert transitioned(incident, before) == []
    assert snapshot(incident) == before


def test_a_failing_follower_never_rolls_the_transition_back(superuser):
    incident = IncidentFactory()
    follow_events()

    def fail(event):
        raise RuntimeError("outbox unavailable")

    events_subscribe(handler="tests.failing", event=INCIDENT_TRANSITIONED, callback=fail)
    try:
        result = incident_acknowledge(incident=incident, actor=superuser, source=Source.API)
        follow_events()
    finally:
        events_unsubscribe(handler="tests.failing")
    assert result.status == Status.ACKNOWLEDGED
    assert Incident.objects.get(pk=incident.pk).status == Status.ACKNOWLEDGED
    event = incident.events.get(name=INCIDENT_TRANSITIONED, payload__action="acknowledge")
    handling = EventHandling.objects.get(event=event, handler="tests.failing")
    assert handling.status == HandlingStatus.RETRYING
    assert "outbox unavailable" in handling.last_error
    escalation = EventHandling.objects.get(event=event, handler="escalation")
    assert escalation.status == HandlingStatus.DONE  # the other followers went on


# --- report status (§6.2) ------------------------------------------------------------------------

REPORT_STATUS = {
    Status.OPEN: ReportStatus.OPEN,
    Status.ACKNOWLEDGED: ReportStatus.IN_PROGRESS,
    Status.INVESTIGATING: ReportStatus.IN_PROGRESS,
    Status.MITIGATING: ReportStatus.IN_PROGRESS,
    Status.MONITORING: ReportStatus.IN_PROGRESS,
    Status.RESOLVED: ReportStatus.RESOLVED,
    Status.CLOSED: ReportStatus.CLOSED,
    Status.CANCELLED: ReportStatus.CLOSED,
}


@pytest.mark.parametrize("status", Status.values)
def test_report_status(status):
    incident = complete_incident(status)
    assert incident.status == status
    assert incident.report_status == REPORT_STATUS[status]
    assert incident.report_status in ("Open", "In Progress", "Resolved", "Closed")
