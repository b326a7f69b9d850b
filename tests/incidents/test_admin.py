"""The incident page in the admin: lifecycle buttons per role and status, transitions through
the admin URLs, notes, role assignments, the details form (through the services, with domain
errors shown as form errors) and its query count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents.models import Incident, Kind, RoleAssignment, Source, Status, TimelineEntry
from incidents.services import incident_note_add, incident_role_assign

pytestmark = pytest.mark.django_db

ROLE_FIXTURES = [
    "incident_manager",
    "technical_lead",
    "communications_lead",
    "business_liaison",
    "viewer",
]


def url(name: str, *args) -> str:
    return reverse(f"admin:incidents_incident_{name}", args=args)


def messages_of(response) -> list[str]:
    """Messages added while handling this request (earlier unread ones are left out)."""
    storage = get_messages(response.wsgi_request)
    return [str(message) for message in storage._queued_messages]


def transition_buttons(html: str, incident: Incident) -> set[str]:
    """The actions the page offers, read from the transition URLs it links or posts to."""
    return {
        action
        for action in (
            "acknowledge",
            "investigate",
            "mitigate",
            "monitor",
            "resolve",
            "reopen",
            "close",
            "cancel",
        )
        if url("transition", incident.pk, action) in html
    }


def own_timeline(incident: Incident):
    """Timeline entries the admin writes (other apps add notifications of their own)."""
    return TimelineEntry.objects.filter(incident=incident, source=Source.ADMIN)


def inline_data(response) -> dict[str, object]:
    """What the page's inline formsets post back untouched (other apps add inlines here)."""
    data: dict[str, object] = {}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for form in formset.initial_forms:
            data[f"{form.prefix}-{formset.model._meta.pk.name}"] = form.instance.pk
            data[f"{form.prefix}-{formset.fk.name}"] = formset.instance.pk
    return data


def change_form_data(client, incident: Incident, **overrides) -> dict[str, object]:
    """The change form as the page would post it back, unchanged unless overridden."""
    page = client.get(url("change", incident.pk))
    assert page.status_code == 200
    incident.refresh_from_db()

    def split(value):
        if value is None:
            return "", ""
        local = timezone.localtime(value)
        return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")

    data: dict[str, object] = {
        **inline_data(page),
        "title": incident.title,
        "severity": str(incident.severity_id),
        "severity_change_reason": "",
        "impact": incident.impact,
        "urgency": incident.urgency,
        "detection_source": incident.detection_source,
        "services": [str(pk) for pk in incident.services.values_list("pk", flat=True)],
        "customer_facing": "on" if incident.customer_facing else "",
        "affected_users": "" if incident.affected_users is None else str(incident.affected_users),
        "summary": incident.summary,
        "business_impact": incident.business_impact,
        "root_cause": incident.root_cause,
        "resolution": incident.resolution,
        "lessons_learned": incident.lessons_learned,
        "_save": "Save",
    }
    for name in ("impact_started_at", "detected_at"):
        data[f"{name}_0"], data[f"{name}_1"] = split(getattr(incident, name))
    # The detection time has a callable default, so the page carries its shown value in a
    # hidden "initial-" input to tell an edit from no edit.
    data["initial-detected_at_0"], data["initial-detected_at_1"] = split(incident.detected_at)
    data.update(overrides)
    if not data["customer_facing"]:
        del data["customer_facing"]
    return data


def add_form_data(client, **values) -> dict[str, object]:
    page = client.get(url("add"))
    assert page.status_code == 200
    now = timezone.localtime()
    data: dict[str, object] = {
        **inline_data(page),
        "impact": "medium",
        "urgency": "medium",
        "detection_source": "monitoring",
        "detected_at_0": now.strftime("%Y-%m-%d"),
        "detected_at_1": now.strftime("%H:%M:%S"),
        "impact_started_at_0": "",
        "impact_started_at_1": "",
        "_save": "Save",
    }
    data.update(values)
    return data


# --- the page and its buttons -------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLE_FIXTURES)
def test_change_page_renders_for_every_role_group(client, request, role, make_incident):
    user = request.getfixturevalue(role)
    incident = make_incident(status="investigating")
    client.force_login(user)

    response = client.get(url("change", incident.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert incident.number in html
    assert 'id="timeline"' in html
    assert 'id="roles"' in html
    assert url("report", incident.pk) in html
    assert url("history", incident.pk) in html


FROM_OPEN = {"acknowledge", "investigate", "mitigate", "monitor", "resolve"}


# Which actions each role may take from each status is tested at the selector the page reads
# (test_lifecycle's test_actions_available_per_role_and_status). Here: every button is shown
# (from open, and from resolved), a role's missing permission hides one, and none may be left.
@pytest.mark.parametrize(
    ("role", "status", "expected"),
    [
        ("incident_manager", "open", FROM_OPEN | {"cancel"}),
        ("incident_manager", "resolved", {"reopen", "close"}),
        ("technical_lead", "resolved", {"reopen"}),
        ("viewer", "open", set()),
    ],
)
def test_buttons_are_the_actions_this_user_may_take_in_this_status(
    client, request, role, status, expected, make_incident
):
    incident = make_incident(status=status)
    client.force_login(request.getfixturevalue(role))

    html = client.get(url("change", incident.pk)).content.decode()

    assert transition_buttons(html, incident) == expected


def test_viewer_sees_no_note_or_role_forms(client, viewer, make_incident):
    incident = make_incident(status="investigating")
    client.force_login(viewer)

    html = client.get(url("change", incident.pk)).content.decode()

    assert url("note", incident.pk) not in html
    assert url("role", incident.pk) not in html
    assert "No lifecycle actions are open to you" in html


def test_change_page_query_count_does_not_grow_with_timeline_roles_or_services(
    client, incident_manager, technical_lead, communications_lead, make_incident, make_user
):
    from tests.factories import ServiceFactory

    client.force_login(incident_manager)
    small = make_incident(status="investigating", services=[ServiceFactory(slug="one").slug])
    big = make_incident(
        status="investigating",
        services=[ServiceFactory(slug=f"svc-{n}").slug for n in range(4)],
    )
    for n in range(30):
        incident_note_add(
            incident=big, actor=incident_manager, source=Source.ADMIN, body=f"Note {n}"
        )
    for role, user in [
        ("incident_manager", incident_manager),
        ("technical_lead", technical_lead),
        ("communications_lead", communications_lead),
        ("business_liaison", make_user("Business Liaison", username="liaison")),
    ]:
        incident_role_assign(
            incident=big, role=role, user=user, actor=incident_manager, source=Source.ADMIN
        )
    client.get(url("change", small.pk))  # warm the content-type cache

    counts = []
    for incident in (small, big):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url("change", incident.pk))
        assert response.status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1], counts
    # The core's page in 20 queries, plus at most 2 for each panel the apps add to it
    # (communications' status updates, stakeholder schedule, ...; reviews' action items, ...).
    from incidents.admin import extensions

    panels = len(extensions._panels) + len(extensions._inlines)
    assert counts[1] <= 20 + 2 * panels, (counts, panels)


# --- transitions through the admin URLs -----------------------------------------------------------

TRANSITIONS = [
    ("open", "acknowledge", {}, Status.ACKNOWLEDGED),
    ("acknowledged", "investigate", {}, Status.INVESTIGATING),
    ("investigating", "mitigate", {}, Status.MITIGATING),
    ("mitigating", "monitor", {}, Status.MONITORING),
    ("monitoring", "resolve", {"resolution": "Rolled back release 42."}, Status.RESOLVED),
    ("resolved", "reopen", {"reason": "Errors are back."}, Status.INVESTIGATING),
    ("resolved", "close", {}, Status.CLOSED),
    ("open", "cancel", {"reason": "False alarm from a test probe."}, Status.CANCELLED),
]


@pytest.mark.parametrize(("status", "action", "data", "target"), TRANSITIONS)
def test_each_transition_through_the_admin_url_works_and_writes_a_timeline_entry(
    client, incident_manager, make_incident, status, action, data, target
):
    incident = make_incident(
        status=status, root_cause="A bad release.", business_impact="Checkout down 20 min."
    )
    client.force_login(incident_manager)

    response = client.post(url("transition", incident.pk, action), data)

    assert response.status_code == 302
    assert response["Location"] == url("change", incident.pk)
    incident.refresh_from_db()
    assert incident.status == target
    entry = own_timeline(incident).filter(kind=Kind.STATUS).get()
    assert entry.actor == incident_manager
    assert entry.data["action"] == action
    assert any("→" in message for message in messages_of(response))


@pytest.mark.parametrize("action", ["resolve", "cancel", "reopen"])
def test_actions_that_need_input_have_a_form_page(client, incident_manager, make_incident, action):
    incident = make_incident(status="resolved" if action == "reopen" else "investigating")
    client.force_login(incident_manager)

    response = client.get(url("transition", incident.pk, action))

    assert response.status_code == 200
    assert response.context["form"] is not None
    assert incident.number in response.content.decode()


def test_resolve_form_requires_a_resolution_and_changes_nothing_without_one(
    client, incident_manager, make_incident
):
    incident = make_incident(status="investigating")
    client.force_login(incident_manager)

    response = client.post(url("transition", incident.pk, "resolve"), {"resolution": "  "})

    assert response.status_code == 200
    assert "resolution" in response.context["form"].errors
    incident.refresh_from_db()
    assert incident.status == Status.INVESTIGATING
    assert not own_timeline(incident).exists()


def test_cancel_as_duplicate_of_another_incident(client, incident_manager, make_incident):
    original = make_incident(status="investigating")
    duplicate = make_incident()
    client.force_login(incident_manager)

    response = client.post(
        url("transition", duplicate.pk, "cancel"),
        {"reason": "", "duplicate_of": original.number.lower()},
    )

    assert response.status_code == 302
    duplicate.refresh_from_db()
    assert duplicate.status == Status.CANCELLED
    assert duplicate.duplicate_of == original


def test_cancel_as_duplicate_of_an_unknown_incident_is_a_form_error(
    client, incident_manager, make_incident
):
    incident = make_incident()
    client.force_login(incident_manager)

    response = client.post(
        url("transition", incident.pk, "cancel"), {"duplicate_of": "INC-1999-0101-001"}
    )

    assert response.status_code == 200
    assert "No incident INC-1999-0101-001" in str(response.context["form"].errors["duplicate_of"])
    incident.refresh_from_db()
    assert incident.status == Status.OPEN


def test_cancel_needs_a_reason_or_a_duplicate(client, incident_manager, make_incident):
    incident = make_incident()
    client.force_login(incident_manager)

    response = client.post(url("transition", incident.pk, "cancel"), {})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    incident.refresh_from_db()
    assert incident.status == Status.OPEN


def test_a_transition_not_allowed_from_this_status_is_a_clear_message_and_changes_nothing(
    client, incident_manager, make_incident
):
    incident = make_incident(status="resolved")
    client.force_login(incident_manager)

    response = client.post(url("transition", incident.pk, "mitigate"))

    assert response.status_code == 302
    [message] = messages_of(response)
    assert "Cannot mitigate an incident that is resolved" in message
    assert "reopen" in message and "close" in message
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED
    assert not own_timeline(incident).exists()


def test_a_failed_guard_names_the_missing_fields_and_changes_nothing(
    client, incident_manager, make_incident
):
    from incidents.services import incident_resolve

    incident = make_incident(status="investigating", summary="")
    incident_resolve(incident=incident, actor=None, source=Source.SYSTEM, resolution="Rolled back.")
    client.force_login(incident_manager)

    response = client.post(url("transition", incident.pk, "close"))

    # Closing asks for the report fields it needs: the refusal is shown on them.
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert {name: errors[name] for name in ("summary", "root_cause", "business_impact")} == {
        name: ["Required to close."] for name in ("summary", "root_cause", "business_impact")
    }
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED
    assert not own_timeline(incident).exists()


def test_a_viewer_cannot_post_a_transition(client, viewer, make_incident):
    incident = make_incident()
    client.force_login(viewer)

    response = client.post(url("transition", incident.pk, "acknowledge"))

    assert response.status_code == 302
    [message] = messages_of(response)
    assert "may not acknowledge" in message
    incident.refresh_from_db()
    assert incident.status == Status.OPEN
    assert not own_timeline(incident).exists()


def test_a_technical_lead_can_neither_post_nor_open_the_cancel_form(
    client, technical_lead, make_incident
):
    incident = make_incident()
    client.force_login(technical_lead)

    cancel = client.post(url("transition", incident.pk, "cancel"), {"reason": "Not ours."})
    cancel_page = client.get(url("transition", incident.pk, "cancel"))

    assert "may not cancel" in messages_of(cancel)[0]
    assert cancel_page.status_code == 302
    assert "may not cancel" in messages_of(cancel_page)[0]
    incident.refresh_from_db()
    assert incident.status == Status.OPEN


def test_repeating_a_transition_says_nothing_changed(client, incident_manager, make_incident):
    incident = make_incident(status="investigating")
    client.force_login(incident_manager)

    response = client.post(url("transition", incident.pk, "investigate"))

    assert "already investigating" in messages_of(response)[0]
    assert not own_timeline(incident).exists()


def test_unknown_action_is_404_and_get_of_a_one_click_action_changes_nothing(
    client, incident_manager, make_incident
):
    incident = make_incident()
    client.force_login(incident_manager)

    assert client.get(url("transition", incident.pk, "explode")).status_code == 404
    assert client.get(url("transition", incident.pk, "acknowledge")).status_code == 302
    incident.refresh_from_db()
    assert incident.status == Status.OPEN


def test_transition_needs_csrf(incident_manager, make_incident):
    from django.test import Client

    incident = make_incident()
    client = Client(enforce_csrf_checks=True)
    client.force_login(incident_manager)

    response = client.post(url("transition", incident.pk, "acknowledge"))

    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.status == Status.OPEN


# --- notes and roles ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.NOTE, Kind.DECISION])
def test_adding_a_note_or_decision(client, technical_lead, make_incident, kind):
    incident = make_incident(status="investigating")
    client.force_login(technical_lead)

    response = client.post(url("note", incident.pk), {"body": "DB pool exhausted.", "kind": kind})

    assert response.status_code == 302
    assert response["Location"].endswith("#timeline")
    entry = own_timeline(incident).get()
    assert (entry.kind, entry.message, entry.actor) == (kind, "DB pool exhausted.", technical_lead)
    page = client.get(url("change", incident.pk)).content.decode()
    assert "DB pool exhausted." in page


def test_an_empty_note_or_a_viewer_note_is_refused(client, viewer, technical_lead, make_incident):
    incident = make_incident()
    client.force_login(technical_lead)
    empty = client.post(url("note", incident.pk), {"body": "   ", "kind": "note"})
    client.force_login(viewer)
    forbidden = client.post(url("note", incident.pk), {"body": "Hello", "kind": "note"})

    assert messages_of(empty) and "required" in messages_of(empty)[0].lower()
    assert "may not add notes" in messages_of(forbidden)[0]
    assert not own_timeline(incident).exists()
    assert client.get(url("note", incident.pk)).status_code == 405


def test_assigning_and_unassigning_a_role(client, incident_manager, technical_lead, make_incident):
    incident = make_incident()
    client.force_login(incident_manager)

    assigned = client.post(
        url("role", incident.pk), {"role": "technical_lead", "user": technical_lead.pk}
    )

    assert assigned.status_code == 302
    assignment = RoleAssignment.objects.get(incident=incident)
    assert (assignment.role.key, assignment.user) == ("technical_lead", technical_lead)
    assert own_timeline(incident).filter(kind=Kind.ROLE).count() == 1
    page = client.get(url("change", incident.pk)).content.decode()
    assert f'<option value="{technical_lead.pk}" selected>' in page

    client.post(url("role", incident.pk), {"role": "technical_lead", "user": ""})

    assert not RoleAssignment.objects.filter(incident=incident).exists()
    assert own_timeline(incident).filter(kind=Kind.ROLE).count() == 2


def test_role_assignment_refused_without_the_permission_or_for_an_unknown_user(
    client, technical_lead, incident_manager, make_incident
):
    incident = make_incident()
    client.force_login(technical_lead)
    forbidden = client.post(
        url("role", incident.pk), {"role": "incident_manager", "user": technical_lead.pk}
    )
    client.force_login(incident_manager)
    unknown = client.post(url("role", incident.pk), {"role": "incident_manager", "user": 999999})

    assert "may not assign roles" in messages_of(forbidden)[0]
    assert "Unknown or inactive user" in messages_of(unknown)[0]
    assert not RoleAssignment.objects.filter(incident=incident).exists()


def test_incident_manager_column_and_role_choices_list_group_members_first(
    client, incident_manager, make_incident
):
    incident = make_incident()
    incident_role_assign(
        incident=incident,
        role="incident_manager",
        user=incident_manager,
        actor=None,
        source=Source.SYSTEM,
    )
    client.force_login(incident_manager)

    response = client.get(url("change", incident.pk))

    [row] = [r for r in response.context["vigil"]["roles"] if r["role"].key == "incident_manager"]
    assert row["holder_id"] == incident_manager.pk
    assert (incident_manager.pk, "Im") in row["members"]


# --- the details form -----------------------------------------------------------------------------


def test_saving_the_form_unchanged_writes_nothing(client, incident_manager, make_incident, service):
    incident = make_incident(status="investigating", services=["checkout"])
    client.force_login(incident_manager)

    response = client.post(url("change", incident.pk), change_form_data(client, incident))

    assert response.status_code == 302, response.context and response.context["errors"]
    assert not own_timeline(incident).exists()
    assert incident.history.count() == Incident.objects.get(pk=incident.pk).history.count()


def test_editing_details_and_severity_goes_through_the_services(
    client, incident_manager, make_incident
):
    incident = make_incident(status="investigating", severity=3)
    client.force_login(incident_manager)
    history_before = incident.history.count()

    response = client.post(
        url("change", incident.pk),
        change_form_data(
            client,
            incident,
            title="Checkout down in the EU",
            severity="1",
            severity_change_reason="All EU customers affected.",
            root_cause="Expired certificate.",
        ),
    )

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.title == "Checkout down in the EU"
    assert incident.severity_id == 1
    assert incident.resolution_due_at == incident.detected_at + timedelta(hours=4)
    kinds = set(own_timeline(incident).values_list("kind", flat=True))
    # Impact and urgency were Sev 3's defaults: they follow the new severity, and the priority.
    assert kinds == {Kind.UPDATE, Kind.SEVERITY, Kind.PRIORITY}
    assert incident.priority == 1
    severity_entry = own_timeline(incident).get(kind=Kind.SEVERITY)
    assert "All EU customers affected." in severity_entry.message
    assert incident.history.count() > history_before
    assert incident.history.first().history_user == incident_manager


def test_unknown_severity_is_rejected_and_changes_nothing(client, incident_manager, make_incident):
    incident = make_incident(severity=3)
    client.force_login(incident_manager)

    response = client.post(
        url("change", incident.pk),
        change_form_data(client, incident, severity="9", title="Changed"),
    )

    assert response.status_code == 200
    assert "Unknown severity" in str(response.context["adminform"].form.errors["severity"])
    incident.refresh_from_db()
    assert (incident.severity_id, incident.title) == (3, "Incident " + incident.title.split()[-1])
    assert not own_timeline(incident).exists()


def test_impact_start_after_detection_is_a_form_error(client, incident_manager, make_incident):
    incident = make_incident()
    client.force_login(incident_manager)
    later = timezone.localtime(incident.detected_at + timedelta(minutes=5))

    response = client.post(
        url("change", incident.pk),
        change_form_data(
            client,
            incident,
            impact_started_at_0=later.strftime("%Y-%m-%d"),
            impact_started_at_1=later.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "cannot be earlier than impact started" in str(errors["impact_started_at"])
    incident.refresh_from_db()
    assert incident.impact_started_at is None


def test_detection_moved_after_acknowledgement_is_a_form_error_not_a_crash(
    client, incident_manager, make_incident
):
    import time_machine

    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        incident = make_incident(status="acknowledged")
    client.force_login(incident_manager)
    after_ack = timezone.localtime(incident.acknowledged_at + timedelta(minutes=10))

    response = client.post(
        url("change", incident.pk),
        change_form_data(
            client,
            incident,
            detected_at_0=after_ack.strftime("%Y-%m-%d"),
            detected_at_1=after_ack.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Acknowledged cannot be earlier than detected" in str(errors["detected_at"])
    before = incident.detected_at
    incident.refresh_from_db()
    assert incident.detected_at == before


def test_a_refusal_from_the_service_is_shown_on_the_form_and_changes_nothing(
    client, incident_manager, make_incident
):
    incident = make_incident()
    client.force_login(incident_manager)
    future = timezone.localtime(timezone.now() + timedelta(days=1))

    response = client.post(
        url("change", incident.pk),
        change_form_data(
            client,
            incident,
            title="Edited together with a bad time",
            detected_at_0=future.strftime("%Y-%m-%d"),
            detected_at_1=future.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 200
    assert "future" in str(response.context["adminform"].form.errors["detected_at"])
    incident.refresh_from_db()
    assert incident.title != "Edited together with a bad time"
    assert not own_timeline(incident).exists()


def test_business_liaison_edits_details_but_not_severity(client, business_liaison, make_incident):
    incident = make_incident(severity=3)
    client.force_login(business_liaison)

    page = client.get(url("change", incident.pk))
    assert "severity" not in page.context["adminform"].form.fields
    response = client.post(
        url("change", incident.pk),
        change_form_data(
            client, incident, severity="1", business_impact="About 200 orders delayed."
        ),
    )

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.severity_id == 3
    assert incident.business_impact == "About 200 orders delayed."


def test_status_priority_and_due_times_are_read_only(client, incident_manager, make_incident):
    incident = make_incident()
    client.force_login(incident_manager)

    form = client.get(url("change", incident.pk)).context["adminform"].form

    for name in ("status", "priority", "number", "response_due_at", "acknowledged_at"):
        assert name not in form.fields


def test_viewer_gets_a_read_only_page_and_cannot_save(client, viewer, make_incident):
    incident = make_incident()
    client.force_login(viewer)

    page = client.get(url("change", incident.pk))
    response = client.post(
        url("change", incident.pk), change_form_data(client, incident, title="Nope")
    )

    assert page.status_code == 200
    assert not page.context["adminform"].form.fields
    assert 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.title != "Nope"


# --- adding ---------------------------------------------------------------------------------------


def test_adding_an_incident_goes_through_incident_create(client, incident_manager, service):
    client.force_login(incident_manager)

    response = client.post(
        url("add"),
        add_form_data(
            client,
            title="Payments failing",
            severity="2",
            impact="high",
            urgency="high",
            detection_source="customer_report",
            services=[str(service.pk)],
            customer_facing="",
            affected_users="120",
            summary="Card payments fail.",
        ),
    )

    incident = Incident.objects.get(title="Payments failing")
    assert response.status_code == 302
    assert response["Location"] == url("change", incident.pk)
    assert incident.number.startswith("INC-")
    assert (incident.severity_id, incident.priority, incident.affected_users) == (2, 1, 120)
    assert incident.customer_facing is True  # decided from the customer-facing service
    assert incident.created_by == incident_manager
    created = incident.timeline.get(kind=Kind.CREATED)
    assert (created.source, created.actor) == (Source.ADMIN, incident_manager)


def test_adding_with_an_unknown_severity_creates_nothing(client, incident_manager):
    client.force_login(incident_manager)

    response = client.post(
        url("add"), add_form_data(client, title="Payments failing", severity="7")
    )

    assert response.status_code == 200
    assert "Unknown severity" in str(response.context["adminform"].form.errors["severity"])
    assert not Incident.objects.exists()


def test_adding_with_a_detection_time_in_the_future_is_refused_by_the_service(
    client, incident_manager
):
    client.force_login(incident_manager)
    future = timezone.localtime(timezone.now() + timedelta(hours=2))

    response = client.post(
        url("add"),
        add_form_data(
            client,
            title="From the future",
            severity="3",
            detected_at_0=future.strftime("%Y-%m-%d"),
            detected_at_1=future.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 200
    assert "future" in str(response.context["adminform"].form.errors["detected_at"])
    assert not Incident.objects.exists()


def test_viewer_and_liaison_cannot_add(client, viewer, business_liaison):
    for user in (viewer, business_liaison):
        client.force_login(user)
        assert client.get(url("add")).status_code == 403


# --- history and deletion -------------------------------------------------------------------------


def test_history_page_shows_records_and_reverting_is_refused(
    client, incident_manager, make_incident
):
    incident = make_incident(status="investigating")
    client.force_login(incident_manager)
    record = incident.history.last()
    revert_url = reverse(
        "admin:incidents_incident_simple_history", args=[incident.pk, record.history_id]
    )

    history = client.get(url("history", incident.pk))
    revert = client.post(revert_url, change_form_data(client, incident))

    assert history.status_code == 200
    assert revert.status_code == 403
    incident.refresh_from_db()
    assert incident.status == Status.INVESTIGATING


def test_incidents_cannot_be_deleted(client, superuser, make_incident):
    incident = make_incident()
    client.force_login(superuser)

    assert client.post(url("delete", incident.pk), {"post": "yes"}).status_code == 403
    assert Incident.objects.filter(pk=incident.pk).exists()


def test_an_incident_id_in_the_url_opens_its_page(client, viewer, make_incident):
    incident = make_incident()
    client.force_login(viewer)

    response = client.get(url("change", incident.number))

    assert response.status_code == 200
    assert response.context["original"] == incident
