"""What an alert storm costs per incident: the queries of the whole "an alert opens an incident
and pages the team" path, pinned so that they do not creep back up.

The path is what the workers run for one Alertmanager notification of a new group: the intake
task turns the stored delivery into an alert and a new incident (one transaction), then the
incident's ``incident_created`` event is followed and escalation pages the response team,
writing the outbox rows (one transaction). Other apps' reactions to the event (stakeholder
schedules, direct-contact tasks, KPI rollups) are theirs and not counted here. Counts include
the two statements (SAVEPOINT / RELEASE) that the test's own transaction adds around each
transaction the path opens; in production those are BEGIN and COMMIT.
"""

from __future__ import annotations

import pytest
from django.db import connection

from escalation.models import Notification
from escalation.services.delivery import notification_send_batch
from incidents.events import events_unsubscribe, incident_events_follow
from incidents.events.registry import _handlers
from incidents.memo import Versioned
from incidents.models import Incident, IncidentEvent, Integration, WebhookDelivery
from incidents.tasks import alert_deliveries_drain_task, alert_delivery_process_task
from tests.incidents.detection_fixtures import (
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    post,
    storm_alert,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

POSTGRES = connection.vendor == "postgresql"

# Opening an incident: claim, the group (one INSERT ... ON CONFLICT DO UPDATE that inserts or
# locks it), the alert (one INSERT ... SELECT that skips a stale one, ON CONFLICT counting a
# repeat), the day's number (one UPDATE ... RETURNING), the incident, its services, one history
# record (its INSERT, and its services copied from the links in hand), the event, the alert's
# and group's incident (one statement on PostgreSQL, two elsewhere), every timeline entry in
# one INSERT, the delivery processed. The routing rules, alert rules, maintenance windows,
# severity levels and priority matrix are kept per process while unchanged (incidents.memo):
# no query.
PROCESS_STATEMENTS = 12 if POSTGRES else 13
# Paging: the due events read with the first one's publish stamp cleared (so a dead worker's
# event is re-queued soon; one statement on PostgreSQL, two elsewhere), the event and its
# incident locked and read (SKIP LOCKED), its escalation (one INSERT ... ON CONFLICT; the
# snapshot from the cache), the role holders, the services for the message, every outbox row
# in one INSERT, the timeline entry, the handler's record and the event done (one statement on
# PostgreSQL, two elsewhere). The paged roles' primary contacts and which contacts exist are
# kept per process.
FOLLOW_STATEMENTS = 8 if POSTGRES else 10
# The target for the whole path, outbox rows included, on PostgreSQL.
PATH_TARGET = 20
# Every app following the event, as in production: the above, plus the direct-contact tasks
# (the customers of its services: none, so no lock and no tasks read), the stakeholder
# schedules (its schedules, the new ones, a timeline entry) and the KPI rollup (the month
# added if missing, and marked stale). Every handler works on the incident read with the event,
# and none opens a savepoint. The communication policy, the status page's time zone, the
# stakeholder groups and the KPI time zone are kept per process.
FOLLOW_ALL_STATEMENTS = FOLLOW_STATEMENTS + 6


def _statements(captured) -> list[str]:
    """The statements production runs: without the SAVEPOINT / RELEASE pair the test's own
    transaction adds around each transaction the path opens (BEGIN and COMMIT there)."""
    return [
        q["sql"]
        for q in captured.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
    ]


def _policy_committed() -> None:
    """The policy rows made so far count as committed, as they are in production before a
    storm: the version bumps their saves left pending (on commit, which never comes in a test's
    transaction) run now, so that the rows kept per process are used from here on."""
    pending = connection.run_on_commit
    bumps = [item for item in pending if isinstance(getattr(item[1], "__self__", None), Versioned)]
    connection.run_on_commit = [item for item in pending if item not in bumps]
    for _, bump, *_ in bumps:
        bump()


@pytest.fixture
def escalation_only():
    """Only escalation follows events while measuring (the other apps' work is theirs)."""
    others = {name: h for name, h in _handlers.items() if name != "escalation"}
    for name in others:
        events_unsubscribe(handler=name)
    yield
    _handlers.update(others)


def _deliver(client, capture, integration, body) -> int:
    response, _ = post(
        client,
        hook_path(integration),
        body,
        capture=capture,
        Authorization=f"Bearer {integration.secret}",
    )
    assert response.status_code == 202, response.content
    return WebhookDelivery.objects.latest("pk").pk


def _warmed(client, capture, service) -> Integration:
    """An Alertmanager integration whose first alert opened an incident that was followed:
    what each process keeps (the policy rows, the snapshot) is warm."""
    integration = make_integration("alertmanager", service=service)
    _policy_committed()
    first = _deliver(client, capture, integration, storm_alert(1))
    alert_delivery_process_task(first)
    incident_events_follow(incident_id=Incident.objects.get().pk)
    return integration


def test_an_alert_opens_an_incident_and_pages_the_team_in_a_pinned_number_of_queries(
    client,
    django_capture_on_commit_callbacks,
    django_assert_max_num_queries,
    escalation_only,
    service,
    settings,
):
    integration = _warmed(client, django_capture_on_commit_callbacks, service)
    delivery = _deliver(client, django_capture_on_commit_callbacks, integration, storm_alert(2))
    with django_assert_max_num_queries(PROCESS_STATEMENTS + 2) as processing:
        assert alert_delivery_process_task(delivery) == "processed"
    assert len(_statements(processing)) == PROCESS_STATEMENTS, _statements(processing)
    incident = Incident.objects.latest("pk")
    assert incident.severity_id == 1
    with django_assert_max_num_queries(FOLLOW_STATEMENTS + 2) as following:
        result = incident_events_follow(incident_id=incident.pk)
    assert len(_statements(following)) == FOLLOW_STATEMENTS, _statements(following)
    assert (result.events_done, result.handled) == (1, 1)
    if POSTGRES:
        assert PROCESS_STATEMENTS + FOLLOW_STATEMENTS <= PATH_TARGET

    # The whole team was paged on every Sev 1 channel with a contact address, in one INSERT
    # whose rows are urgent (their batch goes to the urgent queue after commit).
    pages = Notification.objects.filter(incident=incident)
    assert pages.count() >= 3
    assert set(pages.values_list("urgent", flat=True)) == {True}
    assert IncidentEvent.objects.get(incident=incident).status == "done"

    # Sending the batch: the publish stamps cleared, then per chunk of up to ten pages one
    # claim and one record of their sends; the incident the messages show (the log backend's
    # line, as a chat message's) is read once for the whole batch, not once per page.
    ids = sorted(pages.values_list("pk", flat=True))
    log = "escalation.channels.log.LogBackend"
    settings.VIGIL_CHANNEL_BACKENDS = dict.fromkeys(
        set(pages.values_list("channel", flat=True)), log
    )
    chunks = -(-len(ids) // settings.VIGIL_NOTIFY_SEND_CHUNK)
    with django_assert_max_num_queries(1 + 2 * chunks + 1) as captured:
        assert notification_send_batch(notification_ids=ids) == len(ids)
    assert set(pages.values_list("status", flat=True)) == {"sent"}
    updates = [q["sql"] for q in captured.captured_queries if "UPDATE " in q["sql"]]
    assert len(updates) == 1 + 2 * chunks, updates


def test_a_drain_opens_the_incident_in_as_many_statements_as_a_task_for_the_delivery(
    client,
    django_capture_on_commit_callbacks,
    django_assert_max_num_queries,
    escalation_only,
    service,
):
    # The storm's path: drains take the oldest fresh delivery (with the rest of its group)
    # in one claim, as the per-delivery task claims its own; then a claim finds none left, and
    # another after a moment (the drain's last look) before it ends.
    integration = _warmed(client, django_capture_on_commit_callbacks, service)
    _deliver(client, django_capture_on_commit_callbacks, integration, storm_alert(2))
    # Raw: with the test's SAVEPOINT / RELEASE pair around each of the three transactions.
    with django_assert_max_num_queries(PROCESS_STATEMENTS + 8) as processing:
        assert alert_deliveries_drain_task() == 1
    assert len(_statements(processing)) == PROCESS_STATEMENTS + 2, _statements(processing)
    assert Incident.objects.latest("pk").severity_id == 1


def test_a_page_is_one_insert_and_one_broker_message_on_the_urgent_queue(
    client, django_capture_on_commit_callbacks, escalation_only, service, monkeypatch
):
    from escalation import tasks

    published: list[tuple[list[int], str]] = []
    monkeypatch.setattr(
        tasks.notification_send_batch_task,
        "apply_async",
        lambda args, queue, **kw: published.append((args[0], queue)),
    )
    integration = make_integration("alertmanager", service=service)
    delivery = _deliver(client, django_capture_on_commit_callbacks, integration, storm_alert(3))
    alert_delivery_process_task(delivery)
    incident = Incident.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        incident_events_follow(incident_id=incident.pk)
    ids = sorted(Notification.objects.filter(incident=incident).values_list("pk", flat=True))
    assert published == [(ids, "vigil.urgent")]


def test_every_app_follows_the_new_incident_in_a_pinned_number_of_queries(
    client, django_capture_on_commit_callbacks, django_assert_max_num_queries, service
):
    integration = _warmed(client, django_capture_on_commit_callbacks, service)
    delivery = _deliver(client, django_capture_on_commit_callbacks, integration, storm_alert(5))
    assert alert_delivery_process_task(delivery) == "processed"
    incident = Incident.objects.latest("pk")
    with django_assert_max_num_queries(FOLLOW_ALL_STATEMENTS + 2) as following:
        result = incident_events_follow(incident_id=incident.pk)
    statements = _statements(following)
    assert len(statements) == FOLLOW_ALL_STATEMENTS, statements
    assert not [sql for sql in statements if "SAVEPOINT" in sql], statements
    assert result.events_done == 1 and result.handled == len(_handlers_of_created())
    assert Notification.objects.filter(incident=incident).count() >= 3
    assert incident.stakeholder_schedules.exists()


def _handlers_of_created() -> list[str]:
    return [name for name, h in _handlers.items() if "incident_created" in h.callbacks]
