"""Every statement of the storm path, of every periodic task and of the incident lists can be
served by an index, on PostgreSQL: the tables they read grow without bound (deliveries, alerts,
incidents, notifications, events, timeline, history), and a statement that must read a whole
table gets slower with every day of use — the drain's claim once read every delivery ever
stored, and the delivery sweep did so every 30 seconds.

Each statement is explained with ``enable_seqscan`` off: PostgreSQL then scans a table
sequentially only when no index can serve the statement. Small tables of policy and
configuration, read whole on purpose (and kept per process), are allowed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.celery import app
from incidents.events import incident_events_follow
from incidents.models import Incident
from incidents.tasks import alert_deliveries_drain_task
from tests.incidents.detection_fixtures import (
    hook_path,
    make_integration,
    post,
    storm_alert,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

# Tables of policy and configuration: a few rows each, edited by hand, read whole on purpose
# (alert rules and contacts are kept per process, incidents.memo).
SMALL_TABLES = {
    "incidents_alertrule",
    "incidents_contact",
    "kpis_kpidefinition",
}

_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")


STAFF_AND_SERVICES = {"auth_user", "incidents_service"}


def forced_seq_scans(queries: list[dict], *, also: set[str] = frozenset()) -> dict[str, str]:
    """The tables some statement of ``queries`` can only read whole, with that statement
    (except the small tables, and ``also``)."""
    found: dict[str, str] = {}
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            for query in queries:
                sql = query["sql"]
                if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
                    continue
                cursor.execute("EXPLAIN " + sql)
                for (line,) in cursor.fetchall():
                    match = _SEQ_SCAN.search(line)
                    if match and match.group(1) not in SMALL_TABLES | also:
                        found.setdefault(match.group(1), sql)
        finally:
            cursor.execute("SET enable_seqscan = on")
    return found


def _alert_opens_an_incident(client, capture, integration, number: int) -> None:
    response, _ = post(
        client,
        hook_path(integration),
        storm_alert(number),
        capture=capture,
        Authorization=f"Bearer {integration.secret}",
    )
    assert response.status_code == 202, response.content
    assert alert_deliveries_drain_task() == 1
    incident_events_follow(incident_id=Incident.objects.latest("pk").pk)


def test_the_storm_path_and_every_periodic_task_are_served_by_indexes(
    client, django_capture_on_commit_callbacks, service
):
    integration = make_integration("alertmanager", service=service)
    capture = django_capture_on_commit_callbacks
    for number in range(3):
        _alert_opens_an_incident(client, capture, integration, number)

    with CaptureQueriesContext(connection) as path:
        _alert_opens_an_incident(client, capture, integration, 3)
    assert forced_seq_scans(path.captured_queries) == {}

    # An hour later every timer of the open incidents has come due: the sweeps do their work
    # (escalation steps, stakeholder updates, SLA breaches), not only their first look.
    app.loader.import_default_modules()
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            task = app.tasks[entry["task"]]
            with CaptureQueriesContext(connection) as run:
                task.run(*entry.get("args", ()), **entry.get("kwargs", {}))
            assert forced_seq_scans(run.captured_queries) == {}, name


def test_the_incident_lists_are_served_by_indexes(client, superuser, api_as, make_incident):
    # What is read all day: the API list as dashboards poll it, the admin list and its search.
    for _ in range(3):
        make_incident()
    client.force_login(superuser)
    api = api_as(superuser)
    pages = [
        (api, "/api/v1/incidents/"),
        (api, "/api/v1/incidents/?status=open"),
        (api, "/api/v1/incidents/?severity=1&status=open"),
        (client, "/admin/incidents/incident/"),
        (client, "/admin/incidents/incident/?q=timeouts"),
    ]
    for reader, url in pages:
        with CaptureQueriesContext(connection) as read:
            assert reader.get(url).status_code == 200, url
        # The filter's services and the search's staff accounts: a few rows, read whole.
        assert forced_seq_scans(read.captured_queries, also=STAFF_AND_SERVICES) == {}, url
