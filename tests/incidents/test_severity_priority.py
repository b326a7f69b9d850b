"""Severity and priority agree: a new incident's impact and urgency default from its severity
(policy data), the matrix decides the priority, a pair that does not go with the severity needs
a confirmed reason (admin and API; refusals save nothing), and priority changes are on the
timeline with who, from → to and why."""

from __future__ import annotations

import pytest
from django.urls import reverse

from incidents.models import (
    Incident,
    IncidentPolicy,
    Kind,
    SeverityLevel,
    Source,
    TimelineEntry,
)
from tests.incidents.test_admin import add_form_data, change_form_data

pytestmark = pytest.mark.django_db

INCIDENTS = "/api/v1/incidents/"


def url(name: str, *args) -> str:
    return reverse(f"admin:incidents_incident_{name}", args=args)


def form_errors(response, field: str) -> str:
    return " ".join(response.context["adminform"].form.errors.get(field, []))


# --- the policy data -----------------------------------------------------------------------------


def test_each_severity_is_seeded_with_the_impact_and_urgency_it_goes_with(api_as, viewer):
    response = api_as(viewer).get("/api/v1/policy/severities/")

    assert response.status_code == 200
    rows = {
        row["level"]: (row["default_impact"], row["default_urgency"], row["expected_priority"])
        for row in response.json()
    }
    assert rows == {
        1: ("high", "high", 1),
        2: ("high", "medium", 2),
        3: ("medium", "medium", 3),
        4: ("low", "low", 4),
    }
    policy = IncidentPolicy.objects.get()
    assert (policy.priority_tolerance, policy.severity_reason) == (1, "drops")
    assert policy.declarer_is_incident_manager and policy.acknowledger_takes_role


def test_a_severitys_defaults_are_edited_in_the_admin_and_audited(client, superuser):
    client.force_login(superuser)
    level = SeverityLevel.objects.get(level=3)
    page = client.get(reverse("admin:incidents_severitylevel_change", args=[level.pk]))
    assert page.status_code == 200
    assert 'name="default_impact"' in page.content.decode()
    data = {
        "name": level.name,
        "definition": level.definition,
        "business_impact": level.business_impact,
        "examples": level.examples,
        "response_target": "04:00:00",
        "resolution_target": "1 00:00:00",
        "notification_channels": ", ".join(level.notification_channels),
        "default_impact": "low",
        "default_urgency": "high",
        "_save": "Save",
    }

    response = client.post(reverse("admin:incidents_severitylevel_change", args=[level.pk]), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    level.refresh_from_db()
    assert (level.default_impact, level.default_urgency) == ("low", "high")
    record = level.history.latest("history_id")
    assert record.history_user == superuser
    assert "default_impact" in record.history_change_reason


def test_the_incident_policy_is_edited_in_the_admin_and_audited(client, superuser):
    client.force_login(superuser)
    policy = IncidentPolicy.objects.get()
    change = reverse("admin:incidents_incidentpolicy_change", args=[policy.pk])
    assert client.get(change).status_code == 200

    response = client.post(
        change,
        {
            "declarer_is_incident_manager": "on",
            "acknowledger_takes_role": "on",
            "severity_reason": "always",
            "priority_tolerance": "2",
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.severity_reason, policy.priority_tolerance) == ("always", 2)
    record = policy.history.latest("history_id")
    assert record.history_user == superuser
    assert "priority_tolerance" in record.history_change_reason


def test_a_viewer_cannot_change_the_incident_policy(client, viewer):
    client.force_login(viewer)
    policy = IncidentPolicy.objects.get()
    response = client.post(
        reverse("admin:incidents_incidentpolicy_change", args=[policy.pk]),
        {"severity_reason": "never", "priority_tolerance": "3", "_save": "Save"},
    )
    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.severity_reason == "drops"


# --- a new incident -------------------------------------------------------------------------------


def test_a_new_sev1_in_the_admin_is_p1_when_impact_and_urgency_are_left_to_it(
    client, incident_manager
):
    client.force_login(incident_manager)
    page = client.get(url("add"))
    assert "From the severity" in page.content.decode()

    response = client.post(
        url("add"),
        add_form_data(client, title="Checkout down", severity="1", impact="", urgency=""),
    )

    assert response.status_code == 302
    incident = Incident.objects.get(title="Checkout down")
    assert (incident.impact, incident.urgency, incident.priority) == ("high", "high", 1)
    created = incident.timeline.get(kind=Kind.CREATED)
    assert "Sev 1 (Critical), P1" in created.message


@pytest.mark.parametrize(("severity", "priority"), [(1, 1), (2, 2), (3, 3), (4, 4)])
def test_the_api_defaults_impact_and_urgency_from_the_severity(
    api_as, incident_manager, severity, priority
):
    response = api_as(incident_manager).post(
        INCIDENTS, {"title": "Checkout slow", "severity": severity}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["priority"] == priority


def test_a_sev1_at_p4_is_refused_by_the_api_without_a_reason_and_nothing_is_saved(
    api_as, incident_manager
):
    response = api_as(incident_manager).post(
        INCIDENTS,
        {"title": "Checkout down", "severity": 1, "impact": "low", "urgency": "low"},
        format="json",
    )

    assert response.status_code == 400
    body = response.json()
    message = " ".join(body["errors"]["priority_reason"])
    assert "Sev 1 (Critical) goes with P1" in message and "gives P4" in message
    assert not Incident.objects.exists()
    assert not TimelineEntry.objects.exists()


def test_a_sev1_at_p3_confirmed_with_a_reason_is_logged_with_the_reason(api_as, incident_manager):
    response = api_as(incident_manager).post(
        INCIDENTS,
        {
            "title": "Internal wiki down",
            "severity": 1,
            "impact": "medium",
            "urgency": "medium",
            "priority_reason": "Only the internal wiki; customers are not affected.",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    incident = Incident.objects.get(number=response.json()["id"])
    assert incident.priority == 3
    created = incident.timeline.get(kind=Kind.CREATED)
    assert created.actor == incident_manager
    assert "Priority P3 confirmed: Only the internal wiki" in created.message
    assert created.data["priority_reason"].startswith("Only the internal wiki")


def test_within_the_tolerance_no_reason_is_asked(api_as, incident_manager):
    response = api_as(incident_manager).post(
        INCIDENTS,
        {"title": "Search slow", "severity": 1, "impact": "high", "urgency": "medium"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["priority"] == 2


def test_the_tolerance_is_policy(api_as, incident_manager):
    IncidentPolicy.objects.filter(pk=1).update(priority_tolerance=3)
    response = api_as(incident_manager).post(
        INCIDENTS,
        {"title": "Checkout down", "severity": 1, "impact": "low", "urgency": "low"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["priority"] == 4


def test_vigil_itself_is_not_asked_to_confirm(make_incident):
    incident = make_incident(severity=1, impact="medium", urgency="medium")
    assert incident.priority == 3


def test_the_admin_asks_for_the_reason_on_the_form_and_saves_nothing(client, incident_manager):
    client.force_login(incident_manager)

    response = client.post(
        url("add"),
        add_form_data(client, title="Checkout down", severity="1", impact="low", urgency="medium"),
    )

    assert response.status_code == 200
    assert "goes with P1" in form_errors(response, "priority_reason")
    assert not Incident.objects.exists()

    response = client.post(
        url("add"),
        add_form_data(
            client,
            title="Checkout down",
            severity="1",
            impact="low",
            urgency="medium",
            priority_reason="Only the staff checkout.",
        ),
    )
    assert response.status_code == 302
    assert Incident.objects.get().priority == 4


# --- changes --------------------------------------------------------------------------------------


def create_sev(api, severity: int, **fields) -> Incident:
    response = api.post(
        INCIDENTS, {"title": "Checkout slow", "severity": severity, **fields}, format="json"
    )
    assert response.status_code == 201, response.json()
    return Incident.objects.get(number=response.json()["id"])


def test_lowering_a_sev1s_urgency_to_p3_needs_a_reason(api_as, incident_manager):
    api = api_as(incident_manager)
    incident = create_sev(api, 1)

    refused = api.patch(f"{INCIDENTS}{incident.number}/", {"urgency": "low"}, format="json")

    assert refused.status_code == 400
    assert "priority_reason" in refused.json()["errors"]
    incident.refresh_from_db()
    assert (incident.urgency, incident.priority) == ("high", 1)
    assert not incident.timeline.filter(kind__in=[Kind.PRIORITY, Kind.UPDATE]).exists()
    assert incident.history.count() == 1

    response = api.patch(
        f"{INCIDENTS}{incident.number}/",
        {"urgency": "low", "priority_reason": "A workaround is in place."},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["priority"] == 3
    entry = incident.timeline.get(kind=Kind.PRIORITY)
    assert (entry.actor, entry.source, entry.data["from"], entry.data["to"]) == (
        incident_manager,
        Source.API,
        1,
        3,
    )
    assert entry.message.startswith("Priority changed P1 → P3")
    assert entry.data["reason"] == "A workaround is in place."
    assert "Reason: A workaround is in place." in entry.message


def test_the_admin_change_form_asks_for_the_priority_reason(client, incident_manager, api_as):
    incident = create_sev(api_as(incident_manager), 1)
    client.force_login(incident_manager)

    response = client.post(
        url("change", incident.pk), change_form_data(client, incident, urgency="low")
    )

    assert response.status_code == 200
    assert "goes with P1" in form_errors(response, "priority_reason")
    incident.refresh_from_db()
    assert incident.priority == 1

    response = client.post(
        url("change", incident.pk),
        change_form_data(client, incident, urgency="low", priority_reason="Workaround live."),
    )
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.priority == 3
    entry = incident.timeline.get(kind=Kind.PRIORITY)
    assert (entry.actor, entry.source) == (incident_manager, Source.ADMIN)
    assert "P1 → P3" in entry.message and "Workaround live." in entry.message


def test_defaults_follow_a_raised_severity_and_the_priority_with_them(api_as, incident_manager):
    api = api_as(incident_manager)
    incident = create_sev(api, 3)

    response = api.patch(f"{INCIDENTS}{incident.number}/", {"severity": 1}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["impact"], body["urgency"], body["priority"]) == ("high", "high", 1)
    entry = incident.timeline.get(kind=Kind.PRIORITY)
    assert (entry.data["from"], entry.data["to"], entry.actor) == (3, 1, incident_manager)
    assert "follow Sev 1" in entry.message


def test_impact_and_urgency_given_with_a_new_severity_are_kept(api_as, incident_manager):
    api = api_as(incident_manager)
    incident = create_sev(api, 3, impact="low", urgency="medium")

    response = api.patch(
        f"{INCIDENTS}{incident.number}/",
        {
            "severity": 1,
            "impact": "medium",
            "urgency": "medium",
            "priority_reason": "Exposure only, no outage.",
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["impact"], body["urgency"], body["priority"]) == ("medium", "medium", 3)


def test_a_raise_that_leaves_a_hand_set_priority_behind_needs_a_reason(api_as, incident_manager):
    api = api_as(incident_manager)
    incident = create_sev(api, 3, impact="low", urgency="medium")  # P4, within Sev 3's reach

    refused = api.patch(f"{INCIDENTS}{incident.number}/", {"severity": 1}, format="json")

    assert refused.status_code == 400
    assert "gives P4" in " ".join(refused.json()["errors"]["priority_reason"])
    incident.refresh_from_db()
    assert (incident.severity_id, incident.priority) == (3, 4)
    assert not incident.timeline.filter(kind=Kind.SEVERITY).exists()

    # The same edit with matching impact and urgency needs no reason.
    response = api.patch(
        f"{INCIDENTS}{incident.number}/",
        {"severity": 1, "impact": "high", "urgency": "high"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["priority"] == 1


def test_a_raise_confirmed_with_a_reason_keeps_the_priority_on_the_timeline(
    api_as, incident_manager
):
    api = api_as(incident_manager)
    incident = create_sev(api, 3, impact="low", urgency="medium")

    response = api.patch(
        f"{INCIDENTS}{incident.number}/",
        {"severity": 1, "priority_reason": "Security exposure, no user impact yet."},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["severity"], response.json()["priority"]) == (1, 4)
    entry = incident.timeline.get(kind=Kind.PRIORITY)
    assert entry.message == ("Priority P4 kept at Sev 1: Security exposure, no user impact yet.")
