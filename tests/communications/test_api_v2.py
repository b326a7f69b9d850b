"""The Statuspage v2-compatible JSON under /status/api/v2/: shape key for key against the
Statuspage sample, the overall status rules, only published data, injection, CORS."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from communications.models import ComponentStatus
from tests.communications.feeds_data import (
    make_component,
    make_group,
    make_incident,
    make_maintenance,
    publish,
    staff,
)

SAMPLE = Path("/work/shared/samples/statuspage-v2-summary.json")
PATHS = [
    "summary.json",
    "status.json",
    "components.json",
    "incidents.json",
    "incidents/unresolved.json",
    "scheduled-maintenances.json",
    "scheduled-maintenances/upcoming.json",
    "scheduled-maintenances/active.json",
]


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def get_json(client, path):
    cache.clear()
    response = client.get("/status/api/v2/" + path)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


@pytest.fixture
def page(db):
    actor = staff()
    now = timezone.now().replace(microsecond=0)
    start = now - timedelta(hours=2)
    checkout = make_component(
        slug="checkout", public_name="Checkout", actor=actor, position=1, at=start
    )
    api = make_component(slug="api", public_name="Public API", actor=actor, position=2, at=start)
    incident = make_incident(title="db primary OOM on pg-7 (internal)", severity=1)
    publish(
        incident=incident,
        title="Payments failing at checkout",
        status="investigating",
        body="Some customers cannot complete payments.",
        at=start + timedelta(minutes=10),
        actor=actor,
        components={checkout: ComponentStatus.MAJOR_OUTAGE},
    )
    publish(
        incident=incident,
        title="Payments failing at checkout",
        status="identified",
        body="We have identified a faulty **configuration** change.",
        at=start + timedelta(minutes=20),
        actor=actor,
        components={checkout: ComponentStatus.MAJOR_OUTAGE},
    )
    make_maintenance(
        title="Database upgrade",
        body="We upgrade the *database*.",
        start=now + timedelta(days=1),
        components=[api],
    )
    return {"incident": incident, "checkout": checkout, "api": api, "actor": actor, "now": now}


def assert_same_shape(sample, actual, where="$"):
    """Every key of the sample is present in ``actual`` with the same JSON type (null in the
    sample: any type; ``actual`` null where the sample has a value: allowed, as Statuspage's
    nullable fields), recursively; lists compare their items with the sample's first item."""
    if sample is None or actual is None:
        return
    if isinstance(sample, dict):
        assert isinstance(actual, dict), where
        missing = set(sample) - set(actual)
        assert not missing, f"{where}: missing {sorted(missing)}"
        for key, value in sample.items():
            assert_same_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(sample, list):
        assert isinstance(actual, list), where
        if sample:
            for item in actual:
                assert_same_shape(sample[0], item, f"{where}[]")
    elif isinstance(sample, bool):
        assert isinstance(actual, bool), where
    elif isinstance(sample, (int, float)):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), where
    else:
        assert isinstance(actual, type(sample)), f"{where}: {actual!r}"


def test_summary_matches_the_statuspage_sample_key_for_key(client, page):
    sample = json.loads(SAMPLE.read_text())
    summary = get_json(client, "summary.json")
    assert_same_shape(sample, summary)
    assert summary["incidents"], "the sample's incident shape was checked"
    # No keys Statuspage does not have (the sample's, plus groups' and maintenance's own).
    extra_component = {"components"}
    for component in summary["components"]:
        assert set(component) - set(sample["components"][0]) <= extra_component
    incident_keys = set(sample["incidents"][0])
    for incident in summary["incidents"]:
        assert set(incident) == incident_keys
        for update in incident["incident_updates"]:
            assert set(update) == set(sample["incidents"][0]["incident_updates"][0])
    assert set(summary) == set(sample)
    assert set(summary["page"]) == set(sample["page"])
    assert set(summary["status"]) == set(sample["status"])


def test_summary_values(client, page):
    summary = get_json(client, "summary.json")
    assert summary["status"] == {"indicator": "major", "description": "Partial System Outage"}
    by_id = {c["id"]: c for c in summary["components"]}
    assert by_id["checkout"]["status"] == "major_outage"
    assert by_id["api"]["status"] == "operational"
    [incident] = summary["incidents"]
    number = page["incident"].number
    assert incident["id"] == number
    assert incident["name"] == "Payments failing at checkout"
    assert incident["status"] == "identified"
    assert incident["impact"] == "major"
    assert incident["shortlink"].endswith(f"/status/incidents/{number}.html")
    first, second = page["now"] - timedelta(minutes=110), page["now"] - timedelta(minutes=100)
    assert incident["created_at"] == first.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert incident["updated_at"] == second.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    newest, oldest = incident["incident_updates"]
    assert newest["status"] == "identified" and oldest["status"] == "investigating"
    assert newest["body"] == "We have identified a faulty configuration change."
    assert oldest["affected_components"] == [
        {"code": "checkout", "name": "Checkout", "old_status": "operational",
         "new_status": "major_outage"}
    ]  # fmt: skip
    assert [c["id"] for c in incident["components"]] == ["checkout"]
    [maintenance] = summary["scheduled_maintenances"]
    assert maintenance["status"] == "scheduled"
    assert maintenance["impact"] == "maintenance"
    assert [c["id"] for c in maintenance["components"]] == ["api"]
    assert maintenance["incident_updates"][0]["body"] == "We upgrade the database."


def test_timestamps_in_the_samples_format(client, page):
    import re

    text = json.dumps(get_json(client, "summary.json"))
    stamps = re.findall(r'"(\d{4}-\d\d-\d\dT[^"]*)"', text)
    assert stamps
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp


def test_every_endpoint_and_its_lists(client, page):
    for path in PATHS:
        data = get_json(client, path)
        assert data["page"]["id"] == "vigil"
    assert set(get_json(client, "status.json")) == {"page", "status"}
    assert [c["id"] for c in get_json(client, "components.json")["components"]] == [
        "checkout",
        "api",
    ]
    assert len(get_json(client, "incidents.json")["incidents"]) == 1
    assert len(get_json(client, "incidents/unresolved.json")["incidents"]) == 1
    assert (
        len(get_json(client, "scheduled-maintenances/upcoming.json")["scheduled_maintenances"]) == 1
    )
    assert get_json(client, "scheduled-maintenances/active.json")["scheduled_maintenances"] == []


def test_resolved_incident_leaves_unresolved_and_the_indicator(client, page):
    publish(
        incident=page["incident"],
        title="Payments restored",
        status="monitoring",
        body="A fix is in place.",
        at=page["now"] - timedelta(minutes=30),
        actor=page["actor"],
        components={page["checkout"]: ComponentStatus.OPERATIONAL},
    )
    publish(
        incident=page["incident"],
        title="Payments restored",
        status="resolved",
        body="Resolved.",
        at=page["now"] - timedelta(minutes=5),
        actor=page["actor"],
    )
    summary = get_json(client, "summary.json")
    assert summary["status"] == {"indicator": "none", "description": "All Systems Operational"}
    assert summary["incidents"] == []
    [incident] = get_json(client, "incidents.json")["incidents"]
    assert incident["status"] == "resolved"
    assert incident["impact"] == "major"  # the worst it was
    assert incident["monitoring_at"] is not None and incident["resolved_at"] is not None
    assert get_json(client, "incidents/unresolved.json")["incidents"] == []


@pytest.mark.parametrize(
    ("statuses", "indicator", "description"),
    [
        ({}, "none", "All Systems Operational"),
        ({"a": "degraded_performance"}, "minor", "Minor Service Outage"),
        ({"a": "partial_outage"}, "major", "Partial System Outage"),
        ({"a": "major_outage"}, "major", "Partial System Outage"),
        ({"a": "major_outage", "b": "major_outage"}, "critical", "Major Service Outage"),
        ({"a": "under_maintenance"}, "maintenance", "Service Under Maintenance"),
        ({"a": "under_maintenance", "b": "degraded_performance"}, "minor", "Minor Service Outage"),
    ],
)
def test_overall_status_rules(client, db, statuses, indicator, description):
    actor = staff()
    components = {
        code: make_component(slug=code, public_name=code.upper(), actor=actor)
        for code in ("a", "b")
    }
    from communications.services.components import component_status_set

    for code, status in statuses.items():
        component_status_set(component=components[code], status=status, actor=actor)
    assert get_json(client, "status.json")["status"] == {
        "indicator": indicator,
        "description": description,
    }


def test_groups_are_listed_as_statuspage_lists_them(client, db):
    actor = staff()
    group = make_group("Payments", position=1)
    make_component(slug="web", public_name="Website", actor=actor, position=0)
    card = make_component(slug="cards", public_name="Cards", actor=actor, group=group)
    make_component(slug="wallets", public_name="Wallets", actor=actor, group=group, position=1)
    from communications.services.components import component_status_set

    component_status_set(component=card, status="partial_outage", actor=actor)
    components = get_json(client, "components.json")["components"]
    assert [c["id"] for c in components] == ["web", f"group-{group.pk}", "cards", "wallets"]
    group_dict = components[1]
    assert group_dict["group"] is True
    assert group_dict["components"] == ["cards", "wallets"]
    assert group_dict["status"] == "partial_outage"
    assert components[2]["group_id"] == group_dict["id"]


def test_drafts_and_internal_data_never_appear(client, page):
    from communications.models import StatusUpdate

    StatusUpdate.objects.create(
        incident=page["incident"],
        public_title="DRAFT do not show",
        public_status="monitoring",
        body="secret draft",
        state="draft",
    )
    StatusUpdate.objects.create(
        incident=make_incident(title="another internal"),
        public_title="APPROVED not published",
        public_status="investigating",
        body="approved only",
        state="approved",
    )
    for path in PATHS:
        cache.clear()
        body = client.get("/status/api/v2/" + path).content.decode()
        for secret in ("DRAFT", "secret draft", "APPROVED", "internal", "pg-7"):
            assert secret not in body, (path, secret)


def test_markup_in_public_text_stays_text_in_the_json(client, db):
    actor = staff()
    nasty = '<script>alert(1)</script> ]]> & "quoted" \''
    comp = make_component(slug="nasty", public_name=nasty, actor=actor)
    publish(
        incident=make_incident(),
        title=nasty,
        status="investigating",
        body=nasty,
        at=timezone.now(),
        actor=actor,
        components={comp: "degraded_performance"},
    )
    cache.clear()
    response = client.get("/status/api/v2/summary.json")
    raw = response.content.decode()
    assert "<" not in raw and ">" not in raw and "&" not in raw
    data = json.loads(raw)
    assert data["components"][0]["name"] == nasty
    assert data["incidents"][0]["name"] == nasty
    assert "<script>alert(1)</script>" in data["incidents"][0]["incident_updates"][0]["body"]


def test_cors_open_for_get(client, page):
    response = client.get("/status/api/v2/summary.json")
    assert response["Access-Control-Allow-Origin"] == "*"


def test_unknown_api_path_is_404(client, page):
    assert client.get("/status/api/v2/nope.json").status_code == 404
    assert client.get("/status/api/v2/incidents/INC-0000.json").status_code == 404


COMPONENT_STATUSES = {
    "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance",
}  # fmt: skip
INCIDENT_STATUSES = {"investigating", "identified", "monitoring", "resolved", "postmortem"}
MAINTENANCE_STATUSES = {"scheduled", "in_progress", "verifying", "completed"}


def test_a_statuspage_consumer_reads_it(client, page):
    """What exporters and chat bots read, the way they read it: every enum within Statuspage's
    values, ids joinable (incident updates to their incident, groups to their members)."""
    summary = get_json(client, "summary.json")
    assert summary["status"]["indicator"] in {"none", "minor", "major", "critical", "maintenance"}
    ids = {c["id"] for c in summary["components"]}
    for component in summary["components"]:
        assert component["status"] in COMPONENT_STATUSES
        assert component["page_id"] == summary["page"]["id"]
        for member in component.get("components", []):
            assert member in ids
    for incident in get_json(client, "incidents.json")["incidents"]:
        assert incident["status"] in INCIDENT_STATUSES
        assert incident["impact"] in {"none", "minor", "major", "critical"}
        for update in incident["incident_updates"]:
            assert update["incident_id"] == incident["id"]
            assert update["status"] in INCIDENT_STATUSES
            for affected in update["affected_components"]:
                assert affected["code"] in ids
                assert {affected["old_status"], affected["new_status"]} <= COMPONENT_STATUSES
    for maintenance in get_json(client, "scheduled-maintenances.json")["scheduled_maintenances"]:
        assert maintenance["status"] in MAINTENANCE_STATUSES
        assert maintenance["impact"] == "maintenance"
        for update in maintenance["incident_updates"]:
            assert update["status"] in MAINTENANCE_STATUSES


def test_shortlinks_lead_to_the_pages(client, page):
    from urllib.parse import urlsplit

    summary = get_json(client, "summary.json")
    links = [i["shortlink"] for i in summary["incidents"]]
    links += [m["shortlink"] for m in summary["scheduled_maintenances"]]
    assert len(links) == 2
    for link in links:
        response = client.get(urlsplit(link).path)
        assert response.status_code == 200, link
        assert response["Content-Type"].startswith("text/html")


def test_the_snapshot_takes_the_same_few_queries_however_much_history(page):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from communications.public.site import RenderContext
    from communications.public.snapshot import public_snapshot

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            public_snapshot(RenderContext(now=timezone.now()))
        return len(queries)

    before = count()
    for i in range(5):
        component = make_component(slug=f"more-{i}", public_name=f"More {i}", actor=page["actor"])
        publish(
            incident=make_incident(),
            title=f"More {i}",
            status="investigating",
            body="More.",
            at=timezone.now(),
            actor=page["actor"],
            components={component: "degraded_performance"},
        )
        make_maintenance(title=f"M{i}", body="b", start=page["now"], components=[component])
    assert count() == before <= 8


def test_cors_preflight_for_the_api(client, page):
    response = client.options(
        "/status/api/v2/summary.json",
        HTTP_ORIGIN="https://widget.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert response["Access-Control-Allow-Headers"] == "*"
    assert response.content == b""
    # Only reading: anything that writes is still refused.
    assert client.post("/status/api/v2/summary.json").status_code == 405
    # The pages are not an API: no CORS there.
    assert "Access-Control-Allow-Origin" not in client.options("/status/")
