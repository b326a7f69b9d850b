"""Enterprise direct contact (§5.2): a Sev 1-2 customer-facing incident gives each affected
enterprise customer with an SLA a task for its account owner, due within the policy's time,
reminded through the outbox until it is done or not reachable, on the incident's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from communications.models import (
    CommunicationPolicy,
    DirectContactStatus,
    DirectContactTask,
)
from communications.services.customers import customer_create
from communications.services.direct_contact import direct_contact_sweep
from communications.tasks import direct_contact_sweep_task
from escalation.models import Notification
from incidents.models import Incident, Source, TimelineEntry
from incidents.services import (
    incident_change_severity,
    incident_create,
    incident_role_assign,
    incident_transition,
    incident_update,
)
from tests.events import followed
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

incident_change_severity = followed(incident_change_severity)
incident_update = followed(incident_update)
incident_role_assign = followed(incident_role_assign)
incident_transition = followed(incident_transition)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def owner(make_user):
    return make_user("Business Liaison", username="olivia", email="olivia@example.com")


@pytest.fixture
def search(db):
    return ServiceFactory(slug="search", name="Search", customer_facing=True)


def customer(name, *, services, owner=None, plan="enterprise", has_sla=True, sla="99.95 %"):
    return customer_create(
        actor=None,
        source=Source.SYSTEM,
        name=name,
        plan=plan,
        has_sla=has_sla,
        sla_terms=sla,
        account_owner=owner,
        services=services,
    )


def create(*, severity=1, services=(), customer_facing=True, **kwargs) -> Incident:
    return followed(incident_create)(
        actor=None,
        source=Source.SYSTEM,
        title="Checkout is down",
        severity=severity,
        services=list(services),
        customer_facing=customer_facing,
        **kwargs,
    )


def tasks(incident: Incident) -> list[tuple[str, str | None, str]]:
    return [
        (t.customer.name, t.owner.username if t.owner else None, t.status)
        for t in DirectContactTask.objects.filter(incident=incident).order_by("customer__name")
    ]


def mails(prefix: str = "comms-direct-contact:") -> list[tuple[str, str]]:
    return [
        (n.idempotency_key.removeprefix(prefix), n.recipient)
        for n in Notification.objects.filter(idempotency_key__startswith=prefix).order_by("pk")
    ]


def entries(incident: Incident) -> list[str]:
    return list(
        TimelineEntry.objects.filter(incident=incident, data__has_key="direct_contact")
        .order_by("pk")
        .values_list("message", flat=True)
    )


# --- who gets a task -------------------------------------------------------------------------


def test_a_sev_1_gives_each_affected_enterprise_customer_with_an_sla_a_task(
    clock, service, search, owner
):
    customer("Acme", services=[service], owner=owner)
    customer("Standard Co", services=[service], owner=owner, plan="standard")
    customer("No SLA Ltd", services=[service], owner=owner, has_sla=False)
    customer("Search Only", services=[search], owner=owner)

    incident = create(services=[service])

    assert tasks(incident) == [("Acme", "olivia", "open")]
    task = DirectContactTask.objects.get(incident=incident)
    assert task.due_at == T0 + 60 * MIN
    assert task.sla_terms == "99.95 %"
    [message] = entries(incident)
    assert "Acme (SLA: 99.95 %)" in message
    assert "assigned to Olivia (account owner)" in message
    assert "due by" in message
    notification = Notification.objects.get(
        idempotency_key=f"comms-direct-contact:{task.pk}:assigned"
    )
    assert notification.recipient == "olivia@example.com"
    assert notification.channel == "email"
    assert "Acme" in notification.subject and incident.number in notification.subject


@pytest.mark.parametrize(
    "severity, customer_facing", [(3, True), (4, True), (1, False), (2, False)]
)
def test_no_task_for_lower_severities_or_internal_incidents(
    service, owner, severity, customer_facing
):
    customer("Acme", services=[service], owner=owner)
    incident = create(severity=severity, services=[service], customer_facing=customer_facing)
    assert tasks(incident) == []
    assert mails() == []


def test_raising_the_severity_or_adding_a_service_creates_the_missing_tasks_once(
    service, search, owner
):
    customer("Acme", services=[service], owner=owner)
    customer("Finder", services=[search], owner=owner)
    incident = create(severity=3, services=[service])
    assert tasks(incident) == []

    incident_change_severity(
        incident=incident, actor=None, source=Source.SYSTEM, severity=2, reason="Worse."
    )
    assert tasks(incident) == [("Acme", "olivia", "open")]

    incident_update(incident=incident, actor=None, source=Source.SYSTEM, services=[service, search])
    incident_update(incident=incident, actor=None, source=Source.SYSTEM, summary="Still down.")
    assert tasks(incident) == [("Acme", "olivia", "open"), ("Finder", "olivia", "open")]
    assert len(entries(incident)) == 2
    assert sorted(key for key, _ in mails()) == sorted(
        f"{t.pk}:assigned" for t in DirectContactTask.objects.all()
    )


def test_a_customer_without_an_owner_goes_to_the_incident_manager_or_is_flagged(
    service, incident_manager, client
):
    customer("Acme", services=[service])
    incident = create(services=[service])
    assert tasks(incident) == [("Acme", None, "open")]
    assert "NOT ASSIGNED" in entries(incident)[0]
    client.force_login(incident_manager)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    assert "No owner" in page.content.decode()

    incident_role_assign(
        incident=incident,
        role="incident_manager",
        user=incident_manager,
        actor=None,
        source=Source.SYSTEM,
    )
    assert tasks(incident) == [("Acme", "im", "open")]
    assert mails()[-1][1] == incident_manager.email

    customer("Beta", services=[service])
    other = create(services=[service], roles={"incident_manager": incident_manager})
    assert tasks(other) == [("Acme", "im", "open"), ("Beta", "im", "open")]


# --- reminders -------------------------------------------------------------------------------


def test_the_owner_is_reminded_every_30_minutes_until_it_is_done(clock, service, owner, api_as):
    customer("Acme", services=[service], owner=owner)
    incident = create(services=[service])
    task = DirectContactTask.objects.get(incident=incident)
    assert mails() == [(f"{task.pk}:assigned", "olivia@example.com")]

    clock.move_to(T0 + 29 * MIN)
    assert direct_contact_sweep() == 0
    clock.move_to(T0 + 30 * MIN)
    assert direct_contact_sweep_task() == 1
    assert direct_contact_sweep() == 0  # the same minute again: nothing more
    clock.move_to(T0 + 59 * MIN)
    assert direct_contact_sweep() == 0
    clock.move_to(T0 + 60 * MIN)
    assert direct_contact_sweep() == 1
    reminder = Notification.objects.get(idempotency_key=f"comms-direct-contact:{task.pk}:2")
    assert reminder.subject.startswith(f"Reminder: {incident.number}: contact Acme")
    assert "was due at" in reminder.body

    clock.move_to(T0 + 75 * MIN)
    response = api_as(owner).post(
        f"/api/v1/direct-contact-tasks/{task.pk}/done/",
        {"note": "Spoke to their CTO."},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "done"
    for minutes in (90, 120, 600):
        clock.move_to(T0 + minutes * MIN)
        assert direct_contact_sweep() == 0
    assert [key for key, _ in mails()] == [f"{task.pk}:assigned", f"{task.pk}:1", f"{task.pk}:2"]
    task.refresh_from_db()
    assert task.reminders_sent == 2
    assert task.next_reminder_at is None


def test_a_late_sweep_sends_one_reminder_and_keeps_the_cadence(clock, service, owner):
    policy = CommunicationPolicy.objects.get(pk=1)
    policy.direct_contact_reminder_minutes = 20
    policy.save()
    customer("Acme", services=[service], owner=owner)
    incident = create(services=[service])
    task = DirectContactTask.objects.get(incident=incident)

    clock.move_to(T0 + 75 * MIN)  # reminders were due at 20, 40 and 60
    assert direct_contact_sweep() == 1
    task.refresh_from_db()
    assert task.reminders_sent == 1
    assert task.next_reminder_at == T0 + 80 * MIN


def test_a_cancelled_incident_reminds_no_more(clock, service, owner):
    customer("Acme", services=[service], owner=owner)
    incident = create(services=[service])
    incident_transition(
        incident=incident, action="cancel", actor=None, source=Source.SYSTEM, reason="False alarm."
    )
    clock.move_to(T0 + 30 * MIN)
    assert direct_contact_sweep() == 0
    assert DirectContactTask.objects.get().next_reminder_at is None


# --- closing ---------------------------------------------------------------------------------


@pytest.fixture
def task(service, owner):
    customer("Acme", services=[service], owner=owner)
    incident = create(services=[service])
    return DirectContactTask.objects.get(incident=incident)


def test_not_reachable_needs_a_note_and_is_on_the_timeline(clock, task, owner, api_as):
    api = api_as(owner)
    url = f"/api/v1/direct-contact-tasks/{task.pk}/not-reachable/"
    refused = api.post(url, {"note": "  "}, format="json")
    assert refused.status_code == 400
    assert "note" in refused.json()["errors"]
    task.refresh_from_db()
    assert task.status == DirectContactStatus.OPEN

    clock.move_to(T0 + 70 * MIN)
    response = api.post(url, {"note": "Called twice, voicemail."}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "not_reachable"
    assert body["closed_by"]["username"] == "olivia"
    assert body["note"] == "Called twice, voicemail."
    last = entries(task.incident)[-1]
    assert last.startswith("Direct contact with Acme: not reachable, by Olivia")
    assert "(10 min after the due time)" in last
    assert last.endswith("Note: Called twice, voicemail.")

    again = api.post(f"/api/v1/direct-contact-tasks/{task.pk}/done/", {}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "transition_not_allowed"
    task.refresh_from_db()
    assert task.status == DirectContactStatus.NOT_REACHABLE


def test_who_may_close_a_task(task, api_as, make_user, viewer, communications_lead):
    stranger = make_user("Business Liaison", username="stranger")
    for user in (viewer, stranger):
        response = api_as(user).post(
            f"/api/v1/direct-contact-tasks/{task.pk}/done/", {}, format="json"
        )
        assert response.status_code == 403
    task.refresh_from_db()
    assert task.status == DirectContactStatus.OPEN

    response = api_as(communications_lead).post(
        f"/api/v1/direct-contact-tasks/{task.pk}/done/",
        {"note": "Covered for Olivia."},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["closed_by"]["username"] == "cl"
    assert entries(task.incident)[-1].startswith("Direct contact with Acme made, by Cl")


def test_the_api_lists_tasks_with_filters(clock, task, api_as, owner, viewer, service):
    api = api_as(viewer)
    listed = api.get("/api/v1/direct-contact-tasks/").json()["results"]
    assert [(t["customer"]["name"], t["status"], t["overdue"]) for t in listed] == [
        ("Acme", "open", False)
    ]
    assert listed[0]["incident"] == task.incident.number
    assert api.get("/api/v1/direct-contact-tasks/?owner=me").json()["results"] == []
    mine = api_as(owner).get("/api/v1/direct-contact-tasks/?owner=me&status=open").json()
    assert [t["id"] for t in mine["results"]] == [task.pk]
    clock.move_to(T0 + 61 * MIN)
    overdue = api.get("/api/v1/direct-contact-tasks/?overdue=1").json()["results"]
    assert [t["id"] for t in overdue] == [task.pk]
    assert api.get("/api/v1/direct-contact-tasks/?overdue=0").json()["results"] == []
    by_incident = api.get(f"/api/v1/direct-contact-tasks/?incident={task.incident.number}")
    assert [t["id"] for t in by_incident.json()["results"]] == [task.pk]
    assert api.get(f"/api/v1/direct-contact-tasks/{task.pk}/").json()["customer"]["name"] == "Acme"
    for bad in ("status=closed", "owner=someone", "overdue=maybe", "incident=%00"):
        assert api.get(f"/api/v1/direct-contact-tasks/?{bad}").status_code == 400


# --- admin -----------------------------------------------------------------------------------


def test_the_incident_page_lists_the_tasks_and_closes_them(clock, task, owner, client):
    client.force_login(owner)
    url = reverse("admin:incidents_incident_change", args=[task.incident_id])
    page = client.get(url).content.decode()
    assert 'id="panel-direct-contact"' in page
    assert f'id="direct-contact-{task.pk}" data-status="open"' in page
    assert "99.95 %" in page and "Olivia" in page
    close_url = reverse("admin:communications_directcontacttask_close", args=[task.pk])
    assert close_url in page

    refused = client.post(close_url, {"outcome": "not_reachable", "note": ""}, follow=True)
    assert "Nothing changed" in refused.content.decode()
    task.refresh_from_db()
    assert task.status == DirectContactStatus.OPEN

    response = client.post(close_url, {"outcome": "done", "note": "All good.", "next": url})
    assert response.status_code == 302
    assert response["Location"] == url
    task.refresh_from_db()
    assert (task.status, task.note, task.closed_by) == ("done", "All good.", owner)
    page = client.get(url).content.decode()
    assert f'id="direct-contact-{task.pk}" data-status="done"' in page
    assert "Direct contact with Acme made, by Olivia" in page  # the timeline


def test_someone_else_sees_the_panel_without_the_forms(task, viewer, client):
    client.force_login(viewer)
    page = client.get(reverse("admin:incidents_incident_change", args=[task.incident_id]))
    body = page.content.decode()
    assert f'id="direct-contact-{task.pk}"' in body
    assert reverse("admin:communications_directcontacttask_close", args=[task.pk]) not in body
    response = client.post(
        reverse("admin:communications_directcontacttask_close", args=[task.pk]),
        {"outcome": "done"},
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == DirectContactStatus.OPEN


def test_the_admin_index_shows_my_open_tasks_overdue_highlighted(clock, task, owner, client):
    client.force_login(owner)
    index = client.get(reverse("admin:index")).content.decode()
    assert 'id="index-panel-direct-contact"' in index
    assert task.incident.number in index and "Acme" in index
    assert 'data-overdue="1"' not in index

    clock.move_to(T0 + 61 * MIN)
    index = client.get(reverse("admin:index")).content.decode()
    assert 'data-overdue="1"' in index

    task.owner = None
    task.save()
    assert (
        'id="index-panel-direct-contact"' not in client.get(reverse("admin:index")).content.decode()
    )


def test_the_task_list_filters_overdue(clock, task, owner, client):
    client.force_login(owner)
    url = reverse("admin:communications_directcontacttask_changelist")
    assert "Acme" in client.get(url + "?overdue=no").content.decode()
    clock.move_to(T0 + 61 * MIN)
    assert "Acme" in client.get(url + "?overdue=yes").content.decode()
    assert "Acme" not in client.get(url + "?overdue=no&status__exact=open").content.decode()
