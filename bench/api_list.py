#!/usr/bin/env python
"""Benchmark: the API incident list against a bare DRF view, served by gunicorn, on PostgreSQL
with 100,000 incidents.

Seeds (once; reused while the row count matches) its own database, starts gunicorn with two
sync workers and production settings (DEBUG off, a throwaway secret key, Redis cache for the
per-token throttle), then drives both endpoints with wrk in the same run, alternating:

* ``GET /api/v1/incidents/?status=open`` (a page of 50, token-authenticated);
* ``GET /api/v1/bench/empty/``: a bare DRF ``APIView`` returning ``{}`` through the same
  authentication, permission and throttle classes. It exists only in this script's URLconf
  (``bench.api_list`` is selected as ``ROOT_URLCONF`` by the gunicorn app factory below), so
  the production URLs stay clean.

Prints requests/s and p50/p99 latency of both, and the ratio of their requests/s. Target: the
list serves at least half the bare view's rate (ratio >= 0.5); exits non-zero if not.

    python bench/api_list.py [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_api]
                             [--redis-url redis://127.0.0.1:6379/4] [--incidents 100000]
                             [--duration 15] [--rounds 2] [--connections 4] [--reseed]

Needs PostgreSQL, Redis and wrk (``apt-get install wrk``). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_api"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/4"
LIST_PATH = "/api/v1/incidents/?status=open"
EMPTY_PATH = "/api/v1/bench/empty/"
TARGET_RATIO = 0.5
SEED = 20260302
BATCH = 5000


# --- The served app: production URLs plus the bare view, chosen by the factory ----------------


def wsgi_app():
    """gunicorn ``bench.api_list:wsgi_app()``: Vigil's WSGI app with this module as URLconf."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    settings.ROOT_URLCONF = __name__
    return get_wsgi_application()


def __getattr__(name: str):
    # The URLconf is built on first use, inside the configured server process only.
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from config.urls import urlpatterns as production

    class EmptyView(APIView):
        """Token auth, IsAuthenticated and the throttle, as every API view; no work."""

        def get(self, request):
            return Response({})

    return [path(EMPTY_PATH.lstrip("/"), EmptyView.as_view()), *production]


# --- Setup ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_API_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_API_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per endpoint")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reseed", action="store_true", help="drop and reseed the database")
    return parser.parse_args()


def server_environment(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": "memory://",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "VIGIL_VAR_DIR": tempfile.mkdtemp(prefix="vigil-bench-api-"),
        "VIGIL_LOG_LEVEL": "WARNING",
        # The throttle still runs on every request (same cost for both endpoints), but the
        # bench's single token must not be refused.
        "VIGIL_API_RATE": "100000000/minute",
        "PYTHONWARNINGS": "ignore::UserWarning",
    }


def ensure_database(database_url: str, *, drop: bool) -> None:
    import psycopg

    url = urlparse(database_url)
    name = url.path.lstrip("/")
    if not name or url.scheme not in ("postgres", "postgresql"):
        sys.exit(f"--database-url must name a PostgreSQL database, got {database_url!r}")
    admin_url = urlunparse(url._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


ACTIVE = ["open", "acknowledged", "investigating", "mitigating", "monitoring"]
SYMPTOMS = [
    "Elevated error rate on",
    "Slow responses from",
    "Timeouts calling",
    "Partial outage of",
    "Login failures on",
    "Disk usage above 85 % on",
]


def seed(total: int) -> None:
    """Bulk-insert ``total`` incidents over ~3 years (a benchmark is not the application: no
    services are called). The newest 2 % are active, a third of those open; the rest resolved,
    closed or cancelled. IDs, per-day sequences, priorities and SLA due times follow the
    services' rules; each incident names 1–3 of 40 services; active ones have an incident
    manager and a technical lead."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction
    from django.utils import timezone

    from incidents.models import (
        Incident,
        IncidentDaySequence,
        PriorityMatrixCell,
        ResponseRole,
        RoleAssignment,
        Service,
        SeverityLevel,
    )

    rng = random.Random(SEED)
    now = timezone.now().replace(microsecond=0)
    severities = {s.level: s for s in SeverityLevel.objects.all()}
    priority = {(c.urgency, c.impact): c.priority for c in PriorityMatrixCell.objects.all()}
    roles = {r.key: r for r in ResponseRole.objects.all()}
    User = get_user_model()
    managers = []
    for i in range(8):
        user = User.objects.create_user(f"im-{i}", f"im-{i}@example.com", None, first_name="Im")
        user.groups.add(Group.objects.get(name="Incident Manager"))
        managers.append(user)
    services = Service.objects.bulk_create(
        Service(slug=f"service-{i:02d}", name=f"Service {i:02d}", customer_facing=bool(i % 3))
        for i in range(40)
    )

    times = sorted(now - timedelta(seconds=rng.uniform(60, 3 * 365 * 86400)) for _ in range(total))
    per_day: Counter = Counter()
    active_from = int(total * 0.98)
    levels = ["high", "medium", "low"]
    incidents, links, assignments = [], [], []
    for index, detected in enumerate(times):
        day = detected.date()
        per_day[day] += 1
        level = rng.choices([1, 2, 3, 4], weights=[3, 12, 45, 40])[0]
        impact, urgency = rng.choice(levels), rng.choice(levels)
        severity = severities[level]
        if index >= active_from:
            status = rng.choice(["open", "open", *ACTIVE])
        else:
            status = rng.choices(["resolved", "closed", "cancelled"], weights=[5, 90, 5])[0]
        acknowledged = (
            None if status == "open" else detected + timedelta(minutes=rng.randint(2, 90))
        )
        resolved = (
            acknowledged + timedelta(hours=rng.uniform(0.2, 30))
            if status in ("resolved", "closed")
            else None
        )
        service_ids = rng.sample(range(40), rng.randint(1, 3))
        incidents.append(
            Incident(
                number=f"INC-{day:%Y-%m%d}-{per_day[day]:03d}",
                day=day,
                sequence=per_day[day],
                title=f"{rng.choice(SYMPTOMS)} service {service_ids[0]:02d}",
                summary="Customers see errors; investigating.",
                severity=severity,
                impact=impact,
                urgency=urgency,
                priority=priority[(urgency, impact)],
                status=status,
                customer_facing=any(services[i].customer_facing for i in service_ids),
                affected_users=rng.choice([None, 10, 250, 5000]),
                resolution="Rolled back the release." if resolved else "",
                root_cause="A bad release." if status == "closed" else "",
                business_impact="Checkout degraded." if status == "closed" else "",
                detected_at=detected,
                acknowledged_at=acknowledged,
                mitigated_at=resolved,
                resolved_at=resolved,
                closed_at=resolved + timedelta(days=1) if status == "closed" else None,
                cancelled_at=detected + timedelta(hours=1) if status == "cancelled" else None,
                cancel_reason="False alarm." if status == "cancelled" else "",
                response_due_at=detected + severity.response_target,
                resolution_due_at=detected + severity.resolution_target,
            )
        )
        links.append(service_ids)
        assignments.append(status in ACTIVE)

    through = Incident.services.through
    for start in range(0, total, BATCH):
        with transaction.atomic():
            chunk = Incident.objects.bulk_create(incidents[start : start + BATCH])
            through.objects.bulk_create(
                through(incident_id=incident.pk, service_id=services[i].pk)
                for incident, ids in zip(chunk, links[start : start + BATCH], strict=True)
                for i in ids
            )
            RoleAssignment.objects.bulk_create(
                RoleAssignment(
                    incident_id=incident.pk,
                    role=roles[key],
                    user=managers[(incident.pk + offset) % len(managers)],
                )
                for incident, active in zip(chunk, assignments[start : start + BATCH], strict=True)
                if active
                for offset, key in enumerate(("incident_manager", "technical_lead"))
            )
        print(f"  seeded {min(start + BATCH, total):,} / {total:,}", end="\r", flush=True)
    IncidentDaySequence.objects.bulk_create(
        IncidentDaySequence(day=day, last=last) for day, last in per_day.items()
    )
    with connection.cursor() as cursor:
        # created_at is set to "now" by bulk_create; incidents are created when detected.
        cursor.execute("UPDATE incidents_incident SET created_at = detected_at")
        cursor.execute("VACUUM ANALYZE")
    print()


def bench_token() -> str:
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    user = get_user_model().objects.get(username="im-0")
    # One token, whatever ran before: knox reads all the user's tokens on every request, so
    # tokens left by earlier runs would slow both endpoints alike and raise the ratio.
    AuthToken.objects.filter(user=user).delete()
    _, token = AuthToken.objects.create(user=user)
    return token


# --- Measuring ----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS[unit]


def wrk(url: str, token: str, *, duration: int, connections: int) -> dict[str, float]:
    command = [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "--header",
        f"Authorization: Token {token}",
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        sys.exit(f"wrk saw errors against {url}:\n{out}")
    return {"rps": rate, "p50": p50, "p99": p99}


def wait_until_up(url: str, token: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"gunicorn did not answer {url} within {timeout:.0f} s")
        time.sleep(0.5)


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    env = server_environment(args)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONWARNINGS"})
    ensure_database(args.database_url, drop=args.reseed)

    import django

    django.setup()
    from django.core.management import call_command

    from incidents.models import Incident

    call_command("migrate", verbosity=0)
    count = Incident.objects.count()
    if count != args.incidents:
        if count:
            ensure_database(args.database_url, drop=True)
            from django.db import connection

            connection.close()
            call_command("migrate", verbosity=0)
        print(f"Seeding {args.incidents:,} incidents into {args.database_url} ...")
        started = time.perf_counter()
        seed(args.incidents)
        print(f"Seeded in {time.perf_counter() - started:.0f} s")
    open_count = Incident.objects.filter(status="open").count()
    print(f"Database: {Incident.objects.count():,} incidents, {open_count:,} open")
    token = bench_token()
    from django.db import connection

    connection.close()

    base = f"http://127.0.0.1:{args.port}"
    gunicorn = [
        str(Path(sys.executable).with_name("gunicorn")),
        "bench.api_list:wsgi_app()",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{args.port}",
        "--chdir",
        str(ROOT),
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(gunicorn, env=env, start_new_session=True)
    try:
        wait_until_up(base + EMPTY_PATH, token)
        with urllib.request.urlopen(
            urllib.request.Request(base + LIST_PATH, headers={"Authorization": f"Token {token}"})
        ) as response:
            page = response.read()
        rows = page.count(b'"report_status"')
        print(f"GET {LIST_PATH}: {rows} incidents per page")
        for path in (LIST_PATH, EMPTY_PATH):  # warm both workers' caches and connections
            wrk(base + path, token, duration=3, connections=args.connections)
        results: dict[str, list[dict[str, float]]] = {LIST_PATH: [], EMPTY_PATH: []}
        for round_ in range(1, args.rounds + 1):
            for path in (LIST_PATH, EMPTY_PATH):
                result = wrk(
                    base + path, token, duration=args.duration, connections=args.connections
                )
                results[path].append(result)
                print(
                    f"  round {round_}: {path:<34} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms"
                )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    summary = {
        path: {key: statistics.median(r[key] for r in runs) for key in ("rps", "p50", "p99")}
        for path, runs in results.items()
    }
    ratio = summary[LIST_PATH]["rps"] / summary[EMPTY_PATH]["rps"]
    print()
    print(
        f"gunicorn 2 sync workers, wrk {args.connections} connections, {args.rounds} x "
        f"{args.duration} s per endpoint (medians), {Incident.objects.count():,} incidents:"
    )
    print(f"  {'endpoint':<36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for path, label in ((LIST_PATH, LIST_PATH + " (page of 50)"), (EMPTY_PATH, "bare DRF {}")):
        s = summary[path]
        print(f"  {label:<36} {s['rps']:>8.1f} {s['p50']:>8.1f} {s['p99']:>8.1f}")
    print(
        f"Ratio list/bare requests/s: {ratio:.2f} (target >= {TARGET_RATIO}: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
    )
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
