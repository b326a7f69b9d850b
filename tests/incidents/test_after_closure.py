"""What may change once an incident is resolved, closed or cancelled, and the SLA results
that no edit may rewrite: stopped clocks are never recomputed, recorded breaches are kept.

Through the API (PATCH of the incident and its roles) and the admin's change form, both of
which go through ``incident_edit``; the rule itself lives in the services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from incidents.models import Incident, Kind, SlaBreach, Source, TimelineEntry
from incidents.services import (
    incident_acknowledge,
    incident_close,
    incident_create,
    incident_investigate,
    incident_reopen,
    incident_resolve,
    incident_role_assign,
    sla_breaches_record,
)
from tests.factories import IncidentFactory
from tests.incidents.test_admin import change_form_data

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=2)
REPORT = {
    "summary": "Checkout failed for every customer.",
    "business_impact": "About 400 orders lost.",
    "root_cause": "An expired certificate.",
    "resolution": "Renewed the certificate.",
}


def at(**delta) -> datetime:
    return T0 + timedelta(**delta)


def act(when: datetime, service, incident: Incident, **kwargs) -> Incident:
    with time_machine.travel(when, tick=False):
        return service(incident=incident, actor=None, source=Source.SYSTEM, **kwargs)


def sweep(when: datetime) -> int:
    with time_machine.travel(when, tick=False):
        return sla_breaches_record()


def create(severity: int = 1, **kwargs) -> Incident:
    with time_machine.travel(T0, tick=False):
        return incident_create(
            actor=None, source=Source.SYSTEM, title="Checkout down", severity=severity, **kwargs
        )


def closed_with_a_late_response() -> Incident:
    """Sev 1 detected at T0 (response due 09:15): the sweep records the response breach at
    09:16, acknowledged at 09:20, resolved at 11:00, closed the next day."""
    incident = create(1, **REPORT)
    assert sweep(at(minutes=16)) == 1
    incident = act(at(minutes=20), incident_acknowledge, incident)
    incident = act(at(hours=2), incident_resolve, incident)
    return act(at(days=1), incident_close, incident)


def resolved() -> Incident:
    incident = create(2, **REPORT)
    incident = act(at(minutes=10), incident_acknowledge, incident)
    return act(at(hours=3), incident_resolve, incident)


def stored(incident: Incident) -> dict:
    return Incident.objects.filter(pk=incident.pk).values().get()


def patch(client, incident: Incident, body: dict, when: datetime = LATER):
    with time_machine.travel(when, tick=False):
        return client.patch(f"/api/v1/incidents/{incident.number}/", body, format="json")


def read(client, incident: Incident, when: datetime = LATER) -> dict:
    with time_machine.travel(when, tick=False):
        response = client.get(f"/api/v1/incidents/{incident.number}/")
    assert response.status_code == 200
    return response.json()


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --- the probe: a closed incident's detection time -------------------------------------------


def test_liaison_cannot_turn_a_breached_response_into_a_met_one(api_as, business_liaison):
    incident = closed_with_a_late_response()
    client = api_as(business_liaison)
    assert read(client, incident)["sla"]["response_breached"] is True
    before = stored(incident)

    # Detected at 09:10 would put the response due at 09:25, after the 09:20 acknowledgement.
    response = patch(client, incident, {"detected_at": iso(at(minutes=10))})

    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid_input"
    assert list(body["errors"]) == ["detected_at"]
    assert "closed" in body["errors"]["detected_at"][0]
    assert stored(incident) == before
    assert SlaBreach.objects.filter(incident=incident, target="response").count() == 1
    sla = read(client, incident)["sla"]
    assert (sla["response_due"], sla["response_breached"]) == (iso(at(minutes=15)), True)


@pytest.mark.parametrize(
    "body",
    [
        {"detected_at": iso(at(minutes=10))},
        {"impact_started_at": iso(at(minutes=-10))},
        {"severity": 3},
    ],
)
def test_timing_facts_of_a_closed_incident_are_refused_even_to_its_manager(
    api_as, incident_manager, body
):
    incident = closed_with_a_late_response()
    before = stored(incident)

    response = patch(
        api_as(incident_manager), incident, {**body, "correction_reason": "Typed it wrong."}
    )

    assert response.status_code == 400, response.json()
    field = next(iter(body))
    assert field in response.json()["errors"]
    assert stored(incident) == before


# --- resolved, not closed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"detected_at": iso(at(minutes=5))}, "detected_at"),
        ({"impact_started_at": iso(at(minutes=-5))}, "impact_started_at"),
        ({"severity": 1, "severity_reason": "Worse than we thought."}, "severity"),
    ],
)
def test_a_resolved_incident_keeps_its_timing_facts(api_as, incident_manager, body, field):
    incident = resolved()
    before = stored(incident)

    response = patch(api_as(incident_manager), incident, body)

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == [field]
    assert "resolved" in response.json()["errors"][field][0]
    assert stored(incident) == before


@pytest.mark.parametrize(
    "role", ["incident_manager", "technical_lead", "communications_lead", "business_liaison"]
)
def test_a_resolved_incident_report_can_still_be_completed(api_as, request, role):
    incident = resolved()
    user = request.getfixturevalue(role)

    response = patch(
        api_as(user),
        incident,
        {"lessons_learned": "Alert on certificate expiry.", "affected_users": 1200},
    )

    assert response.status_code == 200, response.json()
    incident.refresh_from_db()
    assert (incident.lessons_learned, incident.affected_users) == (
        "Alert on certificate expiry.",
        1200,
    )


def test_a_resolved_incident_still_takes_role_assignments(api_as, incident_manager):
    incident = resolved()
    response = api_as(incident_manager).patch(
        f"/api/v1/incidents/{incident.number}/roles/", {"incident_manager": "im"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["incident_manager"]["username"] == "im"


# --- closed: corrections by the incident manager, with a reason ---------------------------------


@pytest.mark.parametrize("role", ["technical_lead", "communications_lead", "business_liaison"])
def test_only_the_incident_manager_corrects_a_closed_report(api_as, request, role):
    incident = closed_with_a_late_response()
    before = stored(incident)

    response = patch(
        api_as(request.getfixturevalue(role)),
        incident,
        {"root_cause": "Something else.", "correction_reason": "Review found more."},
    )

    assert response.status_code == 403, response.json()
    body = response.json()
    assert body["code"] == "action_forbidden"
    assert "root cause" in body["detail"] and "closed" in body["detail"]
    assert stored(incident) == before


def test_a_correction_of_a_closed_incident_needs_a_reason(api_as, incident_manager):
    incident = closed_with_a_late_response()
    before = stored(incident)

    response = patch(api_as(incident_manager), incident, {"root_cause": "Something else."})

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == ["correction_reason"]
    assert stored(incident) == before


def test_the_incident_manager_corrects_a_closed_report_on_the_timeline(api_as, incident_manager):
    incident = closed_with_a_late_response()
    entries_before = set(incident.timeline.values_list("pk", flat=True))

    response = patch(
        api_as(incident_manager),
        incident,
        {
            "root_cause": "A certificate renewal job that had silently failed for 3 months.",
            "lessons_learned": "Alert when the renewal job fails.",
            "correction_reason": "The post-incident review found the real cause.",
        },
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["root_cause"].startswith("A certificate renewal job")
    assert body["status"] == "closed"
    assert body["sla"]["response_breached"] is True
    new = incident.timeline.exclude(pk__in=entries_before)
    entry = new.get(kind=Kind.UPDATE)
    assert (entry.actor, entry.source) == (incident_manager, Source.API)
    assert "The post-incident review found the real cause." in entry.message
    assert entry.data["reason"] == "The post-incident review found the real cause."
    assert entry.data["fields"] == ["root_cause", "lessons_learned"]
    record = Incident.objects.get(pk=incident.pk).history.latest()
    assert record.history_user == incident_manager
    assert "The post-incident review" in record.history_change_reason


@pytest.mark.parametrize(
    "body",
    [
        {"title": "Renamed"},
        {"services": ["checkout"]},
        {"impact": "low"},
        {"customer_facing": True},
        {"detection_source": "customer_report"},
    ],
)
def test_a_closed_incident_corrects_only_its_report(api_as, incident_manager, service, body):
    incident = closed_with_a_late_response()
    before = stored(incident)

    response = patch(
        api_as(incident_manager), incident, {**body, "correction_reason": "Tidying up."}
    )

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == list(body)
    assert stored(incident) == before


def test_a_correction_cannot_blank_what_closing_required(api_as, incident_manager):
    incident = closed_with_a_late_response()
    response = patch(
        api_as(incident_manager), incident, {"summary": "", "correction_reason": "Oops."}
    )
    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == ["summary"]
    assert Incident.objects.get(pk=incident.pk).summary == REPORT["summary"]


def test_a_cancelled_incident_is_corrected_like_a_closed_one(
    api_as, incident_manager, business_liaison
):
    incident = IncidentFactory(status="cancelled")

    refused = patch(api_as(business_liaison), incident, {"summary": "Not a false alarm?"})
    assert refused.status_code == 403, refused.json()
    allowed = patch(
        api_as(incident_manager),
        incident,
        {"summary": "A test page sent by mistake.", "correction_reason": "Clearer summary."},
    )
    assert allowed.status_code == 200, allowed.json()
    assert allowed.json()["summary"] == "A test page sent by mistake."


def test_unchanged_values_on_a_closed_incident_change_nothing(api_as, business_liaison):
    incident = closed_with_a_late_response()
    before = (stored(incident), incident.timeline.count())
    response = patch(api_as(business_liaison), incident, {"root_cause": REPORT["root_cause"]})
    assert response.status_code == 200, response.json()
    assert (stored(incident), incident.timeline.count()) == before


@pytest.mark.parametrize("status", ["closed", "cancelled"])
def test_role_assignments_of_a_closed_incident_no_longer_change(
    api_as, incident_manager, technical_lead, status
):
    incident = IncidentFactory(status=status)
    incident_count = incident.timeline.count()

    client = api_as(incident_manager)
    for method in (client.patch, client.put):
        response = method(
            f"/api/v1/incidents/{incident.number}/roles/",
            {"technical_lead": technical_lead.username},
            format="json",
        )
        assert response.status_code == 400, response.json()
        assert status in response.json()["errors"]["role"][0]
    assert not incident.role_assignments.exists()
    assert incident.timeline.count() == incident_count


def test_unassigning_a_role_of_a_closed_incident_is_refused(
    api_as, incident_manager, technical_lead
):
    incident = resolved()
    incident_role_assign(
        incident=incident,
        role="technical_lead",
        user=technical_lead,
        actor=None,
        source=Source.SYSTEM,
    )
    incident = act(at(days=1), incident_close, incident)

    response = api_as(incident_manager).put(
        f"/api/v1/incidents/{incident.number}/roles/", {}, format="json"
    )

    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == ["role"]
    assert incident.role_assignments.get().user == technical_lead


# --- stopped clocks are never recomputed, recorded breaches are kept -----------------------------


def test_correcting_detection_while_active_leaves_a_stopped_response_clock(
    api_as, incident_manager
):
    incident = create(1)
    incident = act(at(minutes=20), incident_acknowledge, incident)  # 5 minutes late
    incident = act(at(minutes=25), incident_investigate, incident)
    client = api_as(incident_manager)

    response = patch(client, incident, {"detected_at": iso(at(minutes=10))}, when=at(minutes=30))

    assert response.status_code == 200, response.json()
    sla = response.json()["sla"]
    # The response clock stopped at 09:20 with its due time 09:15; the resolution clock runs
    # and follows the corrected detection time.
    assert (sla["response_due"], sla["response_breached"]) == (iso(at(minutes=15)), True)
    assert sla["resolution_due"] == iso(at(hours=4, minutes=10))


def test_lowering_severity_after_a_recorded_breach_keeps_the_breach(api_as, incident_manager):
    incident = create(1)
    assert sweep(at(minutes=16)) == 1
    client = api_as(incident_manager)

    response = patch(
        client, incident, {"severity": 3, "severity_reason": "Only a few users."}, at(minutes=20)
    )

    assert response.status_code == 200, response.json()
    sla = response.json()["sla"]
    assert sla["response_due"] == iso(at(hours=4))  # the running clock moved ...
    assert sla["response_breached"] is True  # ... but the recorded breach stays
    assert read(client, incident, at(minutes=21))["sla"]["response_breached"] is True
    assert Incident.objects.filter(pk=incident.pk).breached(at(minutes=21)).exists()
    assert SlaBreach.objects.filter(incident=incident).count() == 1


def test_a_severity_change_records_a_breach_the_sweep_has_not_noted_yet(api_as, incident_manager):
    incident = create(1)  # response due 09:15; no sweep has run since

    response = patch(
        api_as(incident_manager),
        incident,
        {"severity": 4, "severity_reason": "A test system."},
        when=at(minutes=17),
    )

    assert response.status_code == 200, response.json()
    assert response.json()["sla"]["response_breached"] is True
    breach = SlaBreach.objects.get(incident=incident)
    assert (breach.target, breach.due_at, breach.noted_at) == (
        "response",
        at(minutes=15),
        at(minutes=17),
    )
    assert incident.timeline.filter(kind=Kind.SLA).count() == 1


def test_a_late_resolution_survives_reopening_and_a_lower_severity(api_as, incident_manager):
    incident = create(1, resolution="Restarted.")
    incident = act(at(minutes=5), incident_acknowledge, incident)
    incident = act(at(hours=5), incident_resolve, incident)  # resolution due 13:00: late
    incident = act(at(hours=5, minutes=10), incident_reopen, incident, reason="Back again.")

    response = patch(
        api_as(incident_manager),
        incident,
        {"severity": 3, "severity_reason": "Workaround holds."},
        when=at(hours=5, minutes=20),
    )

    assert response.status_code == 200, response.json()
    sla = response.json()["sla"]
    assert sla["resolution_due"] == iso(at(hours=24))
    assert sla["resolution_breached"] is True
    assert SlaBreach.objects.filter(incident=incident, target="resolution").get().due_at == at(
        hours=4
    )


def test_reopening_restarts_the_resolution_clock_against_its_due_time():
    incident = create(1, resolution="Restarted.")
    incident = act(at(minutes=5), incident_acknowledge, incident)
    incident = act(at(hours=2), incident_resolve, incident)  # on time
    assert not incident.resolution_breached_at(at(hours=2, minutes=30))
    incident = act(at(hours=3), incident_reopen, incident, reason="Back again.")

    assert incident.resolution_due_at == at(hours=4)
    assert sweep(at(hours=4, minutes=1)) == 1
    assert incident.resolution_breached_at(at(hours=4, minutes=1))
    incident = act(at(hours=6), incident_resolve, Incident.objects.get(pk=incident.pk))
    assert incident.resolution_breached_at(at(days=3))


# --- the admin -----------------------------------------------------------------------------------


def url(incident: Incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


EDITABLE = (
    "title",
    "summary",
    "impact",
    "urgency",
    "detection_source",
    "services",
    "customer_facing",
    "affected_users",
    "business_impact",
    "root_cause",
    "resolution",
    "lessons_learned",
    "impact_started_at",
    "detected_at",
    "severity",
)
REPORT_FIELDS = {
    "summary",
    "business_impact",
    "root_cause",
    "resolution",
    "lessons_learned",
    "affected_users",
}


def form_fields(client, incident: Incident) -> set[str]:
    page = client.get(url(incident))
    assert page.status_code == 200
    return set(page.context["adminform"].form.fields) & set(EDITABLE)


def test_admin_resolved_incident_shows_its_timing_facts_read_only(client, incident_manager):
    incident = resolved()
    client.force_login(incident_manager)
    assert form_fields(client, incident) == set(EDITABLE) - {
        "detected_at",
        "impact_started_at",
        "severity",
    }


def test_admin_closed_incident_is_read_only_to_a_liaison(client, business_liaison):
    incident = closed_with_a_late_response()
    client.force_login(business_liaison)
    assert form_fields(client, incident) == set()
    page = client.get(url(incident))
    assert "correction_reason" not in page.context["adminform"].form.fields
    before = stored(incident)

    client.post(url(incident), change_form_data(client, incident, root_cause="Changed."))

    assert stored(incident) == before


def test_admin_incident_manager_corrects_a_closed_report_with_a_reason(client, incident_manager):
    incident = closed_with_a_late_response()
    client.force_login(incident_manager)
    assert form_fields(client, incident) == REPORT_FIELDS
    before = stored(incident)

    data = change_form_data(client, incident, root_cause="A renewal job failed silently.")
    refused = client.post(url(incident), {**data, "correction_reason": ""})
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert "reason" in str(errors["correction_reason"])
    assert stored(incident) == before

    done = client.post(url(incident), {**data, "correction_reason": "Found in the review."})
    assert done.status_code == 302
    incident.refresh_from_db()
    assert incident.root_cause == "A renewal job failed silently."
    entry = TimelineEntry.objects.filter(incident=incident, source=Source.ADMIN).get()
    assert entry.kind == Kind.UPDATE
    assert "Found in the review." in entry.message


def test_admin_keeps_showing_a_recorded_breach_after_the_due_time_moved(client, incident_manager):
    incident = create(1)
    assert sweep(at(minutes=16)) == 1
    client.force_login(incident_manager)
    with time_machine.travel(at(minutes=20), tick=False):
        data = change_form_data(
            client, incident, severity="3", severity_change_reason="Workaround holds."
        )
        assert client.post(url(incident), data).status_code == 302
        page = client.get(url(incident))
        listed = client.get(
            reverse("admin:incidents_incident_changelist") + "?breached=yes&status=all"
        )
    assert Incident.objects.get(pk=incident.pk).response_due_at == at(hours=4)
    assert "Response missed · response in" in page.content.decode()
    assert incident.number in listed.content.decode()
