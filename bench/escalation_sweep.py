#!/usr/bin/env python
"""Benchmark: the escalation sweep's cost against the number of open incidents, on PostgreSQL.

With 100 incidents due (each owing its acknowledgement timeout and one or two matrix steps) and
1,000 / 10,000 / 100,000 open incidents that are not due, times one ``escalation_sweep`` at each
size and prints the time per size and the ratio t(100k)/t(1k). Target: <= 2 (the sweep touches
what is due, not what is open). Prints the cost per due incident beside the database's round
trip (target: <= 5 ms on an idle machine), then sweeps a mass outage: ``--storm`` (1,000)
unacknowledged incidents due at once, bulk-inserted at the largest size, in one sweep (target:
< 10 s). Also prints the due query's plan at the largest size.

Creates (drops first) its own database, migrates it, gives the seeded contacts real addresses,
then grows the open set by bulk inserts (a benchmark is not the application): incidents in
active statuses with their escalation row (a real policy snapshot, due times in the future or
none left), the escalation events of the steps they already passed, and their initial
notifications and timeline entries. The due incidents are logged through ``incident_create``
with a back-dated detection time, exactly as the application would log them, before each timed
sweep; after it they are stopped so the open count stays as stated.

    python bench/escalation_sweep.py [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_sweep]
                                     [--sizes 1000,10000,100000] [--due 100] [--repeat 3]
                                     [--storm 1000] [--profile]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_sweep"
TARGET_RATIO = 2.0
# 1,000 incidents due at once (a mass outage) are swept well within one 30-second interval.
STORM_TARGET_S = 10.0
# And each due incident costs at most this much (on an idle machine).
PER_DUE_TARGET_MS = 5.0
SEED = 20260302
BATCH = 5000
# Bulk-inserted incidents get ids from here, clear of those the services hand out.
FIRST_ID = 10_000_000
ACTIVE = ["acknowledged", "investigating", "mitigating", "monitoring"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_SWEEP_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to (re)create for the bench; it is dropped first.",
    )
    parser.add_argument("--sizes", default="1000,10000,100000", help="open incidents, ascending")
    parser.add_argument("--due", type=int, default=100, help="incidents due at each sweep")
    parser.add_argument("--repeat", type=int, default=3, help="timed sweeps per size (median)")
    parser.add_argument(
        "--storm",
        type=int,
        default=1000,
        help="incidents due at once in the mass-outage run, at the largest size (0: none)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the first timed sweep"
    )
    return parser.parse_args()


def configure(database_url: str) -> None:
    """Production-like settings (DEBUG off) on the bench database, nothing shared with others."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            # Publishing the deliveries after commit is part of the cost; no worker consumes them.
            "CELERY_BROKER_URL": "memory://",
            "VIGIL_VAR_DIR": tempfile.mkdtemp(prefix="vigil-bench-sweep-"),
            "VIGIL_LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("REDIS_URL", None)


def recreate_database(database_url: str) -> None:
    import psycopg

    url = urlparse(database_url)
    name = url.path.lstrip("/")
    if not name or url.scheme not in ("postgres", "postgresql"):
        sys.exit(f"--database-url must name a PostgreSQL database, got {database_url!r}")
    admin_url = urlunparse(url._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def reachable_contacts() -> None:
    """The seed's contacts hold placeholders; give each a phone number and a Slack handle so
    every channel of every severity is written, as in a configured installation."""
    from incidents.models import Contact

    for n, contact in enumerate(Contact.objects.order_by("pk"), start=1):
        contact.phone = f"+1415555{n:04d}"
        contact.slack_handle = f"@contact-{n}"
        contact.save()


class OpenSet:
    """Open incidents that are not due, bulk-inserted in realistic shape."""

    def __init__(self, now: datetime) -> None:
        from escalation.services.snapshot import policy_snapshot_take
        from incidents.models import PriorityMatrixCell, SeverityLevel

        self.now = now
        self.rng = random.Random(SEED)
        self.snapshot = policy_snapshot_take(now=now)
        self.severities = {s.level: s for s in SeverityLevel.objects.all()}
        self.priority = {
            (c.urgency, c.impact): c.priority for c in PriorityMatrixCell.objects.all()
        }
        self.count = 0

    def grow_to(self, total: int) -> None:
        while self.count < total:
            size = min(BATCH, total - self.count)
            self._insert(range(self.count, self.count + size))
            self.count += size

    def insert_due(self, count: int) -> list[int]:
        """``count`` unacknowledged incidents detected 31-70 minutes ago, each owing its
        acknowledgement timeout and one or two matrix steps (a mass outage that nobody has
        answered yet), with their escalation rows and initial pages, bulk-inserted."""
        numbers = range(self.count, self.count + count)
        self._insert(numbers, owing=True)
        self.count += count
        return [FIRST_ID + n for n in numbers]

    def _insert(self, numbers: range, *, owing: bool = False) -> None:
        from django.db import transaction

        from escalation.models import EscalationEvent, IncidentEscalation, Notification
        from incidents.models import Incident, TimelineEntry

        incidents, escalations, events, notifications, timeline = [], [], [], [], []
        for n in numbers:
            rng = self.rng
            pk = FIRST_ID + n
            severity = rng.choices([1, 2, 3, 4], weights=[3, 12, 45, 40])[0]
            if owing:
                severity = 1 if n % 2 else 2
            level = self.severities[severity]
            # Open between a few minutes and five days, acknowledged in time (due: open for
            # 31 to 70 minutes, not acknowledged).
            age = timedelta(minutes=rng.uniform(31, 70) if owing else rng.uniform(5, 5 * 24 * 60))
            detected = self.now - age
            acknowledged = None if owing else detected + min(age / 2, level.response_target / 2)
            impact, urgency = rng.choice(["high", "medium", "low"]), rng.choice(["high", "medium"])
            day = date(2001, 1, 1) + timedelta(days=n // 900)
            incidents.append(
                Incident(
                    pk=pk,
                    number=f"INC-{day:%Y-%m%d}-{n % 900 + 1:03d}",
                    day=day,
                    sequence=n % 900 + 1,
                    title=f"Elevated error rate on service {n % 40:02d}",
                    summary="Customers see intermittent errors.",
                    severity_id=severity,
                    impact=impact,
                    urgency=urgency,
                    priority=self.priority[(urgency, impact)],
                    status="open" if owing else rng.choice(ACTIVE),
                    detected_at=detected,
                    acknowledged_at=acknowledged,
                    response_due_at=detected + level.response_target,
                    resolution_due_at=detected + level.resolution_target,
                )
            )
            row = self.snapshot["matrix"].get(str(severity), [])
            passed = [s for s in row if detected + timedelta(seconds=s["elapsed_s"]) <= self.now]
            upcoming = [s for s in row if s not in passed]
            if owing:
                upcoming, passed = row, []
            escalations.append(
                IncidentEscalation(
                    incident_id=pk,
                    started_at=detected,
                    policy_snapshot=self.snapshot,
                    severity_from=detected,
                    next_due_at=(
                        detected + timedelta(seconds=upcoming[0]["elapsed_s"]) if upcoming else None
                    ),
                    ack_due_at=detected + level.response_target if owing else None,
                )
            )
            for step in passed:
                due = detected + timedelta(seconds=step["elapsed_s"])
                events.append(
                    EscalationEvent(
                        incident_id=pk,
                        step=step["step"],
                        severity=severity,
                        elapsed=timedelta(seconds=step["elapsed_s"]),
                        target=self.snapshot["levels"][step["level"]]["name"],
                        due_at=due,
                        fired_at=due + timedelta(seconds=rng.uniform(0, 30)),
                    )
                )
            for person in ("c1", "c3", "c5"):
                for channel in level.notification_channels:
                    notifications.append(
                        Notification(
                            incident_id=pk,
                            recipient=f"{person}@example.com",
                            channel=channel,
                            template=f"escalation/page/{channel}.txt",
                            subject=f"[Sev {severity}] incident {n}",
                            body="Paged.",
                            reason=f"Sev {severity} incident logged",
                            idempotency_key=f"initial:{pk}:sev{severity}:{person}:{channel}",
                            status="sent",
                            attempts=1,
                            next_attempt_at=detected,
                            sent_at=detected + timedelta(seconds=2),
                        )
                    )
            timeline.append(
                TimelineEntry(
                    incident_id=pk,
                    occurred_at=detected,
                    kind="created",
                    source="webhook",
                    message="Incident logged.",
                )
            )
            timeline.append(
                TimelineEntry(
                    incident_id=pk,
                    occurred_at=detected,
                    kind="notification",
                    source="system",
                    message="Paged the response team.",
                )
            )
        with transaction.atomic():
            Incident.objects.bulk_create(incidents, batch_size=1000)
            IncidentEscalation.objects.bulk_create(escalations, batch_size=1000)
            EscalationEvent.objects.bulk_create(events, batch_size=2000)
            Notification.objects.bulk_create(notifications, batch_size=2000)
            TimelineEntry.objects.bulk_create(timeline, batch_size=2000)


def log_due(count: int, now: datetime, rng: random.Random) -> list[int]:
    """``count`` incidents logged through the service, detected long enough ago that each owes
    its acknowledgement timeout and one or two matrix steps at ``now``. Their events are followed
    here (paging, the escalation started), as a worker does once each creation commits."""
    from incidents.events import incident_events_follow
    from incidents.models import Source
    from incidents.services import incident_create

    ids = []
    for n in range(count):
        severity = 1 if n % 2 else 2
        incident = incident_create(
            actor=None,
            source=Source.WEBHOOK,
            title=f"Checkout errors {n}",
            severity=severity,
            detected_at=now - timedelta(minutes=rng.uniform(31, 70)),
        )
        incident_events_follow(incident_id=incident.pk)
        ids.append(incident.pk)
    return ids


def stop(ids: list[int], now: datetime) -> None:
    from escalation.models import IncidentEscalation

    IncidentEscalation.objects.filter(incident_id__in=ids).update(
        stopped_at=now, stop_reason="bench", next_due_at=None, ack_due_at=None
    )


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def round_trip_ms() -> float:
    """The database's round trip for ``SELECT 1``, to read the absolute figures against: the
    sweep is a few dozen short queries per due incident."""
    from django.db import connection

    with connection.cursor() as cursor:
        started = time.perf_counter()
        for _ in range(200):
            cursor.execute("SELECT 1")
            cursor.fetchone()
    return (time.perf_counter() - started) / 200 * 1000


def due_plan(now: datetime) -> str:
    from django.db import connection

    from escalation.services.timers import escalation_due

    query = escalation_due(now=now).order_by("pk").values("pk")[:200]
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def main() -> int:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    configure(args.database_url)
    recreate_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from escalation.services import escalation_sweep
    from incidents.models import Incident

    call_command("migrate", verbosity=0)
    reachable_contacts()
    now = timezone.now()
    rng = random.Random(SEED + 1)
    open_set = OpenSet(now)
    results: dict[int, dict] = {}

    print(f"Escalation sweep bench on {args.database_url}")
    print(f"{args.due} incidents due per sweep, {args.repeat} sweeps per size (median)")
    rt = round_trip_ms()
    print(f"Database round trip (SELECT 1): {rt:.2f} ms\n")
    for size in sizes:
        started = time.perf_counter()
        open_set.grow_to(size)
        analyze()
        seeded = time.perf_counter() - started
        times, cpu_times, fired_counts = [], [], []
        for _ in range(args.repeat):
            ids = log_due(args.due, now, rng)
            analyze()
            profiler = None
            if args.profile and not times:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            t0, c0 = time.perf_counter(), time.process_time()
            fired = escalation_sweep(now=now)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            if profiler is not None:
                import pstats

                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
            fired_counts.append(len(fired))
            logged = set(Incident.objects.filter(pk__in=ids).values_list("number", flat=True))
            assert {f.incident for f in fired} == logged, (
                "the sweep did not fire every due incident: "
                f"{sorted(logged - {f.incident for f in fired})} not fired, "
                f"{sorted({f.incident for f in fired} - logged)} fired besides"
            )
            assert escalation_sweep(now=now) == [], "a second sweep fired again"
            stop(ids, now)
        median = statistics.median(times)
        results[size] = {
            "median": median,
            "cpu": statistics.median(cpu_times),
            "fired": statistics.median(fired_counts),
        }
        print(
            f"{size:>7,} open: sweep {median * 1000:8.1f} ms "
            f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}) for "
            f"{args.due} due incidents, {results[size]['fired']:.0f} steps fired "
            f"[{median / args.due * 1000:.2f} ms per due incident, "
            f"{median / args.due * 1000 / rt:.0f} round trips' worth, this process's CPU "
            f"{results[size]['cpu'] / args.due * 1000:.2f} ms; seeding {seeded:.0f} s]"
        )

    per_due = results[sizes[-1]]["median"] / args.due * 1000
    print(
        f"\nPer due incident at {sizes[-1]:,} open: {per_due:.2f} ms against a {rt:.2f} ms round"
        f" trip (target <= {PER_DUE_TARGET_MS:g} ms on an idle machine: "
        f"{'met' if per_due <= PER_DUE_TARGET_MS else 'MISSED'})"
    )
    storm_ok = True
    if args.storm:
        ids = open_set.insert_due(args.storm)
        analyze()
        t0, c0 = time.perf_counter(), time.process_time()
        fired = escalation_sweep(now=now)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        incidents = {f.incident for f in fired}
        assert len(incidents) == args.storm, "the sweep did not fire every due incident"
        assert escalation_sweep(now=now) == [], "a second sweep fired again"
        stop(ids, now)
        per_due = elapsed / args.storm * 1000
        storm_ok = elapsed < STORM_TARGET_S
        print(
            f"Mass outage: {args.storm:,} incidents due at once ({open_set.count - args.storm:,}"
            f" open besides): one sweep {elapsed:.2f} s, {len(fired)} steps fired "
            f"[{per_due:.2f} ms per due incident, {per_due / rt:.0f} round trips' worth, "
            f"this process's CPU {cpu / args.storm * 1000:.2f} ms]"
            f"  (target < {STORM_TARGET_S:g} s: {'met' if storm_ok else 'MISSED'})"
        )

    print("\nDue query plan at the largest size:")
    print(due_plan(now))
    smallest, largest = sizes[0], sizes[-1]
    ratio = results[largest]["median"] / results[smallest]["median"]
    ok = ratio <= TARGET_RATIO
    print(
        f"\nt({largest:,}) / t({smallest:,}) = {ratio:.2f}  "
        f"(target <= {TARGET_RATIO:g}: {'met' if ok else 'MISSED'})"
    )
    return 0 if ok and storm_ok else 1


if __name__ == "__main__":
    sys.exit(main())
