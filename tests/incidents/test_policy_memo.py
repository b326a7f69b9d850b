"""The policy rows each process keeps (routing rules, alert rules, maintenance windows, severity
levels, the priority matrix, the paged roles and contacts): a committed change reaches the next
alert in every process, an uncommitted one only its own transaction, and without the cache
everything is read from the database.

These tests commit (``transaction=True``): the version token moves only when a change commits.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import transaction

from escalation.services.recipients import PEOPLE, contact_ids_known
from incidents.detection.maintenance import maintenance_window_create
from incidents.detection.routing import routing_rule_create
from incidents.detection.state import DETECTION_CONFIG
from incidents.memo import Versioned, tokens_scope
from incidents.models import Alert, Contact, Incident, Service, SeverityLevel, Source
from incidents.services import incident_create
from incidents.services.catalog import severity_level_update
from incidents.services.common import POLICY_ROWS
from tests.incidents.detection_fixtures import (
    alertmanager_payload,
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    post,
    process_pending,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("at_now"),
]


@pytest.fixture
def services():
    return (
        Service.objects.create(slug="checkout", name="Checkout"),
        Service.objects.create(slug="payments", name="Payments"),
    )


@pytest.fixture
def integration(services):
    return make_integration("alertmanager", service=services[0])


def _fire(client, django_capture_on_commit_callbacks, integration, number: int, **labels) -> Alert:
    """One Alertmanager notification of a new group with one alert; processed as a worker
    would. Returns the stored alert."""
    body = copy.deepcopy(alertmanager_payload())
    name = f"Memo{number}"
    body["groupKey"] = f'{{}}:{{alertname="{name}"}}'
    body["groupLabels"] = {"alertname": name}
    body["alerts"] = body["alerts"][:1]
    body["alerts"][0]["labels"].update({"alertname": name, **labels})
    body["alerts"][0]["fingerprint"] = f"{number:016x}"
    response, _ = post(
        client,
        hook_path(integration),
        body,
        capture=django_capture_on_commit_callbacks,
        Authorization=f"Bearer {integration.secret}",
    )
    assert response.status_code == 202, response.content
    assert set(process_pending()) <= {"processed"}
    return Alert.objects.select_related("incident").get(fingerprint=f"{number:016x}")


def _route_team_payments(integration, services) -> None:
    routing_rule_create(
        integration=integration,
        actor=None,
        source=Source.ADMIN,
        match={"team": "payments"},
        service=services[1],
    )


def _services(alert: Alert) -> list[str]:
    return list(alert.incident.services.values_list("slug", flat=True))


def test_a_committed_routing_rule_routes_the_next_alert_in_every_process(
    client, django_capture_on_commit_callbacks, integration, services
):
    assert _services(_fire(client, django_capture_on_commit_callbacks, integration, 1)) == [
        "checkout"
    ]
    assert DETECTION_CONFIG.memo  # the rules are kept now
    remembered = DETECTION_CONFIG.memo  # what another process still holds in memory

    _route_team_payments(integration, services)

    alert = _fire(client, django_capture_on_commit_callbacks, integration, 2, team="payments")
    assert _services(alert) == ["payments"]
    DETECTION_CONFIG.memo = remembered
    alert = _fire(client, django_capture_on_commit_callbacks, integration, 3, team="payments")
    assert _services(alert) == ["payments"]


def test_a_committed_maintenance_window_silences_the_next_alert_at_once(
    client, django_capture_on_commit_callbacks, integration, services
):
    from django.utils import timezone

    assert _fire(client, django_capture_on_commit_callbacks, integration, 1).incident_id
    now = timezone.now()
    window = maintenance_window_create(
        actor=None,
        source=Source.ADMIN,
        now=now,
        reason="Failover test",
        integration=integration,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
    )
    alert = _fire(client, django_capture_on_commit_callbacks, integration, 2)
    assert alert.incident_id is None and alert.maintenance_id == window.pk
    assert Incident.objects.count() == 1


def test_an_uncommitted_routing_rule_is_seen_only_by_its_transaction(
    client, django_capture_on_commit_callbacks, integration, services
):
    _fire(client, django_capture_on_commit_callbacks, integration, 1)
    with pytest.raises(RuntimeError), transaction.atomic():
        _route_team_payments(integration, services)
        alert = _fire(client, django_capture_on_commit_callbacks, integration, 2, team="payments")
        assert _services(alert) == ["payments"]
        raise RuntimeError("rolled back")
    alert = _fire(client, django_capture_on_commit_callbacks, integration, 3, team="payments")
    assert _services(alert) == ["checkout"]


def _severity_10_minutes() -> None:
    severity_level_update(
        severity=SeverityLevel.objects.get(level=1),
        actor=None,
        source=Source.ADMIN,
        response_target=timedelta(minutes=10),
    )


def _response_minutes() -> float:
    incident = incident_create(actor=None, source=Source.API, title="Checkout down", severity=1)
    return (incident.response_due_at - incident.detected_at) / timedelta(minutes=1)


def test_a_committed_severity_target_applies_to_the_next_incident():
    assert _response_minutes() == 15
    assert POLICY_ROWS.memo
    _severity_10_minutes()
    assert _response_minutes() == 10


def test_a_deleted_contact_is_no_longer_known():
    contact = Contact.objects.create(name="Leaving", email="leaving@example.com")
    pk = contact.pk
    assert pk in contact_ids_known()
    assert PEOPLE.memo
    contact.delete()
    assert pk not in contact_ids_known()


def test_without_the_cache_everything_is_read_from_the_database(
    client, django_capture_on_commit_callbacks, integration, services, monkeypatch
):
    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "get_many", down)
    _route_team_payments(integration, services)
    alert = _fire(client, django_capture_on_commit_callbacks, integration, 1, team="payments")
    assert _services(alert) == ["payments"]
    assert alert.incident.severity_id == 1
    assert not DETECTION_CONFIG.memo and not POLICY_ROWS.memo


def test_a_committed_stakeholder_group_change_reaches_the_next_incident():
    from communications.models import StakeholderGroup
    from communications.services.policy import COMMUNICATION_POLICY
    from incidents.events import incident_events_follow

    def followed() -> Incident:
        incident = incident_create(actor=None, source=Source.API, title="Checkout down", severity=1)
        incident_events_follow(incident_id=incident.pk)
        return incident

    assert followed().stakeholder_schedules.exists()
    assert COMMUNICATION_POLICY.memo
    for group in StakeholderGroup.objects.filter(active=True):
        group.active = False
        group.save()
    assert not followed().stakeholder_schedules.exists()


def test_a_unit_of_work_reads_every_token_with_one_cache_read(monkeypatch):
    _response_minutes()  # every token exists and the rows are kept
    reads = []
    # The cache's own reads: one per token outside a unit of work, one get_many inside it (which
    # a cache without a multi-key read, such as this local-memory one, makes of single reads).
    tokens = {v.version_key for v in Versioned.instances}
    real_get, real_get_many = cache.get, cache.get_many
    inside: list[bool] = []

    def get(key, *args, **kwargs):
        if key in tokens and not inside:
            reads.append("get")
        return real_get(key, *args, **kwargs)

    def get_many(keys, *args, **kwargs):
        reads.append("get_many")
        inside.append(True)
        try:
            return real_get_many(keys, *args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(cache, "get", get)
    monkeypatch.setattr(cache, "get_many", get_many)
    _response_minutes()
    outside = len(reads)
    assert outside >= 2 and set(reads) == {"get"}  # one read per policy read, outside a scope

    reads.clear()
    with tokens_scope():
        for _ in range(3):
            assert _response_minutes() == 15
    assert reads == ["get_many"]
    reads.clear()
    _response_minutes()
    assert len(reads) == outside  # the scope is over


def _changed_by_another_process() -> None:
    """The severity's response target changed and committed by another process: the row is
    written behind this process's back, and the token in the cache moves."""
    SeverityLevel.objects.filter(level=1).update(response_target=timedelta(minutes=10))
    cache.set(POLICY_ROWS.version_key, "moved by another process")


def test_in_a_unit_of_work_another_process_change_applies_from_the_next_one():
    assert _response_minutes() == 15
    with tokens_scope():
        assert _response_minutes() == 15
        _changed_by_another_process()
        assert _response_minutes() == 15  # the tokens this unit of work read
    with tokens_scope():
        assert _response_minutes() == 10
    assert _response_minutes() == 10


def test_in_a_long_unit_of_work_the_tokens_are_read_again(monkeypatch):
    import incidents.memo

    with tokens_scope():
        assert _response_minutes() == 15
        _changed_by_another_process()
        monkeypatch.setattr(incidents.memo, "SCOPE_TOKENS_SECONDS", 0.0)
        assert _response_minutes() == 10


def test_in_a_unit_of_work_this_process_change_applies_at_once():
    with tokens_scope():
        assert _response_minutes() == 15
        _severity_10_minutes()
        assert _response_minutes() == 10
        assert len({POLICY_ROWS.memo[k][0] for k in POLICY_ROWS.memo}) == 1


def test_a_task_and_a_request_are_units_of_work(api_as, incident_manager, monkeypatch):
    from celery import shared_task

    seen = []

    @shared_task(name="tests.memo_scope_probe")
    def probe() -> None:
        seen.append(__import__("incidents.memo").memo._scope.depth)

    probe.apply()
    assert seen == [1]
    depths = []
    import incidents.memo

    monkeypatch.setattr(
        Versioned, "_version", lambda self: depths.append(incidents.memo._scope.depth) or "v"
    )
    response = api_as(incident_manager).post(
        "/api/v1/incidents/", {"title": "Checkout down", "severity": 1}, format="json"
    )
    assert response.status_code == 201, response.content
    assert depths and set(depths) == {1}
    assert incidents.memo._scope.depth == 0
