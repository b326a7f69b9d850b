#!/usr/bin/env python
"""Benchmark: what one alert that opens an incident costs the worker, in-process, on PostgreSQL.

The storm bench (``alert_storm.py``) measures the whole installation under a storm, where the
machine's other processes (gunicorn, the broker, the sends) blur what the path itself costs.
This one runs the path alone, in one process, one incident after the other: the intake task
turns a stored Alertmanager delivery (a new group, one Sev 1 alert) into an alert and an
incident (``alert_delivery_process_task``), then the incident's ``incident_created`` event is
followed by every subscribed handler (``incident_events_follow``: escalation pages the response
team into the outbox, the stakeholder schedule, the direct-contact tasks, the KPI rollups). The
pages are not sent (no worker consumes the broker).

Prints, per incident: the median and mean milliseconds of each step and of the whole path, the
queries of each step (counted on a separate pass), and the whole path beside the database's
``SELECT 1`` round trip measured in the same run (the ratio is what compares across machines).

Creates (drops first) its own database, migrates it and uses a Redis database for the cache, as
production does. Deliveries are accepted through the real webhook view (Django's test client).

    python bench/new_incident_path.py [--count 300] [--warm 20]
        [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_path]
        [--redis-url redis://127.0.0.1:6379/6] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from alert_storm import load_average, storm_bodies  # noqa: E402
from escalation_sweep import configure, reachable_contacts, recreate_database  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_path"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/6"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="incidents timed")
    parser.add_argument("--warm", type=int, default=20, help="incidents opened before timing")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_PATH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to (re)create for the bench; it is dropped first.",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="Redis database for the cache (flushed)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the timed incidents"
    )
    parser.add_argument(
        "--joining",
        type=int,
        default=400,
        help="deliveries of one group drained per round, each alone and batched (0: skip)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the joining comparison")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configure(args.database_url)
    os.environ["REDIS_URL"] = args.redis_url
    recreate_database(args.database_url)

    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from incidents.detection.integrations import integration_create
    from incidents.events import incident_events_follow
    from incidents.memo import tokens_scope
    from incidents.models import Alert, Service, Source, WebhookDelivery
    from incidents.tasks import alert_delivery_process_task

    call_command("migrate", verbosity=0)
    reachable_contacts()
    cache.clear()
    service = Service.objects.create(slug="checkout", name="Checkout", customer_facing=True)
    integration = integration_create(
        actor=None, source=Source.ADMIN, kind="alertmanager", name="path", service=service
    )
    client = Client()
    accept(client, integration, storm_bodies(args.warm + args.count + 5))
    deliveries = list(WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True))

    def one(delivery_id: int) -> tuple[float, float]:
        # Each step is a task of its own in a worker: one unit of work for the policy tokens.
        start = time.perf_counter()
        with tokens_scope():
            assert alert_delivery_process_task(delivery_id) == "processed"
        opened = time.perf_counter()
        incident_id = (
            Alert.objects.filter(group__incident__isnull=False)
            .order_by("-pk")
            .values_list("incident_id", flat=True)
            .first()
        )
        followed_at = time.perf_counter()
        with tokens_scope():
            incident_events_follow(incident_id=incident_id)
        done = time.perf_counter()
        return (opened - start) * 1000, (done - followed_at) * 1000

    for delivery_id in deliveries[: args.warm]:
        one(delivery_id)

    with connection.cursor() as cursor:
        trips = []
        for _ in range(500):
            start = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            trips.append((time.perf_counter() - start) * 1000)
    round_trip = statistics.median(trips)

    load_start = load_average()
    cpu_start = time.process_time()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    timed = [one(pk) for pk in deliveries[args.warm : args.warm + args.count]]
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
    cpu = (time.process_time() - cpu_start) * 1000 / args.count
    load_end = load_average()

    counted = []
    for delivery_id in deliveries[args.warm + args.count :]:
        with CaptureQueriesContext(connection) as process_queries:
            assert alert_delivery_process_task(delivery_id) == "processed"
        incident_id = Alert.objects.order_by("-pk").values_list("incident_id", flat=True).first()
        with CaptureQueriesContext(connection) as follow_queries:
            incident_events_follow(incident_id=incident_id)
        counted.append((len(process_queries), len(follow_queries)))

    process = [p for p, _ in timed]
    follow = [f for _, f in timed]
    whole = [p + f for p, f in timed]
    queries = min(counted, key=sum)
    print(
        f"New-incident path, {args.count} incidents after {args.warm} warm-up "
        f"(2 CPUs, load {load_start} at the start, {load_end} at the end)"
    )
    print(f"  SELECT 1 round trip: {round_trip:.3f} ms (median of 500)")
    print(
        f"  intake (alert opens the incident): median {statistics.median(process):.2f} ms, "
        f"mean {statistics.mean(process):.2f} ms, {queries[0]} queries"
    )
    print(
        f"  following incident_created (every handler): median {statistics.median(follow):.2f}"
        f" ms, mean {statistics.mean(follow):.2f} ms, {queries[1]} queries"
    )
    median = statistics.median(whole)
    print(
        f"  whole path: median {median:.2f} ms, mean {statistics.mean(whole):.2f} ms, "
        f"{sum(queries)} queries; process CPU {cpu:.2f} ms per incident"
    )
    print(f"  whole path / round trip: {median / round_trip:.0f}x")
    print(f"  incidents/s one after the other: {1000 / statistics.mean(whole):.1f}")
    if args.joining:
        joining(args, client, service)
    connection.close()
    cache.clear()


def accept(client, integration, bodies: list[bytes]) -> None:
    """POST each body to the integration's Alertmanager webhook through the real view."""
    from incidents.detection.integrations import integration_urls

    path = integration_urls(integration)["webhook_url"].split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1]
    for body in bodies:
        response = client.post(
            path,
            body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {integration.secret}"},
        )
        assert response.status_code == 202, response.content


def joining(args: argparse.Namespace, client, service) -> None:
    """Many deliveries of one group waiting (a grouping rule by ``job``: the first alert opens
    the incident, the others join it), drained by one process: each delivery in its own
    transaction (``VIGIL_ALERT_BATCH=1``) against the default batches, alternating."""
    from django.conf import settings

    from incidents.detection.integrations import integration_create
    from incidents.detection.processing import deliveries_drain
    from incidents.models import Alert, Source, WebhookDelivery

    default = settings.VIGIL_ALERT_BATCH
    bodies = storm_bodies(args.joining)
    figures: dict[int, list[float]] = {1: [], default: []}
    load_start = load_average()
    for round_ in range(args.rounds):
        for batch in (1, default):
            integration = integration_create(
                actor=None,
                source=Source.ADMIN,
                kind="alertmanager",
                name=f"joining {round_} {batch}",
                service=service,
                group_by=["job"],
            )
            accept(client, integration, bodies)
            settings.VIGIL_ALERT_BATCH = batch
            start = time.perf_counter()
            done = deliveries_drain(budget_seconds=3600)
            elapsed = time.perf_counter() - start
            settings.VIGIL_ALERT_BATCH = default
            assert done == args.joining, done
            assert not WebhookDelivery.objects.filter(integration=integration, status="pending")
            attached = Alert.objects.filter(integration=integration, incident__isnull=False)
            assert attached.values("incident").distinct().count() == 1
            assert attached.count() == args.joining
            figures[batch].append(elapsed * 1000 / args.joining)
    load_end = load_average()
    alone, batched = (statistics.median(figures[b]) for b in (1, default))
    print(
        f"Joining deliveries: {args.joining} deliveries of one group (one opens the incident, "
        f"the rest join it), drained by one process, {args.rounds} rounds "
        f"(load {load_start} at the start, {load_end} at the end)"
    )
    print(f"  each alone: {alone:.2f} ms per delivery ({1000 / alone:.0f}/s)")
    print(f"  batched by {default}: {batched:.2f} ms per delivery ({1000 / batched:.0f}/s)")
    print(f"  batched / alone throughput: {alone / batched:.2f}x")


if __name__ == "__main__":
    main()
