#!/usr/bin/env python
"""Benchmark: the admin incident list against the admin index page, at 10,000 and 100,000
incidents on PostgreSQL.

Creates (drops first) its own database, migrates it, seeds realistic incidents with services,
role assignments, timelines and SLA breaches, then, logged in as a superuser, times
``/admin/incidents/incident/`` (default view) and ``/admin/`` in the same run: warm-up, then
interleaved requests, medians. Prints the list/index ratio at each size and the list's query
count at each size. Targets: list within 3x the index at 100,000 incidents; equal query counts.

Seeding uses bulk inserts for speed (a benchmark is not the application); the rows follow the
same rules the services apply (ID format and per-day sequence, priority from the matrix, SLA
due times from the severity targets, timestamps in order, a timeline entry per event).

    python bench/admin_list.py [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench]
                               [--sizes 10000,100000] [--requests 20] [--warmup 3]
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
import warnings
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench"
LIST_URL = "/admin/incidents/incident/"
INDEX_URL = "/admin/"
# Also measured, for information: the list with every incident, not only the active ones the
# default view opens on (paginated; the paginator counts all rows).
LIST_ALL_URL = "/admin/incidents/incident/?status=all"
# A search by a word of the title, which looks at every status (about a tenth of the titles
# hold it); on PostgreSQL the trigram index on UPPER(title) answers the count and rare words.
SEARCH_URL = "/admin/incidents/incident/?q=timeouts"
TARGET_RATIO = 3.0
SEED = 20240611
INCIDENTS_PER_DAY = 100
BATCH = 5000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to (re)create for the bench; it is dropped first.",
    )
    parser.add_argument("--sizes", default="10000,100000", help="incident counts, ascending")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per page")
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
            "CELERY_BROKER_URL": "memory://",
            "VIGIL_VAR_DIR": tempfile.mkdtemp(prefix="vigil-bench-"),
            "VIGIL_LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("REDIS_URL", None)
    # WhiteNoise looks for collected static files; the bench serves them from the apps.
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)


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


# --- Seeding ------------------------------------------------------------------------------------

SEVERITY_WEIGHTS = {1: 3, 2: 12, 3: 45, 4: 40}
LEVELS = ["high", "medium", "low"]
DETECTION = [
    "monitoring",
    "monitoring",
    "monitoring",
    "customer_report",
    "support_escalation",
    "security_monitoring",
    "third_party",
    "routine_check",
]
SYMPTOMS = [
    "Elevated error rate on",
    "Slow responses from",
    "Timeouts calling",
    "Partial outage of",
    "Login failures on",
    "Disk usage above 85 % on",
    "CPU above 90 % on",
    "Failed deployments of",
    "Stale data served by",
    "Queue backlog in",
]
ACTIVE = ["open", "acknowledged", "investigating", "mitigating", "monitoring"]


def plan(total: int, now: datetime) -> list[dict]:
    """The full set of incidents, oldest first, each with its number already allocated."""
    rng = random.Random(SEED)
    days = total // INCIDENTS_PER_DAY + 1
    rows = []
    for _ in range(total):
        age = timedelta(seconds=rng.uniform(60, days * 86400))
        rows.append({"detected_at": now - age, "rng": random.Random(rng.random())})
    rows.sort(key=lambda r: r["detected_at"])
    per_day: Counter = Counter()
    for row in rows:
        day = row["detected_at"].date()
        per_day[day] += 1
        row["day"], row["sequence"] = day, per_day[day]
        row["number"] = f"INC-{day:%Y-%m%d}-{per_day[day]:03d}"
    return rows


def _status(rng: random.Random, age: timedelta) -> str:
    if age < timedelta(hours=18):
        return rng.choice([*ACTIVE, "investigating", "monitoring", "resolved", "resolved"])
    if age < timedelta(days=7):
        return rng.choices(["resolved", "closed", "cancelled"], weights=[35, 60, 5])[0]
    return rng.choices(["closed", "cancelled"], weights=[95, 5])[0]


class Seeder:
    def __init__(self, now: datetime) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        from incidents.models import PriorityMatrixCell, ResponseRole, Service, SeverityLevel

        self.now = now
        self.severities = {s.level: s for s in SeverityLevel.objects.all()}
        self.priority = {
            (c.urgency, c.impact): c.priority for c in PriorityMatrixCell.objects.all()
        }
        self.roles = {r.key: r for r in ResponseRole.objects.all()}
        User = get_user_model()
        self.admin = User.objects.create_superuser("bench-admin", "bench@example.com", None)
        self.people: dict[str, list] = {}
        for key, role in self.roles.items():
            group = role.group or Group.objects.get(name="Viewer")
            users = []
            for i in range(8):
                user = User.objects.create_user(
                    f"{key}-{i}",
                    f"{key}-{i}@example.com",
                    None,
                    is_staff=True,
                    first_name=role.name.split()[0],
                    last_name=f"{i}",
                )
                user.groups.add(group)
                users.append(user)
            self.people[key] = users
        kinds = ["production", "customer_app", "internal", "infrastructure", "third_party"]
        self.services = Service.objects.bulk_create(
            Service(
                slug=f"service-{i:02d}",
                name=f"Service {i:02d}",
                public_name=f"Service {i:02d}" if i % 3 else "",
                kind=kinds[i % len(kinds)],
                tier=1 + i % 3,
                customer_facing=bool(i % 3),
                owner=self.people["technical_lead"][i % 8],
            )
            for i in range(40)
        )

    def insert(self, rows: list[dict]) -> None:
        from django.db import connection, transaction

        from incidents.models import (
            Incident,
            IncidentDaySequence,
            RoleAssignment,
            SlaBreach,
            TimelineEntry,
        )

        through = Incident.services.through
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            with transaction.atomic():
                built = [self._incident(row) for row in chunk]
                incidents = Incident.objects.bulk_create([b["incident"] for b in built])
                links, roles, timeline, breaches = [], [], [], []
                for incident, b in zip(incidents, built, strict=True):
                    links += [
                        through(incident_id=incident.pk, service_id=s.pk) for s in b["services"]
                    ]
                    for role_key, user, at in b["roles"]:
                        roles.append(
                            RoleAssignment(
                                incident_id=incident.pk,
                                role=self.roles[role_key],
                                user=user,
                                assigned_at=at,
                                assigned_by=b["manager"],
                            )
                        )
                    for entry in b["timeline"]:
                        timeline.append(TimelineEntry(incident_id=incident.pk, **entry))
                    for target, due, noted in b["breaches"]:
                        breaches.append(
                            SlaBreach(
                                incident_id=incident.pk, target=target, due_at=due, noted_at=noted
                            )
                        )
                through.objects.bulk_create(links)
                RoleAssignment.objects.bulk_create(roles)
                TimelineEntry.objects.bulk_create(timeline)
                SlaBreach.objects.bulk_create(breaches)
        last: dict = defaultdict(int)
        for row in rows:
            last[row["day"]] = max(last[row["day"]], row["sequence"])
        IncidentDaySequence.objects.bulk_create(
            [IncidentDaySequence(day=day, last=value) for day, value in last.items()],
            update_conflicts=True,
            unique_fields=["day"],
            update_fields=["last"],
        )
        with connection.cursor() as cursor:
            # auto_now_add / auto_now stamped the insert time; give rows their story's times.
            cursor.execute(
                "UPDATE incidents_incident SET created_at = detected_at, updated_at = "
                "COALESCE(closed_at, cancelled_at, resolved_at, acknowledged_at, detected_at) "
                "WHERE created_at <> detected_at"
            )
            cursor.execute("VACUUM ANALYZE")

    def _incident(self, row: dict) -> dict:
        from incidents.models import Incident, Kind, Source

        rng: random.Random = row["rng"]
        detected: datetime = row["detected_at"]
        age = self.now - detected
        level = rng.choices(list(SEVERITY_WEIGHTS), weights=list(SEVERITY_WEIGHTS.values()))[0]
        severity = self.severities[level]
        impact, urgency = rng.choice(LEVELS), rng.choice(LEVELS)
        services = rng.sample(self.services, rng.choice([1, 1, 1, 2, 2, 3]))
        status = _status(rng, age)
        service_name = services[0].name
        title = f"{rng.choice(SYMPTOMS)} {service_name}"
        manager = rng.choice(self.people["incident_manager"])
        lead = rng.choice(self.people["technical_lead"])
        source = rng.choice([Source.WEBHOOK, Source.WEBHOOK, Source.ADMIN, Source.API])

        response_due = detected + severity.response_target
        resolution_due = detected + severity.resolution_target
        # The path of actions to the status, each at a planned time: within target mostly,
        # late sometimes; squeezed into the incident's age when the plan runs past now.
        path = {
            "open": [],
            "acknowledged": ["acknowledge"],
            "investigating": ["acknowledge", "investigate"],
            "mitigating": ["acknowledge", "investigate", "mitigate"],
            "monitoring": ["acknowledge", "investigate", "mitigate", "monitor"],
            "resolved": ["acknowledge", "investigate", "mitigate", "monitor", "resolve"],
            "closed": ["acknowledge", "investigate", "mitigate", "monitor", "resolve", "close"],
            "cancelled": ["cancel"],
        }[status]

        def late(target: timedelta, chance: float) -> timedelta:
            share = rng.uniform(1.05, 2.0) if rng.random() < chance else rng.uniform(0.1, 0.9)
            return target * share

        t_ack = detected + late(severity.response_target, 0.08)
        t_res = max(detected + late(severity.resolution_target, 0.1), t_ack + timedelta(minutes=8))
        planned = {
            "acknowledge": t_ack,
            "investigate": t_ack + timedelta(minutes=1),
            "mitigate": t_ack + (t_res - t_ack) / 3,
            "monitor": t_ack + (t_res - t_ack) * 2 / 3,
            "resolve": t_res,
            "close": t_res + timedelta(hours=rng.uniform(1, 48)),
            "cancel": detected + timedelta(minutes=rng.uniform(2, 30)),
        }
        times = {action: planned[action] for action in path}
        if times and max(times.values()) >= self.now:
            for i, action in enumerate(path, start=1):
                times[action] = detected + age * (i / (len(path) + 1))

        acknowledged = times.get("acknowledge")
        mitigated = times.get("monitor")
        resolved = times.get("resolve")
        closed = times.get("close")
        cancelled = times.get("cancel")

        report = status in ("resolved", "closed")
        incident = Incident(
            number=row["number"],
            day=row["day"],
            sequence=row["sequence"],
            title=title,
            summary=f"{title}; {rng.randint(1, 60)} % of requests affected.",
            severity=severity,
            impact=impact,
            urgency=urgency,
            priority=self.priority[(urgency, impact)],
            status=status,
            detection_source=rng.choice(DETECTION),
            customer_facing=any(s.customer_facing for s in services),
            affected_users=rng.choice([None, rng.randint(1, 50_000)]),
            business_impact="Orders delayed, support tickets raised." if report else "",
            root_cause="A configuration change exhausted the pool." if status == "closed" else "",
            resolution="Rolled back the change and restarted the pool." if report else "",
            cancel_reason="Duplicate alert." if cancelled else "",
            impact_started_at=detected - timedelta(minutes=rng.uniform(0, 10)),
            detected_at=detected,
            acknowledged_at=acknowledged,
            mitigated_at=mitigated,
            resolved_at=resolved,
            closed_at=closed,
            cancelled_at=cancelled,
            response_due_at=response_due,
            resolution_due_at=resolution_due,
            created_by=None if source == Source.WEBHOOK else manager,
        )

        timeline = [
            {
                "occurred_at": detected,
                "kind": Kind.CREATED,
                "source": source,
                "actor": None,
                "message": f"Incident logged: Sev {level} ({severity.name}).",
                "data": {"severity": level, "priority": incident.priority},
            }
        ]
        roles = []
        if acknowledged or status == "cancelled":
            assigned = max(detected, (acknowledged or cancelled) - timedelta(seconds=30))
            roles.append(("incident_manager", manager, assigned))
            if status != "cancelled":
                roles.append(("technical_lead", lead, assigned))
                if level <= 2:
                    roles.append(
                        (
                            "communications_lead",
                            rng.choice(self.people["communications_lead"]),
                            assigned,
                        )
                    )
                if level == 1:
                    roles.append(
                        ("business_liaison", rng.choice(self.people["business_liaison"]), assigned)
                    )
        for role_key, user, at in roles:
            timeline.append(
                {
                    "occurred_at": at,
                    "kind": Kind.ROLE,
                    "source": Source.ADMIN,
                    "actor": manager,
                    "message": f"{self.roles[role_key].name}: {user.get_username()} assigned.",
                    "data": {"role": role_key, "user": user.pk},
                }
            )
        before = "open"
        targets = {
            "acknowledge": "acknowledged",
            "investigate": "investigating",
            "mitigate": "mitigating",
            "monitor": "monitoring",
            "resolve": "resolved",
            "close": "closed",
            "cancel": "cancelled",
        }
        for action in path:
            after = targets[action]
            timeline.append(
                {
                    "occurred_at": times[action],
                    "kind": Kind.STATUS,
                    "source": Source.ADMIN,
                    "actor": manager if action in ("close", "cancel") else lead,
                    "message": f"Status: {before.title()} → {after.title()}.",
                    "data": {"action": action, "from": before, "to": after},
                }
            )
            before = after
        if acknowledged:
            timeline.append(
                {
                    "occurred_at": min(acknowledged + timedelta(minutes=3), self.now),
                    "kind": Kind.NOTE,
                    "source": Source.ADMIN,
                    "actor": lead,
                    "message": f"Looking at the {service_name} dashboards and recent deploys.",
                    "data": {},
                }
            )
        breaches = []
        if (acknowledged and acknowledged > response_due) or (
            acknowledged is None and status == "open" and response_due < self.now
        ):
            breaches.append(("response", response_due, max(response_due, detected)))
        if (resolved and resolved > resolution_due) or (
            resolved is None and status in ACTIVE and resolution_due < self.now
        ):
            breaches.append(("resolution", resolution_due, resolution_due))
        for target, due, _noted in breaches:
            timeline.append(
                {
                    "occurred_at": due,
                    "kind": Kind.SLA,
                    "source": Source.SYSTEM,
                    "actor": None,
                    "message": f"{target.capitalize()} target breached.",
                    "data": {"target": target, "due_at": due.isoformat()},
                }
            )
        return {
            "incident": incident,
            "services": services,
            "roles": roles,
            "manager": manager,
            "timeline": timeline,
            "breaches": breaches,
        }


# --- Measuring ----------------------------------------------------------------------------------


def measure(client, *, requests: int, warmup: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    urls = [LIST_URL, INDEX_URL, LIST_ALL_URL, SEARCH_URL]
    for url in list(urls):
        for _ in range(warmup):
            response = client.get(url)
            if response.status_code != 200 and url == LIST_ALL_URL:
                print(f"  (skipping {url}: it answered {response.status_code})")
                urls.remove(url)
                break
            if response.status_code != 200:
                sys.exit(f"GET {url} answered {response.status_code}; is the admin page there?")
    timings: dict[str, list[float]] = {url: [] for url in urls}
    for _ in range(requests):
        for url in urls:
            start = time.perf_counter()
            response = client.get(url)
            response.content  # noqa: B018 - the body is rendered lazily for streaming responses
            timings[url].append(time.perf_counter() - start)
            assert response.status_code == 200
    counts = {}
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        counts[url] = len(queries)
    result = {
        "list_ms": statistics.median(timings[LIST_URL]) * 1000,
        "index_ms": statistics.median(timings[INDEX_URL]) * 1000,
        "list_queries": counts[LIST_URL],
        "index_queries": counts[INDEX_URL],
    }
    if LIST_ALL_URL in urls:
        result["all_ms"] = statistics.median(timings[LIST_ALL_URL]) * 1000
        result["all_queries"] = counts[LIST_ALL_URL]
    result["search_ms"] = statistics.median(timings[SEARCH_URL]) * 1000
    result["search_queries"] = counts[SEARCH_URL]
    return result


def main() -> int:
    args = parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    configure(args.database_url)
    print(f"Database: {args.database_url} (recreated)")
    recreate_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings
    from django.utils import timezone

    from incidents.models import Incident, SlaBreach, TimelineEntry

    call_command("migrate", verbosity=0)
    now = timezone.now().replace(microsecond=0)
    rows = plan(sizes[-1], now)
    # The newest incidents go in first, so every size has today's active incidents.
    stages, done = [], 0
    for size in sizes:
        stages.append((size, rows[len(rows) - size : len(rows) - done]))
        done = size

    # Static files are served as in development: no collectstatic manifest is needed.
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    results = {}
    with override_settings(STORAGES=storages):
        seeder = Seeder(now)
        client = Client()
        client.force_login(seeder.admin)
        for size, batch in stages:
            started = time.perf_counter()
            seeder.insert(batch)
            print(
                f"Seeded {Incident.objects.count():,} incidents "
                f"({TimelineEntry.objects.count():,} timeline entries, "
                f"{Incident.services.through.objects.count():,} service links, "
                f"{SlaBreach.objects.count():,} SLA breaches, "
                f"{Incident.objects.active().count():,} active) "
                f"in {time.perf_counter() - started:.1f} s"
            )
            results[size] = measure(client, requests=args.requests, warmup=args.warmup)
            r = results[size]
            print(
                f"  {size:>7,} incidents: list {r['list_ms']:.1f} ms ({r['list_queries']} queries)"
                f", index {r['index_ms']:.1f} ms ({r['index_queries']} queries)"
                f", ratio list/index {r['list_ms'] / r['index_ms']:.2f}"
            )
            print(
                f"  {'':>7}  title search ({SEARCH_URL}): {r['search_ms']:.1f} ms "
                f"({r['search_queries']} queries), "
                f"ratio to list {r['search_ms'] / r['list_ms']:.2f}"
            )
            if "all_ms" in r:
                all_ratio = r["all_ms"] / r["index_ms"]
                print(
                    f"  {'':>7}  all incidents (?status=all): {r['all_ms']:.1f} ms "
                    f"({r['all_queries']} queries), ratio to index {all_ratio:.2f}"
                )

    print()
    print(f"Admin incident list vs admin index, median of {args.requests} requests each:")
    print(
        f"  {'incidents':>10}  {'list ms':>8}  {'index ms':>8}  {'list/index':>10}  "
        f"{'queries':>7}  {'all ms':>8}  {'all/index':>9}  {'queries':>7}"
    )
    for size in sizes:
        r = results[size]
        extra = (
            f"  {r['all_ms']:>8.1f}  {r['all_ms'] / r['index_ms']:>9.2f}  {r['all_queries']:>7}"
            if "all_ms" in r
            else ""
        )
        print(
            f"  {size:>10,}  {r['list_ms']:>8.1f}  {r['index_ms']:>8.1f}  "
            f"{r['list_ms'] / r['index_ms']:>10.2f}  {r['list_queries']:>7}{extra}"
        )
    print("  (list: the default view, active incidents; all: ?status=all, every incident)")
    small, large = results[sizes[0]], results[sizes[-1]]
    ratio = large["list_ms"] / large["index_ms"]
    same_queries = small["list_queries"] == large["list_queries"]
    print(
        f"List query count {sizes[0]:,} vs {sizes[-1]:,}: "
        f"{small['list_queries']} vs {large['list_queries']} "
        f"({'equal' if same_queries else 'NOT equal'})"
    )
    print(
        f"Target list within {TARGET_RATIO:g}x the index at {sizes[-1]:,}: {ratio:.2f}x "
        f"({'met' if ratio <= TARGET_RATIO else 'NOT met'})"
    )
    return 0 if ratio <= TARGET_RATIO and same_queries else 1


if __name__ == "__main__":
    sys.exit(main())
