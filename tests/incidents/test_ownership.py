"""Ownership by default: the declarer in the admin becomes incident manager unless one is named
(a policy switch), role pickers list the role's group first, a read-only Viewer cannot hold a
response role (admin form, incident page, API; nothing saved), and severity changes ask for a
reason as the policy says (by default when lowering)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from incidents.models import (
    Incident,
    IncidentPolicy,
    Kind,
    RoleAssignment,
    Source,
    TimelineEntry,
)
from tests.incidents.test_admin import add_form_data, change_form_data, messages_of

pytestmark = pytest.mark.django_db

INCIDENTS = "/api/v1/incidents/"


def url(name: str, *args) -> str:
    return reverse(f"admin:incidents_incident_{name}", args=args)


def holders(incident: Incident) -> dict[str, str]:
    return {
        a.role.key: a.user.username
        for a in RoleAssignment.objects.filter(incident=incident).select_related("role", "user")
    }


def declare(client, **values) -> Incident | None:
    values.setdefault("title", "Checkout down")
    values.setdefault("severity", "2")
    response = client.post(url("add"), add_form_data(client, **values))
    assert response.status_code in (200, 302)
    return Incident.objects.filter(title=values["title"]).first()


def optgroups(html: str, name: str) -> list[tuple[str, list[str]]]:
    """The option groups of the select ``name``: (label, [option texts])."""
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select, name
    return [
        (label, re.findall(r"<option[^>]*>([^<]*)</option>", body))
        for label, body in re.findall(
            r'<optgroup label="([^"]*)">(.*?)</optgroup>', select[1], re.S
        )
    ]


# --- the declarer --------------------------------------------------------------------------------


def test_whoever_declares_in_the_admin_becomes_incident_manager(client, incident_manager):
    client.force_login(incident_manager)

    incident = declare(client)

    assert holders(incident) == {"incident_manager": "im"}
    entry = incident.timeline.get(kind=Kind.ROLE)
    assert (entry.actor, entry.source) == (incident_manager, Source.ADMIN)
    assert entry.message == "Incident Manager: Im (declared the incident)."


def test_a_technical_lead_who_declares_owns_it_without_the_right_to_assign_roles(
    client, technical_lead
):
    assert not technical_lead.has_perm("incidents.assign_incident_roles")
    client.force_login(technical_lead)

    incident = declare(client)

    assert holders(incident) == {"incident_manager": "tl"}


def test_naming_an_incident_manager_on_the_form_wins(client, incident_manager, make_user):
    other = make_user("Incident Manager", username="grace")
    lead = make_user("Technical Lead", username="priya")
    client.force_login(incident_manager)

    incident = declare(
        client, role_incident_manager=str(other.pk), role_technical_lead=str(lead.pk)
    )

    assert holders(incident) == {"incident_manager": "grace", "technical_lead": "priya"}


def test_the_switch_off_leaves_the_role_empty(client, incident_manager):
    IncidentPolicy.objects.filter(pk=1).update(declarer_is_incident_manager=False)
    client.force_login(incident_manager)

    page = client.get(url("add")).content.decode()
    incident = declare(client)

    assert "— me (whoever logs the incident) —" not in page
    assert holders(incident) == {}


def test_the_api_does_not_make_its_caller_incident_manager(api_as, incident_manager):
    response = api_as(incident_manager).post(
        INCIDENTS, {"title": "Checkout down", "severity": 2}, format="json"
    )
    assert response.status_code == 201
    assert not RoleAssignment.objects.exists()


# --- the pickers ---------------------------------------------------------------------------------


def test_role_pickers_list_the_roles_group_and_everyone_else_behind_show_everyone(
    client, incident_manager, technical_lead, viewer
):
    client.force_login(incident_manager)

    page = client.get(url("add")).content.decode()

    assert "— me (whoever logs the incident) —" in page
    assert optgroups(page, "role_incident_manager") == [("In the Incident Manager group", ["Im"])]
    assert optgroups(page, "role_technical_lead") == [("In the Technical Lead group", ["Tl"])]
    assert '<a href="?everyone=1">Show everyone</a>' in page
    # A role whose group has no members offers everyone who may hold a role, never a Viewer.
    assert optgroups(page, "role_business_liaison") == [("Everyone", ["Im", "Tl"])]

    page = client.get(url("add") + "?everyone=1").content.decode()

    assert optgroups(page, "role_incident_manager") == [
        ("In the Incident Manager group", ["Im"]),
        ("Everyone else", ["Tl"]),
    ]
    assert optgroups(page, "role_technical_lead") == [
        ("In the Technical Lead group", ["Tl"]),
        ("Everyone else", ["Im"]),
    ]
    assert "Viewer" not in "".join(str(g) for g in optgroups(page, "role_business_liaison"))


def test_someone_outside_the_roles_group_is_accepted_from_the_add_form(
    client, incident_manager, technical_lead
):
    client.force_login(incident_manager)

    incident = declare(client, title="Search down", role_technical_lead=str(incident_manager.pk))

    assert incident is not None
    assert holders(incident)["technical_lead"] == "im"


def test_the_incident_pages_pickers_show_everyone_when_asked(
    client, incident_manager, technical_lead
):
    client.force_login(incident_manager)
    incident = declare(client, title="Payments slow")
    change = url("change", incident.pk)

    def picker(html: str) -> list[tuple[str, list[str]]]:
        select = re.search(
            r'<select name="user" aria-label="Technical Lead">(.*?)</select>', html, re.S
        )
        assert select
        return [
            (label, re.findall(r"<option[^>]*>([^<]*)</option>", body))
            for label, body in re.findall(
                r'<optgroup label="([^"]*)">(.*?)</optgroup>', select[1], re.S
            )
        ]

    page = client.get(change).content.decode()
    assert picker(page) == [("In the Technical Lead group", ["Tl"])]
    assert "Show everyone (1 more)" in page

    page = client.get(change + "?everyone=1").content.decode()
    assert picker(page) == [("In the Technical Lead group", ["Tl"]), ("Everyone else", ["Im"])]
    assert "Show everyone (" not in page


# --- viewers are refused -------------------------------------------------------------------------


def test_a_viewer_named_on_the_add_form_is_refused_and_nothing_is_saved(
    client, incident_manager, viewer
):
    client.force_login(incident_manager)

    response = client.post(
        url("add"),
        add_form_data(
            client, title="Checkout down", severity="2", role_technical_lead=str(viewer.pk)
        ),
    )

    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["role_technical_lead"])
    assert "read-only access (a Viewer)" in errors and "Technical Lead" in errors
    assert not Incident.objects.exists()
    assert not TimelineEntry.objects.exists()


def test_a_viewer_assigned_on_the_incident_page_is_refused(client, incident_manager, viewer):
    incident = declare_by_api_as(incident_manager)
    client.force_login(incident_manager)

    response = client.post(
        url("role", incident.pk), {"role": "technical_lead", "user": str(viewer.pk)}
    )

    assert response.status_code == 302
    assert any("read-only access (a Viewer)" in m for m in messages_of(response))
    assert not RoleAssignment.objects.filter(incident=incident).exists()
    assert not incident.timeline.filter(kind=Kind.ROLE).exists()


def test_a_viewer_assigned_through_the_api_is_refused(api_as, incident_manager, viewer):
    api = api_as(incident_manager)
    incident = declare_by_api_as(incident_manager)

    put = api.put(
        f"{INCIDENTS}{incident.number}/roles/",
        {"incident_manager": "im", "technical_lead": "viewer"},
        format="json",
    )
    create = api.post(
        INCIDENTS,
        {"title": "Another", "severity": 2, "roles": {"technical_lead": "viewer"}},
        format="json",
    )

    assert put.status_code == 400
    assert "read-only access (a Viewer)" in str(put.json())
    assert not RoleAssignment.objects.filter(incident=incident).exists()
    assert create.status_code == 400
    assert "read-only access (a Viewer)" in str(create.json()["errors"]["roles"])
    assert not Incident.objects.filter(title="Another").exists()


def declare_by_api_as(user) -> Incident:
    from incidents.services import incident_create

    return incident_create(actor=user, source=Source.API, title="Checkout down", severity=2)


# --- a reason for severity changes ---------------------------------------------------------------


def test_lowering_the_severity_in_the_admin_asks_for_a_reason(client, incident_manager):
    incident = declare_by_api_as(incident_manager)
    client.force_login(incident_manager)

    response = client.post(
        url("change", incident.pk), change_form_data(client, incident, severity="3")
    )

    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["severity_change_reason"])
    assert "Give a reason for lowering the severity from Sev 2 to Sev 3" in errors
    incident.refresh_from_db()
    assert incident.severity_id == 2
    assert not incident.timeline.filter(kind=Kind.SEVERITY).exists()

    response = client.post(
        url("change", incident.pk),
        change_form_data(
            client, incident, severity="3", severity_change_reason="Only one region affected."
        ),
    )
    assert response.status_code == 302
    entry = incident.timeline.get(kind=Kind.SEVERITY)
    assert (entry.actor, entry.data["reason"]) == (incident_manager, "Only one region affected.")
    assert entry.message.startswith("Severity lowered: Sev 2 → Sev 3")
    assert "Reason: Only one region affected." in entry.message


def test_raising_needs_no_reason_by_default(api_as, incident_manager):
    incident = declare_by_api_as(incident_manager)
    response = api_as(incident_manager).patch(
        f"{INCIDENTS}{incident.number}/", {"severity": 1}, format="json"
    )
    assert response.status_code == 200, response.json()


def test_the_policy_can_ask_for_every_change_or_none(api_as, incident_manager):
    api = api_as(incident_manager)
    incident = declare_by_api_as(incident_manager)

    IncidentPolicy.objects.filter(pk=1).update(severity_reason="always")
    raised = api.patch(f"{INCIDENTS}{incident.number}/", {"severity": 1}, format="json")
    assert raised.status_code == 400
    assert "Give a reason for changing" in str(raised.json()["errors"]["severity_reason"])

    IncidentPolicy.objects.filter(pk=1).update(severity_reason="never")
    lowered = api.patch(f"{INCIDENTS}{incident.number}/", {"severity": 4}, format="json")
    assert lowered.status_code == 200, lowered.json()


def test_lowering_through_the_api_without_a_reason_saves_nothing(api_as, incident_manager):
    incident = declare_by_api_as(incident_manager)
    response = api_as(incident_manager).patch(
        f"{INCIDENTS}{incident.number}/", {"severity": 4, "title": "Renamed"}, format="json"
    )
    assert response.status_code == 400
    incident.refresh_from_db()
    assert (incident.severity_id, incident.title) == (2, "Checkout down")
