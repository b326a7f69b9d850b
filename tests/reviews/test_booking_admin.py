"""The review policy and the company closure days in the admin: edited by the incident manager
through their services (bad values refused with nothing changed), read by the other roles, kept
in their history."""

from __future__ import annotations

from datetime import date

import pytest

from reviews.models import ClosureDay, ReviewPolicy

pytestmark = pytest.mark.django_db

POLICY_URL = "/admin/reviews/reviewpolicy/1/change/"


def policy_form(**overrides) -> dict[str, str]:
    form = {
        "required_severities": "[1, 2]",
        "business_days": "5",
        "meeting_minutes": '{"1": 90, "2": 60, "3": 60, "4": 60}',
        "workday_start": "09:00",
        "workday_end": "17:00",
        "time_zone": "UTC",
        "close_guard_severities": "[]",
        "documentation_hours": "48",
        "documentation_reminder_hours": "12",
        "action_reminder_days": "2",
    }
    form.update(overrides)
    return form


def test_the_incident_manager_turns_the_close_guard_on(client, incident_manager):
    client.force_login(incident_manager)

    response = client.post(
        POLICY_URL,
        policy_form(close_guard_severities="[1]", time_zone="Europe/Paris"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    policy = ReviewPolicy.objects.get(pk=1)
    assert policy.close_guard_severities == [1]
    assert policy.time_zone == "Europe/Paris"
    assert policy.history.first().history_user == incident_manager


@pytest.mark.parametrize(
    "field,value",
    [
        ("required_severities", "[7]"),
        ("time_zone", "Mars/Olympus"),
        ("meeting_minutes", '{"1": 5000}'),
        ("workday_end", "08:00"),
        ("close_guard_severities", '"1"'),
    ],
)
def test_bad_policy_values_are_refused_and_nothing_changes(client, incident_manager, field, value):
    client.force_login(incident_manager)

    response = client.post(POLICY_URL, policy_form(**{field: value}))

    assert response.status_code == 200
    policy = ReviewPolicy.objects.get(pk=1)
    assert (policy.required_severities, policy.time_zone, policy.close_guard_severities) == (
        [1, 2],
        "UTC",
        [],
    )
    assert policy.meeting_minutes["1"] == 90


def test_other_roles_read_the_policy_but_cannot_change_it(client, technical_lead):
    client.force_login(technical_lead)

    assert client.get(POLICY_URL).status_code == 200
    client.post(POLICY_URL, policy_form(close_guard_severities="[1]"))

    assert ReviewPolicy.objects.get(pk=1).close_guard_severities == []


def test_closure_days_are_added_once(client, incident_manager):
    client.force_login(incident_manager)
    url = "/admin/reviews/closureday/add/"

    first = client.post(url, {"date": "2025-12-24", "name": "Christmas Eve"})
    again = client.post(url, {"date": "2025-12-24", "name": "Again"})
    blank = client.post(url, {"date": "2025-12-26", "name": " "})

    assert first.status_code == 302
    assert again.status_code == blank.status_code == 200
    assert list(ClosureDay.objects.values_list("date", "name")) == [
        (date(2025, 12, 24), "Christmas Eve")
    ]
