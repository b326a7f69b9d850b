"""Action items: creation and its refusals (nothing written), edits, status changes, deletion,
permissions, the owner's reminders under a frozen clock (each once), and the admin's list,
incident panel and "My action items"."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.urls import reverse

from escalation.models import Notification
from incidents.errors import ActionForbidden, InvalidInput, TransitionNotAllowed
from incidents.models import Source, TimelineEntry
from reviews.models import ActionItem, Review, ReviewPolicy, ReviewStatus
from reviews.services.action_reminders import action_item_reminder_sweep
from reviews.services.actions import (
    action_item_create,
    action_item_delete,
    action_item_set_status,
    action_item_update,
)
from tests.factories import IncidentFactory, ServiceFactory, UserFactory

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
D0 = T0.date()


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def policy(db):
    row = ReviewPolicy.objects.order_by("pk").first() or ReviewPolicy()
    row.action_reminder_days = 2
    row.workday_start = time(9, 0)
    row.time_zone = "UTC"
    row.save()
    return row


@pytest.fixture
def owner(make_user):
    return make_user("Viewer", username="olga", email="olga@example.com")


def add(incident, actor, who, /, **kwargs):
    values = {
        "kind": "immediate_fix",
        "title": "Add an alert on checkout errors",
        "owner": who,
        "due_date": D0 + timedelta(days=5),
    }
    values.update(kwargs)
    return action_item_create(incident=incident, actor=actor, source=Source.API, **values)


def counts():
    return (ActionItem.objects.count(), TimelineEntry.objects.count(), Notification.objects.count())


# --- creating ----------------------------------------------------------------------------------


def test_create_records_the_item_on_the_timeline_and_schedules_the_first_reminder(
    incident_manager, owner
):
    incident = IncidentFactory(status="resolved")
    item = add(incident, incident_manager, owner, tracker_url="https://jira.example.com/X-1")

    assert item.status == "open" and item.owner == owner and item.created_by == incident_manager
    entry = incident.timeline.order_by("-pk").first()
    assert "Action item added: Add an alert on checkout errors" in entry.message
    assert entry.data == {"action_item": item.pk, "action": "created"}
    # "before": 2 days before the due date, at the start of the working day.
    assert item.next_reminder_at == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    assert item.history.count() == 1


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"due_date": D0 - timedelta(days=1)}, "due_date"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"tracker_url": "ftp://tracker.example.com/1"}, "tracker_url"),
        ({"tracker_url": "javascript:alert(1)"}, "tracker_url"),
        ({"kind": "wishlist"}, "kind"),
        ({"priority": "urgent"}, "priority"),
        ({"owner": 987654}, "owner"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(incident_manager, owner, changes, field):
    incident = IncidentFactory(status="resolved")
    before = counts()
    with pytest.raises(InvalidInput) as refused:
        add(incident, incident_manager, owner, **changes)
    assert field in refused.value.errors
    assert counts() == before


def test_an_inactive_owner_and_a_cancelled_incident_are_refused(incident_manager, make_user):
    gone = make_user("Viewer", username="gone", is_active=False)
    incident = IncidentFactory(status="resolved")
    cancelled = IncidentFactory(status="cancelled")
    before = counts()
    with pytest.raises(InvalidInput, match="active"):
        add(incident, incident_manager, gone)
    with pytest.raises(InvalidInput, match="cancelled"):
        add(cancelled, incident_manager, incident_manager)
    assert counts() == before


def test_items_join_an_open_review_and_none_is_added_to_a_published_one(incident_manager, owner):
    incident = IncidentFactory(status="closed")
    review = Review.objects.create(incident=incident, due_date=D0 + timedelta(days=3))
    joined = add(incident, incident_manager, owner)
    assert joined.review == review

    review.status = ReviewStatus.PUBLISHED
    review.save()
    before = counts()
    with pytest.raises(TransitionNotAllowed, match="published"):
        add(incident, incident_manager, owner, from_review=True)
    assert counts() == before
    # From the incident it is still possible: a follow-up outside the published review.
    later = add(incident, incident_manager, owner, title="Later follow-up")
    assert later.review is None

    # The published review's items: content frozen, follow-through not.
    with pytest.raises(TransitionNotAllowed):
        action_item_update(item=joined, actor=incident_manager, source=Source.API, title="New")
    moved = action_item_update(
        item=joined, actor=incident_manager, source=Source.API, due_date=D0 + timedelta(days=9)
    )
    assert moved.due_date == D0 + timedelta(days=9)
    assert ActionItem.objects.get(pk=joined.pk).title == "Add an alert on checkout errors"
    # ... and it is no longer deleted (mark it won't do instead).
    with pytest.raises(TransitionNotAllowed):
        action_item_delete(item=joined, actor=incident_manager, source=Source.API)
    assert ActionItem.objects.filter(pk=joined.pk).exists()


# --- status and permissions --------------------------------------------------------------------


def test_status_changes_done_wont_do_and_reopen(incident_manager, owner):
    incident = IncidentFactory(status="resolved")
    item = add(incident, incident_manager, owner)

    with pytest.raises(InvalidInput, match="reason"):
        action_item_set_status(item=item, actor=owner, source=Source.API, status="wont_do")
    assert ActionItem.objects.get(pk=item.pk).status == "open"

    item = action_item_set_status(item=item, actor=owner, source=Source.API, status="in_progress")
    assert item.next_reminder_at is not None
    item = action_item_set_status(item=item, actor=owner, source=Source.API, status="done")
    assert item.completed_at == T0 and item.next_reminder_at is None
    assert incident.timeline.filter(message__startswith="Action item done").count() == 1
    # The same status again changes nothing.
    entries = incident.timeline.count()
    action_item_set_status(item=item, actor=owner, source=Source.API, status="done")
    assert incident.timeline.count() == entries

    item = action_item_set_status(item=item, actor=owner, source=Source.API, status="open")
    assert item.completed_at is None and item.next_reminder_at is not None
    assert incident.timeline.filter(message__startswith="Action item reopened").count() == 1
    item = action_item_set_status(
        item=item, actor=incident_manager, source=Source.API, status="wont_do", reason="Obsolete"
    )
    assert item.wont_do_reason == "Obsolete" and item.next_reminder_at is None
    assert incident.timeline.filter(message__contains="Reason: Obsolete").count() == 1


def test_permissions(incident_manager, technical_lead, communications_lead, viewer, owner):
    incident = IncidentFactory(status="resolved")
    # The technical lead adds and edits; the others do not.
    item = add(incident, technical_lead, owner)
    for actor in (communications_lead, viewer, owner):
        with pytest.raises(ActionForbidden):
            add(incident, actor, owner)
        with pytest.raises(ActionForbidden):
            action_item_update(item=item, actor=actor, source=Source.API, title="Mine now")
    action_item_update(item=item, actor=technical_lead, source=Source.API, priority="high")
    # The owner changes the status of their own item, nobody else without the permission.
    with pytest.raises(ActionForbidden):
        action_item_set_status(item=item, actor=viewer, source=Source.API, status="done")
    action_item_set_status(item=item, actor=owner, source=Source.API, status="in_progress")
    # Only the incident manager deletes.
    with pytest.raises(ActionForbidden):
        action_item_delete(item=item, actor=technical_lead, source=Source.API)
    action_item_delete(item=item, actor=incident_manager, source=Source.API)
    assert not ActionItem.objects.exists()
    assert incident.timeline.filter(message__startswith="Action item deleted").count() == 1


# --- reminders ---------------------------------------------------------------------------------


def reminders():
    return list(
        Notification.objects.filter(idempotency_key__startswith="reviews:action-reminder")
        .order_by("pk")
        .values_list("recipient", "idempotency_key", "subject")
    )


def test_reminders_are_sent_once_each_before_on_and_after_the_due_date(
    frozen, incident_manager, owner
):
    incident = IncidentFactory(status="resolved")
    item = add(incident, incident_manager, owner)  # due Saturday 7 March
    due = item.due_date

    frozen.move_to(datetime(2026, 3, 5, 8, 59, tzinfo=UTC))
    assert action_item_reminder_sweep() == []
    frozen.move_to(datetime(2026, 3, 5, 9, 0, tzinfo=UTC))
    assert [r.reminder for r in action_item_reminder_sweep()] == ["before"]
    assert action_item_reminder_sweep() == []  # the same moment again: nothing more
    sent = reminders()
    assert sent == [
        (
            "olga@example.com",
            f"reviews:action-reminder:{item.pk}:{due}:before",
            f"[{incident.number}] Action item due 7 Mar 2026: Add an alert on checkout errors",
        )
    ]
    assert "is due in 2 days" in Notification.objects.get().body

    frozen.move_to(datetime(2026, 3, 7, 9, 0, tzinfo=UTC))
    assert [r.reminder for r in action_item_reminder_sweep()] == ["due"]
    frozen.move_to(datetime(2026, 3, 8, 9, 0, tzinfo=UTC))
    assert [r.reminder for r in action_item_reminder_sweep()] == ["overdue"]
    assert action_item_reminder_sweep() == []
    frozen.move_to(datetime(2026, 3, 15, 8, 0, tzinfo=UTC))
    assert action_item_reminder_sweep() == []
    frozen.move_to(datetime(2026, 3, 15, 9, 0, tzinfo=UTC))
    assert [r.reminder for r in action_item_reminder_sweep()] == ["overdue-2"]
    assert action_item_reminder_sweep() == []

    item.refresh_from_db()
    assert item.reminders_sent == ["before", "due", "overdue", "overdue-2"]
    assert item.next_reminder_at == datetime(2026, 3, 22, 9, 0, tzinfo=UTC)
    assert len(reminders()) == 4

    action_item_set_status(item=item, actor=owner, source=Source.API, status="done")
    frozen.move_to(datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    assert action_item_reminder_sweep() == []
    assert len(reminders()) == 4


def test_a_late_sweep_sends_only_the_latest_reminder_and_a_new_due_date_starts_afresh(
    frozen, incident_manager, owner
):
    incident = IncidentFactory(status="resolved")
    item = add(incident, incident_manager, owner, due_date=D0 + timedelta(days=2))
    frozen.move_to(datetime(2026, 3, 5, 12, 0, tzinfo=UTC))  # past "before", "due" and "overdue"
    assert [r.reminder for r in action_item_reminder_sweep()] == ["overdue"]
    item.refresh_from_db()
    assert item.reminders_sent == ["overdue"]

    item = action_item_update(
        item=item,
        actor=incident_manager,
        source=Source.API,
        due_date=date(2026, 3, 10),
    )
    assert item.reminders_sent == []
    assert item.next_reminder_at == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    frozen.move_to(datetime(2026, 3, 8, 9, 0, tzinfo=UTC))
    assert [r.reminder for r in action_item_reminder_sweep()] == ["before"]
    keys = [key for _, key, _ in reminders()]
    assert keys == [
        f"reviews:action-reminder:{item.pk}:2026-03-04:overdue",
        f"reviews:action-reminder:{item.pk}:2026-03-10:before",
    ]


def test_the_task_runs_the_sweep(frozen, incident_manager, owner):
    from reviews.tasks import action_item_reminder_sweep_task

    add(IncidentFactory(status="resolved"), incident_manager, owner)
    frozen.move_to(datetime(2026, 3, 7, 9, 0, tzinfo=UTC))
    assert action_item_reminder_sweep_task() == 1
    assert action_item_reminder_sweep_task() == 0


# --- the admin ---------------------------------------------------------------------------------


def test_incident_panel_lists_items_and_adds_one(client, incident_manager, owner):
    incident = IncidentFactory(status="resolved")
    add(incident, incident_manager, owner, title="Fix <b>the</b> pool", due_date=D0)
    client.force_login(incident_manager)
    page = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="panel-action-items"' in html
    assert "Fix &lt;b&gt;the&lt;/b&gt; pool" in html
    assert "Add an action item" in html

    url = reverse("admin:reviews_actionitem_add_for_incident", args=[incident.pk])
    form = {
        "kind": "process",
        "title": "Update the runbook",
        "owner": str(owner.pk),
        "due_date": str(D0 + timedelta(days=10)),
        "priority": "low",
    }
    before = counts()
    refused = client.post(url, {**form, "due_date": str(D0 - timedelta(days=1))}, follow=True)
    assert "Not added" in refused.content.decode()
    assert counts() == before
    client.post(url, form)
    created = ActionItem.objects.get(title="Update the runbook")
    assert created.kind == "process" and created.owner == owner and created.priority == "low"


def test_viewer_sees_the_panel_without_the_add_form(client, viewer, incident_manager, owner):
    incident = IncidentFactory(status="resolved")
    add(incident, incident_manager, owner)
    client.force_login(viewer)
    html = client.get(reverse("admin:incidents_incident_change", args=[incident.pk])).content
    assert b"Add an alert on checkout errors" in html
    assert b"Add an action item" not in html
    url = reverse("admin:reviews_actionitem_add_for_incident", args=[incident.pk])
    before = counts()
    client.post(url, {"kind": "process", "title": "x", "owner": viewer.pk, "due_date": str(D0)})
    assert counts() == before


def test_my_action_items_on_the_index_with_overdue_highlighted(
    frozen, client, incident_manager, owner
):
    incident = IncidentFactory(status="resolved")
    late = add(incident, incident_manager, owner, title="Late one", due_date=D0)
    add(incident, incident_manager, owner, title="Later one", due_date=D0 + timedelta(days=20))
    add(incident, incident_manager, incident_manager, title="Not mine")
    frozen.move_to(T0 + timedelta(days=2))
    client.force_login(owner)
    html = client.get(reverse("admin:index")).content.decode()
    assert "My action items" in html
    assert "Late one" in html and "Later one" in html and "Not mine" not in html
    assert f'data-action-item="{late.pk}" data-overdue="1"' in html
    assert html.index("Late one") < html.index("Later one")

    # The owner marks it done from there.
    client.post(
        reverse("admin:reviews_actionitem_status", args=[late.pk]),
        {"status": "done", "next": reverse("admin:index")},
    )
    assert ActionItem.objects.get(pk=late.pk).status == "done"


def test_admin_list_filters(frozen, client, incident_manager, owner):
    checkout = ServiceFactory(slug="checkout", name="Checkout")
    search = ServiceFactory(slug="search", name="Search")
    a = add(
        IncidentFactory(status="resolved", services=[checkout]),
        incident_manager,
        owner,
        title="Checkout item",
        due_date=D0,
    )
    add(
        IncidentFactory(status="resolved", services=[search]),
        incident_manager,
        owner,
        title="Search item",
        due_date=D0 + timedelta(days=30),
    )
    frozen.move_to(T0 + timedelta(days=3))
    client.force_login(incident_manager)
    url = reverse("admin:reviews_actionitem_changelist")
    overdue = client.get(url, {"overdue": "yes"}).content.decode()
    assert "Checkout item" in overdue and "Search item" not in overdue
    by_service = client.get(url, {"service": str(search.pk)}).content.decode()
    assert "Search item" in by_service and "Checkout item" not in by_service
    found = client.get(url, {"q": "checkout"}).content.decode()
    assert "Checkout item" in found and "Search item" not in found
    page = client.get(reverse("admin:reviews_actionitem_change", args=[a.pk]))
    assert page.status_code == 200


def test_admin_change_page_saves_through_the_services(client, incident_manager, owner):
    item = add(IncidentFactory(status="resolved"), incident_manager, owner)
    client.force_login(incident_manager)
    url = reverse("admin:reviews_actionitem_change", args=[item.pk])
    data = {
        "kind": item.kind,
        "title": item.title,
        "description": "",
        "owner": str(owner.pk),
        "due_date": str(item.due_date),
        "priority": "high",
        "tracker_url": "",
        "status": "wont_do",
        "wont_do_reason": "",
    }
    refused = client.post(url, data)
    assert refused.status_code == 200  # shown again with the refusal
    assert ActionItem.objects.get(pk=item.pk).priority == "medium"
    client.post(url, {**data, "wont_do_reason": "Superseded"})
    item.refresh_from_db()
    assert (item.priority, item.status, item.wont_do_reason) == ("high", "wont_do", "Superseded")


def test_owner_without_roles_is_not_anyone_else(db):
    stranger = UserFactory(username="stranger")
    owner = UserFactory(username="own")
    item = action_item_create(
        incident=IncidentFactory(status="resolved"),
        actor=None,
        source=Source.SYSTEM,
        kind="training",
        title="Train on failover",
        owner=owner,
        due_date=D0,
    )
    with pytest.raises(ActionForbidden):
        action_item_set_status(item=item, actor=stranger, source=Source.API, status="done")
    action_item_set_status(item=item, actor=owner, source=Source.API, status="done")
