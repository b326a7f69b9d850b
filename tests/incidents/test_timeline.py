"""The timeline (§6.1): append-only, chronological, every entry with author, source and time —
notes and decisions, role assignments, detail edits and priority changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from django.db.models.deletion import ProtectedError

from incidents.errors import ActionForbidden, InvalidInput
from incidents.events import INCIDENT_ROLE_ASSIGNED
from incidents.models import (
    AppendOnlyError,
    EventStatus,
    Incident,
    Kind,
    RoleAssignment,
    Source,
    TimelineEntry,
)
from incidents.selectors import incident_timeline
from incidents.services import (
    incident_acknowledge,
    incident_create,
    incident_note_add,
    incident_role_assign,
    incident_update,
)
from tests.factories import IncidentFactory, ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Timeline kinds written by the apps that follow the core's events, not by the core.
OTHER_APPS_KINDS = (Kind.NOTIFICATION, Kind.ESCALATION, Kind.COMMUNICATION)


def at(**delta) -> datetime:
    return T0 + timedelta(**delta)


def state(incident: Incident) -> dict:
    fresh = Incident.objects.get(pk=incident.pk)
    return {
        "row": Incident.objects.filter(pk=incident.pk).values().get(),
        "services": sorted(fresh.services.values_list("slug", flat=True)),
        "timeline": list(fresh.timeline.values_list("pk", flat=True)),
        "history": list(fresh.history.values_list("pk", flat=True)),
    }


# --- append-only ---------------------------------------------------------------------------------


def test_an_entry_cannot_be_edited(incident):
    entry = incident.timeline.filter(kind=Kind.CREATED).get()
    entry.message = "Nothing happened."
    with pytest.raises(AppendOnlyError):
        entry.save()
    assert TimelineEntry.objects.get(pk=entry.pk).message != "Nothing happened."


def test_an_entry_cannot_be_deleted(incident):
    entry = incident.timeline.filter(kind=Kind.CREATED).get()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    assert TimelineEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.parametrize(
    "write",
    [
        lambda i: TimelineEntry.objects.filter(incident=i).update(message="x"),
        lambda i: TimelineEntry.objects.all().delete(),
        lambda i: i.timeline.update(message="x"),
        lambda i: i.timeline.all().delete(),
        lambda i: TimelineEntry.objects.bulk_update(
            [_edited(e) for e in i.timeline.all()], ["message"]
        ),
        lambda i: TimelineEntry.objects.update_or_create(
            pk=i.timeline.filter(kind=Kind.CREATED).get().pk, defaults={"message": "x"}
        ),
    ],
    ids=["qs-update", "qs-delete", "related-update", "related-delete", "bulk-update", "upsert"],
)
def test_the_queryset_cannot_edit_or_delete_either(write, incident):
    before = list(incident.timeline.values_list("pk", "message"))
    # A savepoint, as bulk_update raises inside its own atomic block.
    with pytest.raises(AppendOnlyError), transaction.atomic():
        write(incident)
    assert list(incident.timeline.values_list("pk", "message")) == before


def _edited(entry: TimelineEntry) -> TimelineEntry:
    entry.message = "x"
    return entry


def test_an_incident_with_a_timeline_cannot_be_deleted(incident):
    with pytest.raises(ProtectedError):
        incident.delete()
    assert incident.timeline.exists()


def test_the_creation_is_the_first_entry(superuser):
    with time_machine.travel(T0, tick=False):
        incident = incident_create(actor=superuser, source=Source.API, title="DB down", severity=1)
    entry = incident.timeline.filter(kind=Kind.CREATED).get()
    assert (entry.kind, entry.source, entry.actor, entry.occurred_at) == (
        Kind.CREATED,
        Source.API,
        superuser,
        T0,
    )
    # Impact and urgency come from the severity: Sev 1 is high × high.
    assert entry.data == {"severity": 1, "priority": 1}


def test_timeline_reads_in_chronological_order(superuser):
    with time_machine.travel(T0, tick=False) as clock:
        incident = IncidentFactory()
        clock.move_to(at(minutes=5))
        incident_note_add(incident=incident, actor=superuser, source="admin", body="Looking.")
        clock.move_to(at(minutes=6))
        incident_acknowledge(incident=incident, actor=superuser, source="admin")
        clock.move_to(at(minutes=9))
        incident_note_add(
            incident=incident, actor=superuser, source="admin", body="Roll back.", kind="decision"
        )
    entries = [e for e in incident_timeline(incident=incident) if e.kind not in OTHER_APPS_KINDS]
    assert [(e.kind, e.occurred_at) for e in entries] == [
        (Kind.CREATED, T0),
        (Kind.NOTE, at(minutes=5)),
        (Kind.STATUS, at(minutes=6)),
        (Kind.DECISION, at(minutes=9)),
    ]


# --- notes and decisions -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.NOTE, Kind.DECISION])
@pytest.mark.parametrize("source", [Source.ADMIN, Source.API, Source.EMAIL])
def test_note_or_decision_with_author_and_source(kind, source, technical_lead):
    incident = IncidentFactory()
    with time_machine.travel(at(minutes=3), tick=False):
        entry = incident_note_add(
            incident=incident,
            actor=technical_lead,
            source=source,
            body="  Failing over to the replica.  ",
            kind=kind,
        )
    assert (entry.kind, entry.source, entry.actor) == (kind, source, technical_lead)
    assert entry.message == "Failing over to the replica."
    assert entry.occurred_at == at(minutes=3)
    assert entry.actor_label == "Tl"
    assert incident.timeline.filter(kind=kind).get() == entry


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"body": ""}, "body"),
        ({"body": "   \n "}, "body"),
        ({"body": None}, "body"),
        ({"body": "x" * 20_001}, "body"),
        ({"body": "Fine.", "kind": Kind.STATUS}, "kind"),
        ({"body": "Fine.", "kind": "gossip"}, "kind"),
    ],
    ids=["empty", "blank", "none", "too-long", "status-kind", "unknown-kind"],
)
def test_bad_notes_are_rejected(kwargs, field, superuser):
    incident = IncidentFactory()
    before = state(incident)
    with pytest.raises(InvalidInput) as info:
        incident_note_add(incident=incident, actor=superuser, source="api", **kwargs)
    assert list(info.value.errors) == [field]
    assert state(incident) == before


def test_notes_are_not_deduplicated(superuser):
    incident = IncidentFactory()
    for _ in range(2):
        incident_note_add(incident=incident, actor=superuser, source="api", body="Still down.")
    assert incident.timeline.filter(kind=Kind.NOTE).count() == 2


@pytest.mark.parametrize(
    ("group", "allowed"),
    [
        ("Incident Manager", True),
        ("Technical Lead", True),
        ("Communications Lead", True),
        ("Business Liaison", True),
        ("Viewer", False),
    ],
)
def test_who_may_add_notes(group, allowed, make_user):
    user = make_user(group, username="author")
    incident = IncidentFactory()
    if allowed:
        incident_note_add(incident=incident, actor=user, source="admin", body="Update.")
        assert incident.timeline.filter(kind=Kind.NOTE, actor=user).exists()
    else:
        with pytest.raises(ActionForbidden):
            incident_note_add(incident=incident, actor=user, source="admin", body="Update.")
        assert not incident.timeline.filter(kind=Kind.NOTE).exists()


# --- role assignments ----------------------------------------------------------------------------


def role_events(incident: Incident):
    return incident.events.filter(name=INCIDENT_ROLE_ASSIGNED).order_by("id")


def test_assign_replace_and_unassign_a_role(incident_manager):
    incident = IncidentFactory()
    alice = UserFactory(username="alice", first_name="Alice", last_name="Ng")
    bob = UserFactory(username="bob", first_name="Bob", last_name="Ray")

    assignment = incident_role_assign(
        incident=incident,
        role="technical_lead",
        user=alice,
        actor=incident_manager,
        source=Source.ADMIN,
    )
    # Recorded in the assigning transaction; its followers run only after it commits.
    assert [e.status for e in role_events(incident)] == [EventStatus.PENDING]
    assert (assignment.user, assignment.assigned_by) == (alice, incident_manager)

    incident_role_assign(
        incident=incident,
        role="technical_lead",
        user=bob.pk,
        actor=incident_manager,
        source="api",
    )
    removed = incident_role_assign(
        incident=incident,
        role="technical_lead",
        user=None,
        actor=incident_manager,
        source="api",
    )
    assert removed is None
    assert not RoleAssignment.objects.filter(incident=incident).exists()

    entries = list(incident.timeline.filter(kind=Kind.ROLE).order_by("id"))
    assert [e.message for e in entries] == [
        "Technical Lead: Alice Ng assigned.",
        "Technical Lead: Bob Ray assigned (replacing Alice Ng).",
        "Technical Lead: Bob Ray unassigned.",
    ]
    assert [e.data for e in entries] == [
        {"role": "technical_lead", "user": alice.pk},
        {"role": "technical_lead", "user": bob.pk},
        {"role": "technical_lead", "user": None},
    ]
    assert [(e.actor, e.source) for e in entries] == [
        (incident_manager, "admin"),
        (incident_manager, "api"),
        (incident_manager, "api"),
    ]

    history = list(RoleAssignment.history.filter(incident_id=incident.pk).order_by("history_id"))
    assert [
        (h.history_type, h.user_id, h.history_user, h.history_change_reason) for h in history
    ] == [
        ("+", alice.pk, incident_manager, "assigned"),
        ("~", bob.pk, incident_manager, "assigned"),
        ("-", bob.pk, incident_manager, "unassigned"),
    ]
    assert [(e.payload, e.actor, e.source) for e in role_events(incident)] == [
        ({"role_key": "technical_lead", "user_id": alice.pk}, incident_manager, "admin"),
        ({"role_key": "technical_lead", "user_id": bob.pk}, incident_manager, "api"),
        ({"role_key": "technical_lead", "user_id": None}, incident_manager, "api"),
    ]


def test_assigning_the_current_holder_again_is_a_no_op(incident_manager, technical_lead):
    incident = IncidentFactory()
    first = incident_role_assign(
        incident=incident,
        role="technical_lead",
        user=technical_lead,
        actor=incident_manager,
        source="api",
    )
    counts = (incident.timeline.count(), RoleAssignment.history.count())
    again = incident_role_assign(
        incident=incident,
        role="technical_lead",
        user=technical_lead,
        actor=incident_manager,
        source="api",
    )
    assert again == first
    assert (incident.timeline.count(), RoleAssignment.history.count()) == counts
    assert (
        incident_role_assign(
            incident=incident,
            role="business_liaison",
            user=None,
            actor=incident_manager,
            source="api",
        )
        is None
    )
    assert incident.timeline.count() == counts[0]  # unassigning nobody is a no-op too


def test_roles_given_at_creation(incident_manager, technical_lead):
    incident = incident_create(
        actor=incident_manager,
        source="admin",
        title="Queue backlog",
        severity=2,
        roles={"incident_manager": incident_manager, "technical_lead": technical_lead},
    )
    assert {a.role.key: a.user for a in incident.role_assignments.all()} == {
        "incident_manager": incident_manager,
        "technical_lead": technical_lead,
    }
    assert incident.timeline.filter(kind=Kind.ROLE).count() == 2


@pytest.mark.parametrize(
    ("role", "user", "field"),
    [
        ("chief_of_vibes", "tl", "role"),
        ("technical_lead", 999_999, "user"),
        ("technical_lead", "not-a-pk", "user"),
        ("technical_lead", "inactive", "user"),
    ],
)
def test_bad_role_assignments_are_rejected(role, user, field, incident_manager, technical_lead):
    if user == "tl":
        user = technical_lead
    elif user == "inactive":
        user = UserFactory(username="left", is_active=False)
    incident = IncidentFactory()
    before = state(incident)
    with pytest.raises(InvalidInput) as info:
        incident_role_assign(
            incident=incident, role=role, user=user, actor=incident_manager, source="api"
        )
    assert list(info.value.errors) == [field]
    assert state(incident) == before


@pytest.mark.parametrize(
    "group", ["Technical Lead", "Communications Lead", "Business Liaison", "Viewer"]
)
def test_only_the_incident_manager_assigns_roles(group, make_user, technical_lead):
    user = make_user(group, username="someone")
    incident = IncidentFactory()
    with pytest.raises(ActionForbidden):
        incident_role_assign(
            incident=incident, role="technical_lead", user=technical_lead, actor=user, source="api"
        )
    assert not incident.role_assignments.exists()


# --- editing details -----------------------------------------------------------------------------


def test_an_edit_writes_one_entry_naming_the_changed_fields(business_liaison):
    incident = IncidentFactory(affected_users=100)
    with time_machine.travel(at(hours=1), tick=False):
        result = incident_update(
            incident=incident,
            actor=business_liaison,
            source=Source.ADMIN,
            title=incident.title,  # unchanged
            business_impact="About 3% of orders lost.",
            affected_users=2500,
        )
    assert (result.business_impact, result.affected_users) == ("About 3% of orders lost.", 2500)
    entry = incident.timeline.filter(kind=Kind.UPDATE).get()
    assert (entry.actor, entry.source, entry.occurred_at) == (
        business_liaison,
        Source.ADMIN,
        at(hours=1),
    )
    assert entry.data == {"fields": ["business_impact", "affected_users"]}
    assert entry.message == "Updated business_impact, affected_users.".replace(
        "business_impact", "business impact"
    ).replace("affected_users", "affected users")
    assert not incident.timeline.filter(kind=Kind.PRIORITY).exists()


def test_an_edit_that_changes_nothing_writes_nothing(superuser):
    incident = IncidentFactory(business_impact="Some.")
    before = state(incident)
    incident_update(incident=incident, actor=superuser, source="api", business_impact="Some.")
    incident_update(incident=incident, actor=superuser, source="api")
    assert state(incident) == before


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        ("high", "high", 1),
        ("medium", "high", 2),
        ("low", "high", 3),
        ("high", "medium", 2),
        ("low", "medium", 4),
        ("high", "low", 3),
        ("low", "low", 4),
    ],
)
def test_priority_follows_the_matrix_when_impact_or_urgency_change(
    impact, urgency, priority, superuser
):
    incident = IncidentFactory(impact="medium", urgency="medium")
    assert incident.priority == 3
    # Two steps from the Sev 3 incident's usual P3 a person confirms it with a reason.
    reason = {"priority_reason": "Confirmed."} if abs(priority - 3) > 1 else {}
    result = incident_update(
        incident=incident, actor=superuser, source="api", impact=impact, urgency=urgency, **reason
    )
    assert result.priority == Incident.objects.get(pk=incident.pk).priority == priority
    changes = incident.timeline.filter(kind=Kind.PRIORITY)
    if priority == 3:
        assert not changes.exists()
    else:
        entry = changes.get()
        assert entry.data == {
            "from": 3,
            "to": priority,
            **({"reason": "Confirmed."} if reason else {}),
        }
        assert entry.message.startswith(f"Priority changed P3 → P{priority}.")


def test_priority_follows_the_matrix_as_edited(superuser):
    from incidents.models import PriorityMatrixCell

    cell = PriorityMatrixCell.objects.get(urgency="high", impact="low")
    cell.priority = 2
    cell.save()
    incident = incident_create(
        actor=superuser, source="api", title="x", severity=3, impact="low", urgency="high"
    )
    assert incident.priority == 2


def test_affected_services_change_is_named(superuser):
    ServiceFactory(slug="checkout")
    ServiceFactory(slug="search")
    incident = IncidentFactory(services=["checkout"])
    incident_update(
        incident=incident, actor=superuser, source="api", services=["search", "checkout"]
    )
    entry = incident.timeline.filter(kind=Kind.UPDATE).get()
    assert entry.data == {"fields": ["services"]}
    assert entry.message == "Updated affected services."
    # The same set in another order is no change.
    incident_update(
        incident=incident, actor=superuser, source="api", services=["checkout", "search"]
    )
    assert incident.timeline.filter(kind=Kind.UPDATE).count() == 1


def created_at_t0(**kwargs) -> Incident:
    with time_machine.travel(T0, tick=False):
        return IncidentFactory(**kwargs)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"impact_started_at": at(minutes=10)}, "detected_at"),  # after detection
        ({"detected_at": at(minutes=30)}, "acknowledged_at"),  # after the acknowledgement
        ({"detected_at": at(days=1)}, "detected_at"),  # in the future
        ({"impact_started_at": at(days=1)}, "impact_started_at"),
        ({"detected_at": None}, "detected_at"),
        ({"detected_at": datetime(2026, 3, 2, 8, 0)}, "detected_at"),  # no time zone
        ({"detected_at": "yesterday"}, "detected_at"),
    ],
    ids=[
        "impact-after-detection",
        "detection-after-ack",
        "future-detection",
        "future-impact",
        "no-detection",
        "naive",
        "not-a-time",
    ],
)
def test_bad_timestamps_are_rejected_and_nothing_changes(changes, field, superuser):
    incident = created_at_t0(status="acknowledged")  # acknowledged at T0
    before = state(incident)
    with time_machine.travel(at(minutes=40), tick=False), pytest.raises(InvalidInput) as info:
        incident_update(
            incident=incident, actor=superuser, source="api", title="Changed too", **changes
        )
    assert field in info.value.errors
    assert state(incident) == before


def test_impact_start_before_detection_is_fine(superuser):
    incident = created_at_t0()
    with time_machine.travel(at(minutes=5), tick=False):
        result = incident_update(
            incident=incident, actor=superuser, source="api", impact_started_at=at(minutes=-20)
        )
    assert result.impact_started_at == at(minutes=-20)
    assert incident.timeline.filter(kind=Kind.UPDATE).get().data == {
        "fields": ["impact_started_at"]
    }


def test_a_slightly_fast_sender_clock_counts_as_now():
    # A monitoring sender 2 minutes ahead: detection is taken as now, so acknowledging a
    # minute later keeps the timestamps in order and later edits still validate.
    with time_machine.travel(T0, tick=False):
        incident = incident_create(
            actor=None,
            source=Source.WEBHOOK,
            title="Disk 91%",
            severity=2,
            detected_at=at(minutes=2),
        )
    assert incident.detected_at == T0
    with time_machine.travel(at(minutes=1), tick=False):
        incident = incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)
        incident = incident_update(incident=incident, actor=None, source="api", title="Disk 95%")
    assert incident.title == "Disk 95%"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "closed"}, "status"),
        ({"severity": 1}, "severity"),
        ({"number": "INC-1"}, "number"),
        ({"impact": "enormous"}, "impact"),
        ({"urgency": ""}, "urgency"),
        ({"detection_source": "rumour"}, "detection_source"),
        ({"title": "  "}, "title"),
        ({"affected_users": -1}, "affected_users"),
        ({"affected_users": "many"}, "affected_users"),
        ({"services": ["no-such-service"]}, "services"),
    ],
)
def test_bad_edits_are_rejected_and_nothing_changes(kwargs, field, superuser):
    incident = IncidentFactory()
    before = state(incident)
    with pytest.raises(InvalidInput) as info:
        incident_update(incident=incident, actor=superuser, source="api", **kwargs)
    assert field in info.value.errors
    assert state(incident) == before


def test_viewer_cannot_edit(viewer):
    incident = IncidentFactory()
    before = state(incident)
    with pytest.raises(ActionForbidden):
        incident_update(incident=incident, actor=viewer, source="admin", title="Mine now")
    assert state(incident) == before
