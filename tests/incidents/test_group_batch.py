"""A drain takes pending deliveries together: the oldest fresh delivery and the next ones whose
alerts fell in one group each (as noted on receipt) are processed in one transaction, each as
it would be alone, a group's deliveries in order of receipt; the new incidents' events are
followed by one task; an error in one of them records that one and leaves the others to the
next claim."""

from __future__ import annotations

import copy
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents import tasks as incident_tasks
from incidents.detection.processing import deliveries_drain
from incidents.events.recording import incidents_events_follow_many
from incidents.models import (
    Alert,
    AlertGroup,
    DeliveryStatus,
    EventStatus,
    Incident,
    IncidentEvent,
    WebhookDelivery,
)
from incidents.tasks import alert_deliveries_drain_task
from tests.events import followed
from tests.incidents.detection_fixtures import (
    alertmanager_payload,
    at_now,  # noqa: F401
    fire_generic,
    hook_path,
    make_integration,
    post,
)
from tests.incidents.incident_rows import incidents_seen
from tests.threads import in_threads

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

drain = followed(alert_deliveries_drain_task)


@pytest.fixture
def generic(service):
    return make_integration("generic", service=service, default_severity=3)


def fire(client, capture, integration, **data) -> int:
    return fire_generic(client, capture, integration, **data).json()["delivery"]


def claims(queries) -> int:
    """How many times a drain claimed deliveries: one statement per claim (the oldest fresh
    delivery and the next ones, in order of receipt). A drain that finds none left looks once
    more after a moment before it ends: two claims find none."""
    return sum(1 for q in queries if q["sql"].startswith("WITH head AS ("))


def test_pending_deliveries_are_processed_together_each_group_in_receipt_order(
    client, django_capture_on_commit_callbacks, generic, settings
):
    capture = django_capture_on_commit_callbacks
    ids = [fire(client, capture, generic, title=f"db-{n}", group_key="db") for n in range(4)]
    web = fire(client, capture, generic, title="web-0", group_key="web")
    ids.append(fire(client, capture, generic, title="db-4", group_key="db"))
    hashes = dict(WebhookDelivery.objects.values_list("pk", "group_hash"))
    # Noted on receipt: one group per delivery, the same hash for the same group.
    assert len({hashes[pk] for pk in ids}) == 1
    assert hashes[web] not in ("", hashes[ids[0]])

    with CaptureQueriesContext(connection) as queries:
        assert drain() == 6
    # The six deliveries of both groups in one claim, then none is left (two looks).
    assert claims(queries.captured_queries) == 3
    assert not WebhookDelivery.objects.exclude(status=DeliveryStatus.PROCESSED).exists()
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}
    db, other = (AlertGroup.objects.get(key=key).incident for key in ("db", "web"))
    assert db != other
    titles = list(Alert.objects.filter(incident=db).order_by("pk").values_list("title", flat=True))
    assert titles == [f"db-{n}" for n in range(5)]
    assert Incident.objects.count() == 2
    timeline = db.timeline.filter(kind="alert").order_by("pk").values_list("message", flat=True)
    # Each delivery wrote its own timeline entry, in the order they were received.
    assert [entry.split(":")[1].split(" (")[0].strip() for entry in timeline] == [
        f"db-{n}" for n in range(5)
    ]
    assert timeline[0].startswith("Alert opened this incident")


def test_the_batch_size_is_a_setting(client, django_capture_on_commit_callbacks, generic, settings):
    settings.VIGIL_ALERT_BATCH = 2
    for n in range(5):
        fire(client, django_capture_on_commit_callbacks, generic, title=f"db-{n}", group_key="db")
    with CaptureQueriesContext(connection) as queries:
        assert drain() == 5
    assert claims(queries.captured_queries) == 5  # 2 + 2 + 1, then none left (two looks)
    assert Alert.objects.filter(incident__isnull=False).count() == 5
    assert Incident.objects.count() == 1


def test_an_error_in_one_delivery_of_a_batch_records_it_and_processes_the_others(
    client, django_capture_on_commit_callbacks, generic
):
    ids = [
        fire(client, django_capture_on_commit_callbacks, generic, title=f"db-{n}", group_key="db")
        for n in range(4)
    ]
    # Stored whole, unreadable now (a disk fault, a hand edit): the third fails on processing.
    WebhookDelivery.objects.filter(pk=ids[2]).update(body="{not json")
    # Two claims: the four together (rolled back by the third's error, which is recorded),
    # then the three others. The drain counts the failed attempt too.
    assert drain() == 4
    broken = WebhookDelivery.objects.get(pk=ids[2])
    assert (broken.status, broken.attempts) == (DeliveryStatus.PENDING, 1)
    assert "JSONDecodeError" in broken.error
    others = WebhookDelivery.objects.exclude(pk=ids[2])
    assert set(others.values_list("status", "attempts")) == {(DeliveryStatus.PROCESSED, 1)}
    assert sorted(Alert.objects.values_list("title", flat=True)) == ["db-0", "db-1", "db-3"]
    assert Incident.objects.count() == 1


def test_a_delivery_whose_alerts_fall_in_several_groups_is_processed_alone(
    client, django_capture_on_commit_callbacks, service
):
    integration = make_integration("alertmanager", service=service, group_by=["instance"])
    body = alertmanager_payload()
    assert len({a["labels"]["instance"] for a in body["alerts"]}) > 1
    one = copy.deepcopy(body)
    one["alerts"] = one["alerts"][:1]
    for payload in (body, one, one):
        response, _ = post(
            client,
            hook_path(integration),
            payload,
            capture=django_capture_on_commit_callbacks,
            Authorization=f"Bearer {integration.secret}",
        )
        assert response.status_code == 202, response.content
    several, first, second = WebhookDelivery.objects.order_by("pk")
    # The integration's grouping rule decides: by instance, not by Alertmanager's groupKey.
    assert several.group_hash == ""
    assert first.group_hash == second.group_hash != ""
    with CaptureQueriesContext(connection) as queries:
        assert drain() == 3
    # Alone, then the other two together, then none left (two looks).
    assert claims(queries.captured_queries) == 4
    assert not WebhookDelivery.objects.exclude(status=DeliveryStatus.PROCESSED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_drains_at_once_process_every_delivery_of_two_busy_groups_once(
    client, django_capture_on_commit_callbacks, generic
):
    for n in range(40):
        for group in ("db", "web"):
            fire(
                client,
                django_capture_on_commit_callbacks,
                generic,
                title=f"{group}-{n}",
                group_key=group,
            )
    done = in_threads(*[lambda: deliveries_drain(budget_seconds=120)] * 2, timeout=180)
    assert sum(done) == 80
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {
        (DeliveryStatus.PROCESSED, 1)
    }
    assert Alert.objects.filter(incident__isnull=False).count() == 80
    assert Incident.objects.count() == 2
    for group in AlertGroup.objects.all():
        assert Alert.objects.filter(incident=group.incident).count() == 40


def test_a_storm_of_new_groups_is_one_batch_whose_incidents_one_task_follows(
    client, django_capture_on_commit_callbacks, generic
):
    capture = django_capture_on_commit_callbacks
    for n in range(6):
        fire(client, capture, generic, title=f"host-{n} down", group_key=f"host-{n}")
    publish = mock.Mock()
    many, single = (
        incident_tasks.incident_events_follow_many_task,
        incident_tasks.incident_events_follow_task,
    )
    with (
        mock.patch.object(many, "apply_async", publish),
        mock.patch.object(single, "apply_async") as one,
        CaptureQueriesContext(connection) as queries,
        capture(execute=True),
    ):
        assert alert_deliveries_drain_task() == 6
    assert claims(queries.captured_queries) == 3  # the six together, then none left (two looks)
    # Six incidents, their events queued as one task (Sev 3: the default queue), none alone.
    numbers = set(Incident.objects.values_list("pk", flat=True))
    assert len(numbers) == 6
    assert one.call_count == 0
    assert publish.call_count == 1
    args, options = publish.call_args.kwargs["args"], publish.call_args.kwargs
    assert sorted(args[0]) == sorted(numbers) and args[1] is False
    assert options["queue"] == "vigil"
    events = IncidentEvent.objects.filter(incident__in=numbers)
    # Stamped published: the sweep leaves them to that task.
    assert not events.filter(published_at__isnull=True).exists()
    # Each delivery's timeline, as alone: "logged" and the alert that opened it.
    for incident in Incident.objects.all():
        kinds = list(incident.timeline.order_by("pk").values_list("kind", flat=True))
        assert kinds == ["created", "alert"], kinds

    # The task follows them one after the other; past its budget it queues the rest again.
    with mock.patch.object(many, "apply_async") as again, capture(execute=True):
        incidents_events_follow_many(args[0], urgent=False, budget_seconds=0)
    assert again.call_args.kwargs["args"] == [args[0][1:], False]
    assert events.filter(status=EventStatus.DONE).count() == 1
    with capture(execute=True):
        incidents_events_follow_many(args[0][1:], urgent=False, budget_seconds=60)
    assert events.filter(status=EventStatus.DONE).count() == 6


def test_a_batch_opens_its_incidents_as_deliveries_processed_one_by_one_do(
    client, django_capture_on_commit_callbacks, service, settings
):
    """The incidents a batch of deliveries opens (written together: numbers, rows, service
    links, first history records, events, alert and group links, timeline) are those its
    deliveries open one batch each: nothing differs but the ids and times."""
    capture = django_capture_on_commit_callbacks
    integration = make_integration("generic", service=service, default_severity=3)
    results = {}
    for mode, batch in (("alone", 1), ("batched", 25)):
        settings.VIGIL_ALERT_BATCH = batch
        first = Incident.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        for n in range(5):
            fire(
                client,
                capture,
                integration,
                title=f"{mode}-host-{n} down",
                group_key=f"{mode}-host-{n}",
                severity="critical" if n % 2 else "warning",
            )
        with CaptureQueriesContext(connection) as queries:
            assert drain() == 5
        results[mode] = (
            incidents_seen(Incident.objects.filter(pk__gt=first), strip=("alone-", "batched-")),
            claims(queries),
        )
    (alone, alone_claims), (batched, batched_claims) = results["alone"], results["batched"]
    assert (alone_claims, batched_claims) == (7, 3)
    assert len(batched) == 5
    # In another order: a batch goes by its groups' hashes.
    assert sorted(batched, key=lambda i: i["title"]) == sorted(alone, key=lambda i: i["title"])
    numbers = list(Incident.objects.order_by("pk").values_list("number", flat=True))
    # One sequence for the day, in order, none skipped or given twice.
    assert [int(number.rsplit("-", 1)[1]) for number in numbers] == list(range(1, 11))


def test_a_batch_whose_groups_cannot_be_locked_together_locks_them_one_by_one(
    client, django_capture_on_commit_callbacks, generic
):
    # The statement that locks the batch's groups together fails (a value the database
    # refuses): rolled back to its savepoint, each delivery locks its own groups, and a delivery
    # whose group is refused is recorded as failed there, the others processed.
    capture = django_capture_on_commit_callbacks
    for n in range(3):
        fire(client, capture, generic, title=f"db-{n}", group_key=f"host-{n}")
    fire(client, capture, generic, title="db-again", group_key="host-0")
    refused = mock.patch(
        "incidents.detection.processing._groups_upsert_sql",
        lambda count: (
            "INSERT INTO incidents_alertgroup (integration_id, key_hash, key, created_at) VALUES "
            + ", ".join(["(%s, %s, CAST(%s AS text) || NULL, %s)"] * count)
            + " RETURNING id, incident_id, integration_id, key_hash"
        ),
    )
    with refused, CaptureQueriesContext(connection) as queries:
        assert drain() == 4
    assert claims(queries) == 3
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {
        (DeliveryStatus.PROCESSED, 1)
    }
    assert Incident.objects.count() == 3
    assert AlertGroup.objects.get(key="host-0").incident.alerts.count() == 2


def test_a_request_right_after_a_kick_queues_nothing_and_the_drain_looks_again_for_it(
    client, django_capture_on_commit_callbacks, generic, monkeypatch
):
    from incidents.detection import intake, processing

    capture = django_capture_on_commit_callbacks
    intake.kick_flag.clear()
    sets = []
    real_set = intake.kick_flag.set
    monkeypatch.setattr(intake.kick_flag, "set", lambda: sets.append(1) or real_set())
    fire(client, capture, generic, title="first", group_key="a")
    fire(client, capture, generic, title="second", group_key="b")
    # The requests' after-commit kicks: the first sets the flag (and queues drains); within
    # KICK_MEMO_SECONDS of it, the second does not even look at the flag.
    assert intake.deliveries_kick() is True
    assert intake.deliveries_kick() is False
    assert len(sets) == 1

    # A drain clears the flag, finds what is pending, and finds nothing; a delivery committed
    # then, by a request that saw the flag set a moment before and queued no drain, is found by
    # the drain's last look, DRAIN_LINGER later.
    late = []

    def linger(seconds):
        assert seconds > intake.KICK_MEMO_SECONDS
        if not late:
            late.append(fire(client, capture, generic, title="late", group_key="c"))

    monkeypatch.setattr(processing.time, "sleep", linger)
    assert drain() == 3
    assert len(late) == 1
    assert sorted(Alert.objects.values_list("title", flat=True)) == ["first", "late", "second"]
    assert not WebhookDelivery.objects.exclude(status=DeliveryStatus.PROCESSED).exists()


def test_deliveries_of_a_batch_that_share_an_alert_count_it_as_one_by_one(
    client, django_capture_on_commit_callbacks, generic
):
    # Two groups, one alert (dedup key): the second delivery counts a repeat on the first's
    # row, as it would alone (a batch writes no row twice in one statement).
    capture = django_capture_on_commit_callbacks
    for group in ("a", "b", "c"):
        fire(client, capture, generic, title="disk full", group_key=group, dedup_key="disk")
    fire(client, capture, generic, title="cpu hot", group_key="d")
    assert drain() == 4
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {
        (DeliveryStatus.PROCESSED, 1)
    }
    disk = Alert.objects.get(fingerprint="disk")
    assert disk.count == 3
    assert Incident.objects.count() == 2


def test_a_batch_whose_alerts_cannot_be_written_together_writes_them_one_by_one(
    client, django_capture_on_commit_callbacks, generic
):
    # The statement that writes the batch's alerts together is refused: rolled back to its
    # savepoint, each delivery writes its own, and every delivery is processed.
    from django.db import IntegrityError

    capture = django_capture_on_commit_callbacks
    for n in range(3):
        fire(client, capture, generic, title=f"db-{n}", group_key=f"host-{n}")

    def refused(items):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        raise IntegrityError("refused")

    with mock.patch("incidents.detection.processing.alerts_upsert_many", refused):
        assert drain() == 3
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {
        (DeliveryStatus.PROCESSED, 1)
    }
    assert Incident.objects.count() == 3
    assert Alert.objects.filter(incident__isnull=False).count() == 3
