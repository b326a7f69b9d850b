"""Routing rules: the first enabled rule of an integration (by position) whose labels all match
gives an alert's service and default severity; through the API and the integration's admin
page, bad rules refused with nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms

from incidents.models import Alert, Incident, Kind, RoutingRule, TimelineEntry
from tests.events import followed
from tests.factories import ServiceFactory
from tests.incidents.detection_fixtures import (
    at_now,  # noqa: F401
    fire_generic,
    make_integration,
)
from tests.incidents.detection_fixtures import process_pending as process_raw

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

# The incidents' events are followed once a delivery's processing commits, as the workers do.
process_pending = followed(process_raw)


@pytest.fixture
def generic():
    return make_integration("generic", name="Scripts", default_severity=4)


@pytest.fixture
def payments():
    return ServiceFactory(slug="payments", name="Payments")


@pytest.fixture
def api(api_as, superuser):
    return api_as(superuser)


def add_rule(api, integration, **data) -> RoutingRule:
    response = api.post(
        f"/api/v1/integrations/{integration.pk}/routing-rules/", data, format="json"
    )
    assert response.status_code == 201, response.json()
    return RoutingRule.objects.get(pk=response.json()["id"])


def fire(client, capture, integration, title: str, **data) -> Alert:
    data.setdefault("dedup_key", title)
    fire_generic(client, capture, integration, title=title, **data)
    assert process_pending() == ["processed"]
    return Alert.objects.get(fingerprint=data["dedup_key"])


def alert_entries(incident: Incident) -> list[str]:
    return list(
        TimelineEntry.objects.filter(incident=incident, kind=Kind.ALERT)
        .order_by("id")
        .values_list("message", flat=True)
    )


# --- routing --------------------------------------------------------------------------------------


def test_a_rule_gives_service_and_default_severity_from_the_labels(
    client, django_capture_on_commit_callbacks, api, generic, payments
):
    rule = add_rule(
        api,
        generic,
        match={"team": ["payments", "billing"], "env": "prod"},
        service="payments",
        severity=2,
    )
    capture = django_capture_on_commit_callbacks

    # Values compare case-insensitively.
    alert = fire(
        client, capture, generic, "Card payments failing", labels={"team": "Billing", "env": "PROD"}
    )
    incident = alert.incident
    assert (incident.severity_id, list(incident.services.all())) == (2, [payments])
    assert alert.severity_id == 2
    assert alert_entries(incident) == [
        "Alert opened this incident: Card payments failing (Sev 2; no alert rule matched; "
        f"routing rule #{rule.pk}'s default severity). Its start time was missing or "
        "unreadable: the time of receipt is used.",
        f"Routed by routing rule #{rule.pk} of Scripts (position 0, env=prod, team in "
        "(payments, billing)): service Payments, default severity Sev 2.",
    ]

    # A label missing is no match: the integration's own service (none) and default severity.
    alert = fire(client, capture, generic, "Refunds slow", labels={"team": "payments"})
    assert (alert.incident.severity_id, list(alert.incident.services.all())) == (4, [])
    assert not any("Routed by" in m for m in alert_entries(alert.incident))


def test_alert_rules_and_the_senders_severity_come_before_the_routing_default(
    client, django_capture_on_commit_callbacks, api, generic, payments
):
    add_rule(api, generic, match={"team": "payments"}, service="payments", severity=2)
    capture = django_capture_on_commit_callbacks
    alert = fire(
        client, capture, generic, "Payments down", severity="critical", labels={"team": "payments"}
    )
    assert alert.severity_id == 1
    assert list(alert.incident.services.all()) == [payments]

    # The §7.2 CPU rule: Sev 3, monitor and investigate.
    alert = fire(
        client,
        capture,
        generic,
        "CPU high on pay-1",
        labels={"team": "payments", "alertname": "HighCpuUsage"},
        annotations={"value": "97"},
    )
    assert (alert.severity_id, alert.rule.key) == (3, "cpu_usage")
    assert list(alert.incident.services.all()) == [payments]


def test_the_first_enabled_matching_rule_wins(
    client, django_capture_on_commit_callbacks, api, generic, payments
):
    eu = ServiceFactory(slug="payments-eu", name="Payments EU")
    switched_off = ServiceFactory(slug="old", name="Old")
    later = ServiceFactory(slug="later", name="Later")
    add_rule(api, generic, position=1, match={"team": "payments"}, service="old", enabled=False)
    add_rule(
        api, generic, position=2, match={"team": "payments", "region": "eu"}, service="payments-eu"
    )
    add_rule(api, generic, position=3, match={"team": "payments"}, service="payments")
    add_rule(api, generic, position=3, match={"team": "payments"}, service="later")
    capture = django_capture_on_commit_callbacks

    us = fire(
        client, capture, generic, "US checkout errors", labels={"team": "payments", "region": "us"}
    )
    assert list(us.incident.services.all()) == [payments]
    europe = fire(
        client, capture, generic, "EU checkout errors", labels={"team": "payments", "region": "EU"}
    )
    assert list(europe.incident.services.all()) == [eu]
    assert not Incident.objects.filter(services__in=[switched_off, later]).exists()


def test_a_disabled_rule_is_skipped_and_a_rule_without_service_keeps_the_integrations(
    client, django_capture_on_commit_callbacks, api, payments
):
    prometheus = make_integration("generic", name="Prom", service=payments, default_severity=4)
    rule = add_rule(api, prometheus, match={"team": "payments"}, severity=1, enabled=False)
    capture = django_capture_on_commit_callbacks
    alert = fire(client, capture, prometheus, "Queue backlog", labels={"team": "payments"})
    assert alert.severity_id == 4

    response = api.patch(
        f"/api/v1/integrations/{prometheus.pk}/routing-rules/{rule.pk}/",
        {"enabled": True},
        format="json",
    )
    assert response.status_code == 200
    alert = fire(client, capture, prometheus, "Queue stuck", labels={"team": "payments"})
    assert alert.severity_id == 1
    assert list(alert.incident.services.all()) == [payments]


# --- the API --------------------------------------------------------------------------------------


def test_api_lists_adds_changes_and_deletes_rules(api, generic, payments, superuser):
    rule = add_rule(api, generic, match={"team": "payments"}, service="payments")
    url = f"/api/v1/integrations/{generic.pk}/routing-rules/"
    assert api.get(url).json() == [
        {
            "id": rule.pk,
            "integration": generic.pk,
            "position": 0,
            "match": {"team": "payments"},
            "service": "payments",
            "severity": None,
            "enabled": True,
        }
    ]
    assert rule.history.get().history_user == superuser
    response = api.patch(
        f"{url}{rule.pk}/", {"severity": 2, "match": {"env": ["prod"]}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["severity"], response.json()["match"]) == (2, {"env": ["prod"]})
    assert api.delete(f"{url}{rule.pk}/").status_code == 204
    assert RoutingRule.objects.count() == 0
    # Another integration's rule is not reachable under this one.
    other = make_integration("generic", name="Other")
    foreign = add_rule(api, other, match={"team": "x"})
    assert api.get(f"{url}{foreign.pk}/").status_code == 404


BAD_MATCHES = [
    {},
    [],
    "team=payments",
    {"team": ""},
    {"team": "  "},
    {"team": []},
    {"team": [1]},
    {"team": None},
    {"team": {"eq": "payments"}},
    {"": "payments"},
    {"team": ["payments", ""]},
]


@pytest.mark.parametrize("match", BAD_MATCHES)
def test_api_refuses_bad_matches_and_writes_nothing(api, generic, match):
    url = f"/api/v1/integrations/{generic.pk}/routing-rules/"
    response = api.post(url, {"match": match}, format="json")
    assert response.status_code == 400, response.json()
    assert "match" in response.json()["errors"]
    assert RoutingRule.objects.count() == 0

    rule = add_rule(api, generic, match={"team": "payments"})
    response = api.patch(f"{url}{rule.pk}/", {"match": match}, format="json")
    assert response.status_code == 400
    rule.refresh_from_db()
    assert rule.match == {"team": "payments"}
    assert rule.history.count() == 1


@pytest.mark.parametrize(
    "data, field",
    [
        ({}, "match"),
        ({"match": {"team": "a"}, "service": "nope"}, "service"),
        ({"match": {"team": "a"}, "severity": 9}, "severity"),
        ({"match": {"team": "a"}, "position": -1}, "position"),
    ],
)
def test_api_refuses_other_bad_input(api, generic, data, field):
    response = api.post(f"/api/v1/integrations/{generic.pk}/routing-rules/", data, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert RoutingRule.objects.count() == 0


def test_role_groups_cannot_manage_rules(api_as, incident_manager, generic):
    client = api_as(incident_manager)
    url = f"/api/v1/integrations/{generic.pk}/routing-rules/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"match": {"team": "a"}}, format="json").status_code == 403
    assert RoutingRule.objects.count() == 0


# --- the admin: rules inline on the integration's page ------------------------------------------


def _put(data: dict[str, Any], field: forms.BoundField) -> None:
    value = field.value()
    if field.field.show_hidden_initial:  # rendered as a hidden input the browser sends too
        data[field.html_initial_name] = field.field.prepare_value(field.initial)
    if isinstance(field.field.widget, forms.CheckboxInput):
        if value:
            data[field.html_name] = "on"
    elif isinstance(value, list | tuple):
        data[field.html_name] = [str(v) for v in value]
    else:
        data[field.html_name] = "" if value is None else str(value)


def change_form(response) -> tuple[dict[str, Any], str]:
    """The POST the integration's change page would send unchanged, and the rules' prefix."""
    data: dict[str, Any] = {}
    for field in response.context["adminform"].form:
        _put(data, field)
    (inline,) = response.context["inline_admin_formsets"]
    formset = inline.formset
    for form in [formset.management_form, *formset.forms]:
        for field in form:
            _put(data, field)
    return data, formset.prefix


def test_admin_inline_adds_changes_and_deletes_rules(client, superuser, generic, payments):
    client.force_login(superuser)
    url = f"/admin/incidents/integration/{generic.pk}/change/"
    data, prefix = change_form(client.get(url))
    data.update(
        {
            f"{prefix}-0-position": "1",
            f"{prefix}-0-match": '{"team": ["payments", "billing"]}',
            f"{prefix}-0-service": str(payments.pk),
            f"{prefix}-0-severity": "2",
            f"{prefix}-0-enabled": "on",
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    rule = RoutingRule.objects.get()
    assert (rule.integration, rule.match, rule.service, rule.severity_id) == (
        generic,
        {"team": ["payments", "billing"]},
        payments,
        2,
    )
    assert rule.history.get().history_change_reason == "created via admin"

    data, prefix = change_form(client.get(url))
    assert data[f"{prefix}-0-id"] == str(rule.pk)
    data[f"{prefix}-0-match"] = '{"team": "payments"}'
    response = client.post(url, data)
    assert response.status_code == 302, (
        response.context["adminform"].form.errors,
        response.context["inline_admin_formsets"][0].formset.errors,
    )
    rule.refresh_from_db()
    assert rule.match == {"team": "payments"}
    assert rule.history.latest("history_id").history_change_reason == "updated match via admin"

    data, prefix = change_form(client.get(url))
    data[f"{prefix}-0-DELETE"] = "on"
    assert client.post(url, data).status_code == 302
    assert RoutingRule.objects.count() == 0


@pytest.mark.parametrize("match", ["{}", "[]", '{"team": ""}', '{"team": [1]}', "not json"])
def test_admin_inline_refuses_bad_matches_and_writes_nothing(client, superuser, generic, match):
    client.force_login(superuser)
    url = f"/admin/incidents/integration/{generic.pk}/change/"
    data, prefix = change_form(client.get(url))
    data.update(
        {f"{prefix}-0-match": match, f"{prefix}-0-position": "1", f"{prefix}-0-enabled": "on"}
    )
    data["name"] = "Scripts renamed"
    response = client.post(url, data)
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors
    assert errors[0]["match"]
    assert RoutingRule.objects.count() == 0
    generic.refresh_from_db()
    assert generic.name == "Scripts"  # the page is saved whole or not at all


def test_admin_add_page_has_no_rules_inline(client, superuser):
    client.force_login(superuser)
    response = client.get("/admin/incidents/integration/add/")
    assert response.status_code == 200
    assert list(response.context["inline_admin_formsets"]) == []
