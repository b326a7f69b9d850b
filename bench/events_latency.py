#!/usr/bin/env python
"""Benchmark: how long after an incident is logged its team is paged, now that escalation
follows the incident's durable ``incident_created`` event in a Celery worker, against paging
inside the creating transaction (the path before events), in the same run.

For each backend, (a) PostgreSQL + Redis broker and (b) the embedded default (SQLite file and
Kombu's filesystem broker under a throwaway ``VIGIL_VAR_DIR``), with the two workers of the
Procfile started as subprocesses (``urgent``: ``vigil.urgent`` only, concurrency 1; ``worker``:
``vigil.sweeps,vigil.intake,vigil,vigil.bulk``, concurrency 2; beat is not run):

* baseline: ``--incidents`` incidents, each logged by ``incident_create`` and paged by the
  escalation handler (``on_incident_created``: ``escalation_start`` + ``incident_page_team``)
  *inside the same transaction*; its pages exist at commit. Timed: the create call.
* events: the same number logged by ``incident_create`` alone; the worker runs the handler
  after commit. Timed: the create call, and from the commit (stamped by the transaction's
  first on-commit callback, in this process) to the first Notification row of the incident
  (``min(created_at)``, stamped in the worker; same machine, same clock) and to the end of
  the handler.
* priority: a backlog of ``--backlog`` Sev 4 incidents (committed ``--backlog-batch`` to a
  transaction, an alert storm), then ``--urgent`` Sev 1 incidents at once: commit -> first
  page of the Sev 1s, which must not wait behind the Sev 4s.

Severity mix of the first two: Sev 1 10 %, Sev 2 20 %, Sev 3 35 %, Sev 4 35 % (shuffled with a
fixed seed), created at a steady ``--rate`` per second from one process (0: as fast as
possible). Channels go to the log backend (no network); every seeded contact has an email
address, a phone number, a Slack handle and a login, so every channel of every severity is
written. Prints p50/p95/p99/max, throughput and the ratios new/baseline. Target (PostgreSQL +
Redis): p99 commit -> first page <= 2 s, also for the Sev 1s behind the backlog. Exits
non-zero when it is missed; the embedded figures are reported without a target.

    python bench/events_latency.py [--incidents 1000] [--rate 20] [--backends postgres,embedded]
        [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_events]
        [--redis-url redis://127.0.0.1:6379/6] [--backlog 500] [--urgent 20]

The PostgreSQL database is dropped and recreated (and left for inspection); Vigil's keys in the
Redis database given are cleared before and after. Temporary directories are removed and the
workers stopped at the end, also on error or interruption.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_events"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/6"
LOG = "escalation.channels.log.LogBackend"
TARGET_P99 = 2.0
SEED = 20260302
MIX = ((1, 0.10), (2, 0.20), (3, 0.35), (4, 0.35))
TASK_DONE = re.compile(r"Task (\S+)\[[0-9a-f-]+\] succeeded in ([\d.]+)s")
BACKENDS = {"postgres": "PostgreSQL + Redis", "embedded": "embedded (SQLite + filesystem broker)"}
# The two workers of the Procfile, as it starts them.
WORKERS = {
    "urgent": ["--hostname", "urgent@%h", "--queues", "vigil.urgent", "--concurrency", "1"],
    "worker": [
        "--hostname",
        "worker@%h",
        "--queues",
        "vigil.sweeps,vigil.intake,vigil,vigil.bulk",
        "--concurrency",
        "2",
    ],
}


class Interrupted(SystemExit):
    pass


def _terminate(signum, frame):
    raise Interrupted(128 + signum)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=1000, help="per path (baseline, events)")
    parser.add_argument(
        "--rate", type=float, default=2.0, help="incidents created per second (0: flat out)"
    )
    parser.add_argument("--backends", default="postgres,embedded")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_EVENTS_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to (re)create for the bench; it is dropped first.",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_EVENTS_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis database used as broker and cache (not db 0).",
    )
    parser.add_argument("--backlog", type=int, default=500, help="Sev 4 incidents queued first")
    parser.add_argument("--backlog-batch", type=int, default=50, help="backlog per transaction")
    parser.add_argument("--urgent", type=int, default=20, help="Sev 1 incidents after it")
    parser.add_argument(
        "--urgent-rate",
        type=float,
        default=1.0,
        help="Sev 1 incidents created per second in the priority check (0: all at once)",
    )
    parser.add_argument("--warmup", type=int, default=20, help="untimed incidents first")
    parser.add_argument(
        "--embedded-poll",
        type=float,
        default=None,
        help="VIGIL_EMBEDDED_BROKER_POLL_SECONDS for the embedded run (default: Vigil's)",
    )
    parser.add_argument(
        "--no-beat", action="store_true", help="run the two workers without celery beat"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (worker logs, SQLite)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait per phase")
    parser.add_argument("--run-backend", choices=sorted(BACKENDS), help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser.parse_args()


# --- Figures ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def row(label: str, s: dict[str, float], width: int = 36) -> str:
    return (
        f"    {label:<{width}} p50 {ms(s['p50'])}  p95 {ms(s['p95'])}  "
        f"p99 {ms(s['p99'])}  max {ms(s['max'])}"
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- One backend (run in a child process: Django is set up once per process) -------------------


def backend_env(args: argparse.Namespace, backend: str, var_dir: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "VIGIL_VAR_DIR": var_dir,
        "VIGIL_BASE_URL": "http://127.0.0.1:8000",
        **{
            f"VIGIL_CHANNEL_{c}": LOG
            for c in ("EMAIL", "SLACK", "SMS", "PHONE", "TEAMS", "WEBHOOK")
        },
        "PYTHONPATH": str(ROOT),
        "PYTHONWARNINGS": "ignore::UserWarning",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"):
        env.pop(name, None)
    if backend == "postgres":
        env.update(
            DATABASE_URL=args.database_url,
            REDIS_URL=args.redis_url,
            CELERY_BROKER_URL=args.redis_url,
        )
    elif args.embedded_poll is not None:
        env["VIGIL_EMBEDDED_BROKER_POLL_SECONDS"] = str(args.embedded_poll)
    return env


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


def clear_redis(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in ("vigil*", "unacked*", "_kombu*", "celery*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


def reachable_contacts() -> None:
    """The seed's contacts hold placeholders; give each a phone number, a Slack handle and a
    login in its role's group (as ``tests/escalation/escalation_fixtures.reachable_policy``
    does), so every channel of every severity is written."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from incidents.models import EscalationContact, ResponseRole

    user_model = get_user_model()
    number = 100

    def reach(contact, username: str, group) -> None:
        nonlocal number
        number += 1
        user = user_model.objects.create_user(
            username=username, email=f"{username}@example.com", is_staff=True
        )
        if group is not None:
            user.groups.add(group)
        contact.phone = f"+1415555{number:04d}"
        contact.slack_handle = f"@{username}"
        contact.user = user
        contact.save()

    for role in ResponseRole.objects.select_related("primary_contact", "backup_contact", "group"):
        slug = role.key.replace("_", "-")
        for kind, contact in (("primary", role.primary_contact), ("backup", role.backup_contact)):
            if contact is not None and contact.user_id is None:
                reach(contact, f"{slug}-{kind}", role.group)
    viewer = Group.objects.filter(name="Viewer").first()
    for level in EscalationContact.objects.select_related("contact"):
        if level.contact.user_id is None:
            reach(level.contact, level.key.replace("_", "-"), viewer)


def start_process(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    if name == "beat":
        schedule = Path(env["VIGIL_VAR_DIR"]) / "celerybeat-schedule"
        arguments = ["beat", "--schedule", str(schedule)]
    else:
        arguments = ["worker", *WORKERS[name]]
    # The workers hold their own copy of the file descriptor; ours is closed on return.
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *arguments, "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


class Workers:
    """The Procfile's two workers (and beat, unless ``--no-beat``), under a supervisor thread
    that restarts one that exits (as systemd's ``Restart=always`` would; honcho would stop
    them all) and notes why it exited."""

    def __init__(self, env: dict[str, str], var_dir: Path, *, beat: bool) -> None:
        self.env = env
        self.names = [*WORKERS, "beat"] if beat else list(WORKERS)
        self.logs = {name: var_dir / f"{name}.log" for name in self.names}
        self.processes: dict[str, subprocess.Popen] = {}
        self.restarts: list[dict[str, str | float]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._supervise, daemon=True)

    def start(self, timeout: float = 120) -> None:
        with self.lock:
            for name in self.names:
                self.processes[name] = start_process(name, self.env, self.logs[name])
        deadline = time.monotonic() + timeout
        for name in WORKERS:
            while " ready." not in self.logs[name].read_text(errors="replace"):
                if self.processes[name].poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the {name} worker did not start:\n{self.tail(name)}")
                time.sleep(0.2)
        self.thread.start()

    def _supervise(self) -> None:
        while not self.stopping.wait(0.2):
            with self.lock:
                if self.stopping.is_set():
                    return
                for name, process in self.processes.items():
                    if process.poll() is None:
                        continue
                    errors = [
                        line
                        for line in self.tail(name).splitlines()
                        if "Error" in line or "CRITICAL" in line
                    ]
                    self.restarts.append(
                        {"name": name, "at": time.time(), "error": (errors or ["?"])[-1][:300]}
                    )
                    print(f"  the {name} process exited, restarted: {errors[-1:]}", flush=True)
                    self.processes[name] = start_process(name, self.env, self.logs[name])

    def tail(self, name: str) -> str:
        log = self.logs[name]
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            for process in self.processes.values():
                stop_process(process)

    def mark(self) -> dict[str, int]:
        return {name: log.stat().st_size if log.exists() else 0 for name, log in self.logs.items()}

    def task_times(self, since: dict[str, int]) -> dict[str, list[float]]:
        """Run times of the tasks that finished since ``since`` (Celery's INFO lines)."""
        times: dict[str, list[float]] = {}
        for name, log in self.logs.items():
            with open(log, "rb") as f:
                f.seek(since.get(name, 0))
                text = f.read().decode(errors="replace")
            for task, seconds in TASK_DONE.findall(text):
                times.setdefault(task, []).append(float(seconds))
        return times


def severities(count: int, rng: random.Random) -> list[int]:
    levels = []
    for level, share in MIX:
        levels += [level] * round(count * share)
    levels = (levels + [4] * count)[:count]
    rng.shuffle(levels)
    return levels


def create(index: int, severity: int, *, inline: bool) -> tuple[int, float, float, float]:
    """Log one incident; with ``inline``, page its team in the same transaction (the handler
    run in the creating transaction, its event marked handled and its kick not published).
    Returns (id, started, committed, returned) as wall-clock times."""
    from django.db import transaction
    from django.utils import timezone

    from escalation.handlers import HANDLER, on_incident_created
    from incidents.events import INCIDENT_CREATED
    from incidents.models import Source
    from incidents.models.events import EventHandling, EventStatus, HandlingStatus, IncidentEvent
    from incidents.services import incident_create

    stamps: list[float] = []
    started = time.time()
    with transaction.atomic():
        # Registered first, so it runs first after COMMIT: the moment the rows became visible.
        transaction.on_commit(lambda: stamps.append(time.time()))
        incident = incident_create(
            actor=None,
            source=Source.WEBHOOK,
            title=f"Checkout latency above SLO on shard {index}",
            severity=severity,
        )
        if inline:
            event = IncidentEvent.objects.get(incident=incident, name=INCIDENT_CREATED)
            on_incident_created(event)
            now = timezone.now()
            EventHandling.objects.create(
                event=event,
                handler=HANDLER,
                status=HandlingStatus.DONE,
                attempts=1,
                finished_at=now,
            )
            IncidentEvent.objects.filter(pk=event.pk).update(
                status=EventStatus.DONE, handled_at=now
            )
    returned = time.time()
    return incident.pk, started, stamps[0], returned


def create_paced(
    levels: list[int], *, rate: float, inline: bool, offset: int
) -> list[dict[str, float]]:
    import incidents.events.recording as events

    kick = events.events_kick
    if inline:
        # The handler already ran in the transaction; nothing is left for a worker to follow.
        events.events_kick = lambda **kwargs: True
    rows = []
    try:
        t0 = time.monotonic()
        for n, level in enumerate(levels):
            if rate > 0:
                delay = t0 + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pk, started, committed, returned = create(offset + n, level, inline=inline)
            rows.append(
                {
                    "id": pk,
                    "severity": level,
                    "started": started,
                    "committed": committed,
                    "returned": returned,
                }
            )
    finally:
        events.events_kick = kick
    return rows


def create_backlog(count: int, batch: int, offset: int) -> list[dict[str, float]]:
    """Sev 4 incidents, ``batch`` to a transaction: their kicks are all queued at each commit."""
    from django.db import transaction

    from incidents.models import Source
    from incidents.services import incident_create

    rows = []
    for first in range(0, count, batch):
        stamps: list[float] = []
        pending = []
        with transaction.atomic():
            transaction.on_commit(lambda s=stamps: s.append(time.time()))
            for n in range(first, min(count, first + batch)):
                incident = incident_create(
                    actor=None,
                    source=Source.WEBHOOK,
                    title=f"Disk usage warning on batch host {offset + n}",
                    severity=4,
                )
                pending.append(incident.pk)
        rows += [{"id": pk, "severity": 4, "committed": stamps[0]} for pk in pending]
    return rows


def wait_settled(ids: list[int], timeout: float, what: str) -> float:
    """Waits until the created events of ``ids`` are handled and no notification is left to
    deliver. Returns when that was seen (wall clock)."""
    from escalation.models import Notification
    from incidents.events import INCIDENT_CREATED
    from incidents.models.events import EventStatus, IncidentEvent

    low, high = min(ids), max(ids)
    deadline = time.monotonic() + timeout
    while True:
        unhandled = IncidentEvent.objects.filter(
            incident_id__gte=low, incident_id__lte=high, name=INCIDENT_CREATED
        ).exclude(status=EventStatus.DONE)
        undelivered = Notification.objects.filter(status__in=["pending", "sending"])
        if not unhandled.exists() and not undelivered.exists():
            return time.time()
        if time.monotonic() > deadline:
            sys.exit(
                f"{what}: {unhandled.count()} events unhandled and {undelivered.count()} "
                f"notifications undelivered after {timeout:.0f} s"
            )
        time.sleep(0.2)


def first_pages(rows: list[dict[str, float]]) -> None:
    """Adds to each row the time of its first notification and of the end of its handler."""
    from django.db.models import Count, Min

    from escalation.handlers import HANDLER
    from escalation.models import Notification
    from incidents.events import INCIDENT_CREATED
    from incidents.models.events import EventHandling, IncidentEvent

    low, high = min(r["id"] for r in rows), max(r["id"] for r in rows)
    pages = {
        pk: (first.timestamp(), count)
        for pk, first, count in Notification.objects.filter(
            incident_id__gte=low, incident_id__lte=high
        )
        .values("incident_id")
        .annotate(first=Min("created_at"), count=Count("id"))
        .values_list("incident_id", "first", "count")
    }
    claimed = {
        pk: at.timestamp()
        for pk, at in IncidentEvent.objects.filter(
            incident_id__gte=low, incident_id__lte=high, name=INCIDENT_CREATED
        ).values_list("incident_id", "claimed_at")
        if at is not None
    }
    handled = {
        pk: finished.timestamp()
        for pk, finished in EventHandling.objects.filter(
            event__incident_id__gte=low,
            event__incident_id__lte=high,
            event__name=INCIDENT_CREATED,
            handler=HANDLER,
            status="done",
        ).values_list("event__incident_id", "finished_at")
    }
    missing = [r["id"] for r in rows if r["id"] not in pages or r["id"] not in handled]
    if missing:
        sys.exit(f"{len(missing)} incidents were not paged, e.g. {missing[:5]}")
    for r in rows:
        r["first_page"], r["pages"] = pages[r["id"]]
        r["handled"] = handled[r["id"]]
        # When the follow task that ran the handler started (its claim of the event).
        r["claimed"] = claimed.get(r["id"], r["first_page"])


def run_backend(args: argparse.Namespace) -> dict:
    backend = args.run_backend
    var_dir = Path(tempfile.mkdtemp(prefix=f"vigil-bench-events-{backend}-"))
    env = backend_env(args, backend, str(var_dir))
    workers = Workers(env, var_dir, beat=not args.no_beat)
    try:
        if backend == "postgres":
            recreate_database(args.database_url)
            clear_redis(args.redis_url)
        os.environ.clear()
        os.environ.update(env)
        os.environ["VIGIL_LOG_LEVEL"] = "WARNING"  # this process only; the workers log INFO
        import django

        django.setup()
        # The embedded broker's URL names no host; Kombu says so once per connection.
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        reachable_contacts()
        rng = random.Random(SEED)
        result: dict = {"backend": backend, "load_start": load_average()}

        workers.start()
        print(f"  workers up (load average {load_average()})", flush=True)
        warm = create_paced(severities(args.warmup, rng), rate=0, inline=False, offset=0)
        wait_settled([r["id"] for r in warm], args.timeout, "warm-up")

        levels = severities(args.incidents, rng)
        baseline = create_paced(levels, rate=args.rate, inline=True, offset=10_000)
        wait_settled([r["id"] for r in baseline], args.timeout, "baseline")
        print(f"  baseline done (load average {load_average()})", flush=True)

        levels = severities(args.incidents, rng)
        mark = workers.mark()
        new = create_paced(levels, rate=args.rate, inline=False, offset=20_000)
        wait_settled([r["id"] for r in new], args.timeout, "events")
        result["tasks"] = workers.task_times(mark)
        first_pages(new)
        print(f"  events done (load average {load_average()})", flush=True)
        result["load_main"] = load_average()

        # Priority: Sev 1s at --urgent-rate, first on their own (the control), then while a
        # Sev 4 backlog is being worked off.
        pace = args.urgent_rate
        control = create_paced([1] * args.urgent, rate=pace, inline=False, offset=40_000)
        wait_settled([r["id"] for r in control], args.timeout, "Sev 1 control")
        first_pages(control)
        mark = workers.mark()
        backlog = create_backlog(args.backlog, args.backlog_batch, offset=50_000)
        urgent = create_paced([1] * args.urgent, rate=pace, inline=False, offset=60_000)
        wait_settled([r["id"] for r in backlog + urgent], args.timeout, "priority check")
        first_pages(backlog)
        first_pages(urgent)
        result["load_end"] = load_average()
        result["tasks_priority"] = workers.task_times(mark)
        result.update(baseline=baseline, new=new, control=control, backlog=backlog, urgent=urgent)
        result["restarts"] = list(workers.restarts)
        return result
    finally:
        workers.stop()
        if backend == "postgres":
            try:
                clear_redis(args.redis_url)
            except Exception as exc:  # the workers are stopped; say why the keys stay
                print(f"  could not clear Redis: {exc}", file=sys.stderr)
        if args.keep:
            print(f"  kept {var_dir}", flush=True)
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


# --- Report -------------------------------------------------------------------------------------


def latencies(rows: list[dict[str, float]], key: str = "first_page") -> dict[str, float]:
    return summary([r[key] - r["committed"] for r in rows])


def started_to_page(rows: list[dict[str, float]]) -> dict[str, float]:
    return summary([r["first_page"] - r["claimed"] for r in rows])


def report(args: argparse.Namespace, result: dict) -> dict[str, float]:
    baseline, new = result["baseline"], result["new"]
    control, backlog, urgent = result["control"], result["backlog"], result["urgent"]
    base_call = summary([r["returned"] - r["started"] for r in baseline])
    base_tx = summary([r["committed"] - r["started"] for r in baseline])
    new_call = summary([r["returned"] - r["started"] for r in new])
    new_tx = summary([r["committed"] - r["started"] for r in new])
    latency = latencies(new)
    base_rate = (len(baseline) - 1) / (baseline[-1]["committed"] - baseline[0]["committed"])
    created_rate = (len(new) - 1) / (new[-1]["committed"] - new[0]["committed"])
    followed_rate = len(new) / (max(r["handled"] for r in new) - new[0]["committed"])
    drain = len(backlog) / (max(r["handled"] for r in backlog) - backlog[0]["committed"])
    # A Sev 1 competes with the backlog when Sev 4s committed before it were still unhandled.
    for r in urgent:
        r["ahead"] = sum(1 for b in backlog if b["handled"] > r["committed"])
    behind = [r for r in urgent if r["ahead"] > 0] or urgent
    sev1_alone, sev1_backlog = latencies(control), latencies(behind)

    pace = f"{args.rate:g}/s" if args.rate > 0 else "as fast as possible"
    print(f"\n{BACKENDS[result['backend']]}: {len(new):,} incidents per path, created at {pace}")
    print(
        f"  load average: {result['load_start']} (start), {result['load_main']} (after the "
        f"two paths), {result['load_end']} (end)"
    )
    print(f"  baseline, paging inside the creating transaction ({base_rate:.1f} created/s):")
    print(row("create call", base_call))
    print(row("  of which the transaction", base_tx))
    print(f"    {'commit -> first page':<36} 0 (written in the transaction)")
    print(f"  durable events, paged by the worker ({created_rate:.1f} created/s):")
    print(row("create call", new_call))
    print(row("  of which the transaction", new_tx))
    print(row("commit -> first page", latency))
    print(row("  Sev 1-2 (vigil.urgent)", latencies([r for r in new if r["severity"] <= 2])))
    print(row("  Sev 3-4 (vigil)", latencies([r for r in new if r["severity"] > 2])))
    print(row("  of which commit -> follow started", latencies(new, "claimed")))
    print(row("  of which follow started -> page", started_to_page(new)))
    print(row("commit -> handler done", latencies(new, "handled")))
    print(
        f"    throughput: {followed_rate:.1f} incidents followed/s (first commit to last "
        f"handler done); capacity (the backlog below drained): {drain:.1f} incidents/s"
    )
    tasks = result["tasks"]
    busy = sum(sum(v) for name, v in tasks.items() if "sweep" not in name)
    for task, times in sorted(tasks.items()):
        t = summary(times)
        print(f"    {task:<32} {t['n']:>6} runs   p50 {ms(t['p50'])}  p99 {ms(t['p99'])}")
    print(
        f"    worker task time per incident: {busy / len(new) * 1000:.0f} ms "
        f"(follow + its deliveries)"
    )
    print("  ratios:")
    for label, value in (
        ("create call p50, events / baseline", new_call["p50"] / base_call["p50"]),
        ("create call p99, events / baseline", new_call["p99"] / base_call["p99"]),
        ("p99 commit -> first page / baseline p99 create call", latency["p99"] / base_call["p99"]),
    ):
        print(f"    {label:<52} {value:7.2f}")
    ahead = sorted(r["ahead"] for r in urgent)
    print(
        f"  priority: {len(urgent)} Sev 1 at {args.urgent_rate:g}/s alone, then again right "
        f"after {len(backlog)} Sev 4 (committed {args.backlog_batch} to a transaction); "
        f"{sum(1 for a in ahead if a)} of the {len(urgent)} committed while Sev 4s were still "
        f"unhandled ({ahead[-1]} down to {ahead[0]} of them):"
    )
    print(row("Sev 1 commit -> first page, alone", sev1_alone))
    print(row("Sev 1 commit -> first page, backlog", sev1_backlog))
    print(row("  of which commit -> follow started", latencies(behind, "claimed")))
    print(row("  of which follow started -> page", started_to_page(behind)))
    print(row("Sev 4 backlog commit -> first page", latencies(backlog)))
    for label, value in (
        ("Sev 1 p50, behind the backlog / alone", sev1_backlog["p50"] / sev1_alone["p50"]),
        ("Sev 1 p99, behind the backlog / alone", sev1_backlog["p99"] / sev1_alone["p99"]),
    ):
        print(f"    {label:<52} {value:7.2f}")
    follows = len(result["tasks_priority"].get("incidents.events_follow", []))
    extra = follows - len(backlog) - len(urgent)
    print(
        f"    incidents.events_follow ran {follows} times for {len(backlog) + len(urgent)} "
        f"incidents ({extra} more: kicks repeated by the events sweep, lost ones or not)"
    )
    restarts = result["restarts"]
    print(f"  worker processes restarted: {len(restarts)}")
    for restart in restarts:
        print(f"    {restart['name']}: {restart['error']}")
    return {"p99": latency["p99"], "sev1_p99": sev1_backlog["p99"]}


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    if args.run_backend:
        result = run_backend(args)
        Path(args.result_file).write_text(json.dumps(result))
        return

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        sys.exit(f"unknown backends: {', '.join(sorted(unknown))}")
    if "postgres" in backends and urlparse(args.redis_url).path.strip("/") in ("", "0"):
        sys.exit("--redis-url must name a Redis database other than 0")
    print(
        f"Incident events: commit -> first page, {args.incidents:,} incidents per path "
        f"(load average {load_average()}, {os.cpu_count()} CPUs)"
    )
    outcomes = {}
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-events-"))
    try:
        for backend in backends:
            print(f"\n{BACKENDS[backend]} ...", flush=True)
            result_file = workdir / f"{backend}.json"
            child = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    *sys.argv[1:],
                    "--run-backend",
                    backend,
                    "--result-file",
                    str(result_file),
                ],
                cwd=ROOT,
            )
            try:
                code = child.wait()
            finally:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    try:
                        child.wait(60)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
            if code != 0:
                sys.exit(f"the {backend} run failed (exit {code})")
            outcomes[backend] = report(args, json.loads(result_file.read_text()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    missed = []
    if "postgres" in outcomes:
        figures = outcomes["postgres"]
        for label, value in (
            ("p99 commit -> first page", figures["p99"]),
            ("Sev 1 p99 behind the backlog", figures["sev1_p99"]),
        ):
            ok = value <= TARGET_P99
            print(
                f"\nPostgreSQL + Redis {label}: {value:.3f} s (target <= {TARGET_P99:g} s) "
                f"{'met' if ok else 'MISSED'}",
                end="",
            )
            if not ok:
                missed.append(label)
        print()
    if "postgres" in outcomes and "embedded" in outcomes:
        ratio = outcomes["embedded"]["p99"] / outcomes["postgres"]["p99"]
        print(f"embedded / PostgreSQL + Redis, p99 commit -> first page: {ratio:.2f}")
    print(f"load average at the end: {load_average()}")
    if missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
