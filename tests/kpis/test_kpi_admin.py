"""The KPI definitions and the KPI policy in the admin: the list, edits audited with a history
row naming the author, validation with clear form errors (nothing saved), and the stored months
marked stale when what they were computed from changed."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine

from kpis.models import KpiDefinition, KpiMonth, KpiPolicy

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LIST = "/admin/kpis/kpidefinition/"
POLICY = "/admin/kpis/kpipolicy/1/change/"


@pytest.fixture(autouse=True)
def now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def months():
    for month in (date(2026, 9, 1), date(2026, 10, 1)):
        KpiMonth.objects.create(month=month, stale=False, computed_at=NOW, summary={})


def stale_months() -> list[date]:
    return list(
        KpiMonth.objects.filter(stale=True).order_by("month").values_list("month", flat=True)
    )


def definition_form(definition: KpiDefinition, **changes) -> dict:
    data = {
        "name": definition.name,
        "measure": definition.measure,
        "is_active": "on" if definition.is_active else "",
        "position": definition.position,
        "statistic": definition.statistic,
        "target": str(definition.target),
        "severities": [str(level) for level in definition.severities],
        "description": definition.description,
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value not in ("", None)}


def policy_form(**changes) -> dict:
    policy = KpiPolicy.objects.get(pk=1)
    data = {
        "first_contact_rule": policy.first_contact_rule,
        "time_zone": policy.time_zone,
        "report_recipients": policy.report_recipients,
        "survey_enabled": "on" if policy.survey_enabled else "",
        "survey_expiry_days": policy.survey_expiry_days,
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value not in ("", None)}


def change_url(definition: KpiDefinition) -> str:
    return f"{LIST}{definition.pk}/change/"


def test_the_list_shows_each_kpi_with_its_target_and_scope(client, viewer):
    client.force_login(viewer)
    response = client.get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("Time to respond", "≤ 15 min", "≤ 4 h", "≥ 80 %", "≥ 4.0 / 5", "Sev 1", "All"):
        assert text in html, text
    assert "/admin/kpis/kpidefinition/dashboard/" in html  # the dashboard's link
    # A viewer reads, never writes.
    respond = KpiDefinition.objects.get(slug="time-to-respond")
    response = client.post(change_url(respond), definition_form(respond, target="10"))
    assert response.status_code == 403
    assert KpiDefinition.objects.get(pk=respond.pk).target == 15


def test_an_edit_is_audited_and_marks_every_stored_month_stale(client, incident_manager, months):
    respond = KpiDefinition.objects.get(slug="time-to-respond")
    client.force_login(incident_manager)
    response = client.post(
        change_url(respond), definition_form(respond, target="10", severities=["1", "2"])
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    respond.refresh_from_db()
    assert respond.target == 10 and respond.severities == [1, 2]
    latest = respond.history.latest()
    assert latest.history_user == incident_manager and latest.target == 10
    assert stale_months() == [date(2026, 9, 1), date(2026, 10, 1)]
    assert client.get(f"{change_url(respond).replace('change/', 'history/')}").status_code == 200


def test_a_new_name_alone_leaves_the_stored_months_alone(client, incident_manager, months):
    respond = KpiDefinition.objects.get(slug="time-to-respond")
    client.force_login(incident_manager)
    response = client.post(change_url(respond), definition_form(respond, name="Respond time"))
    assert response.status_code == 302
    assert KpiDefinition.objects.get(pk=respond.pk).name == "Respond time"
    assert stale_months() == []


@pytest.mark.parametrize(
    ("slug", "changes", "field", "message"),
    [
        ("first-contact-resolution", {"target": "120"}, "target", "percentage (1 to 100)"),
        ("customer-satisfaction", {"target": "6"}, "target", "score from 1 to 5"),
        ("customer-satisfaction", {"target": "0.5"}, "target", "score from 1 to 5"),
        ("time-to-respond", {"target": "0"}, "target", "greater than zero"),
        ("time-to-respond", {"severities": ["9"]}, "severities", "Select a valid choice"),
        # Changing the measure re-judges the target: 240 minutes is no satisfaction score.
        ("time-to-resolve-sev1", {"measure": "satisfaction"}, "target", "score from 1 to 5"),
    ],
)
def test_a_definition_that_does_not_make_sense_is_refused(
    client, incident_manager, months, slug, changes, field, message
):
    definition = KpiDefinition.objects.get(slug=slug)
    before = definition.history.count()
    client.force_login(incident_manager)
    response = client.post(change_url(definition), definition_form(definition, **changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert message in response.content.decode()
    after = KpiDefinition.objects.get(pk=definition.pk)
    assert (after.target, after.severities, after.measure) == (
        definition.target,
        definition.severities,
        definition.measure,
    )
    assert definition.history.count() == before
    assert stale_months() == []


def test_a_new_definition_is_added_and_cannot_be_deleted(client, incident_manager, months):
    client.force_login(incident_manager)
    response = client.post(
        f"{LIST}add/",
        {
            "name": "Time to resolve (Sev 2)",
            "slug": "time-to-resolve-sev2",
            "measure": "resolve",
            "is_active": "on",
            "position": 25,
            "statistic": "p90",
            "target": "480",
            "severities": ["2"],
        },
    )
    assert response.status_code == 302
    added = KpiDefinition.objects.get(slug="time-to-resolve-sev2")
    assert added.history.latest().history_user == incident_manager
    assert stale_months() == [date(2026, 9, 1), date(2026, 10, 1)]
    assert client.get(f"{LIST}{added.pk}/delete/").status_code == 403


# ----- the policy -------------------------------------------------------------------------------


def test_the_policy_is_one_row_changed_never_added_or_deleted(client, incident_manager):
    client.force_login(incident_manager)
    response = client.get("/admin/kpis/kpipolicy/")
    assert response.status_code == 302 and response["Location"] == POLICY
    assert client.get("/admin/kpis/kpipolicy/add/").status_code == 403
    assert client.get("/admin/kpis/kpipolicy/1/delete/").status_code == 403
    assert client.get(POLICY).status_code == 200


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone", "is not a time zone"),
        ({"time_zone": "../etc/passwd"}, "time_zone", "is not a time zone"),
        (
            {"report_recipients": "cto@example.com\nnot an address\n"},
            "report_recipients",
            "Not an e-mail address: not an address.",
        ),
        (
            {"report_recipients": "a@example.com, b@example.com"},
            "report_recipients",
            "Give one address per line",
        ),
    ],
)
def test_policy_validation(client, incident_manager, months, changes, field, message):
    before = KpiPolicy.objects.get(pk=1)
    client.force_login(incident_manager)
    response = client.post(POLICY, policy_form(**changes))
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    after = KpiPolicy.objects.get(pk=1)
    assert (after.time_zone, after.report_recipients) == (
        before.time_zone,
        before.report_recipients,
    )
    assert stale_months() == []


def test_a_new_time_zone_is_audited_and_marks_the_months_stale(client, incident_manager, months):
    client.force_login(incident_manager)
    response = client.post(
        POLICY,
        policy_form(
            time_zone="Europe/Paris",
            report_recipients=" cto@example.com \n\nops@example.com\nCTO@example.com\n",
        ),
    )
    assert response.status_code == 302
    policy = KpiPolicy.objects.get(pk=1)
    assert policy.time_zone == "Europe/Paris"
    assert policy.report_recipients == "cto@example.com\nops@example.com"
    assert policy.history.latest().history_user == incident_manager
    assert stale_months() == [date(2026, 9, 1), date(2026, 10, 1)]


def test_the_survey_settings_alone_leave_the_months_alone(client, incident_manager, months):
    client.force_login(incident_manager)
    response = client.post(POLICY, policy_form(survey_expiry_days=30))
    assert response.status_code == 302
    assert KpiPolicy.objects.get(pk=1).survey_expiry_days == 30
    assert stale_months() == []
    response = client.post(POLICY, policy_form(first_contact_rule="first_lead"))
    assert response.status_code == 302
    assert stale_months() == [date(2026, 9, 1), date(2026, 10, 1)]


def test_a_viewer_reads_the_policy_and_cannot_change_it(client, viewer):
    client.force_login(viewer)
    assert client.get(POLICY).status_code == 200
    assert client.post(POLICY, policy_form(time_zone="Europe/Paris")).status_code == 403
    assert KpiPolicy.objects.get(pk=1).time_zone == "UTC"
