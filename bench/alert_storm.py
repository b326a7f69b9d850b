#!/usr/bin/env python
"""Benchmark: an alert storm. ``--alerts`` Alertmanager POSTs, each a new group of one alert
with ``severity: critical`` (Sev 1 by its label; no alert rule matches it, so each opens an
incident that pages the response team), posted by ``--threads`` client threads, against

(a) the embedded default as ``make run`` starts it: a fresh temporary ``VIGIL_VAR_DIR``,
    ``manage.py migrate`` (no demo data; the seeded policy comes with the migrations), then the
    Procfile's processes started the way ``make run`` starts them (``python -m config.devrun
    --port P``, ``DJANGO_DEBUG=1``): SQLite and Kombu's filesystem broker;
(b) PostgreSQL + Redis: gunicorn as the Procfile runs it (``config/gunicorn.py``: gthread,
    2 worker processes; production settings, DEBUG off), ONE Celery worker at concurrency 2
    consuming every queue in ``VIGIL_ALL_QUEUES``'s order
    (``vigil.intake,vigil.urgent,vigil.sweeps,vigil,vigil.bulk``) and beat, so the sweeps run
    as in production.

Every seeded contact is given a phone number, a Slack handle and a login (as
``tests/escalation/escalation_fixtures.reachable_policy`` does), so every channel of a Sev 1
page is written. Messages stay on this machine: in (a) the development defaults of ``make run``
(the log backend, e-mail to the console), in (b) every channel set to the log backend and
Django's e-mail to memory.

While the storm is processed, once half of its alerts are on incidents, a Sev 1 is created
through the API (``POST /api/v1/incidents/`` with a token); its first-page latency is from the
POST's response to the first of its notifications reaching status sent (``sent_at``).

Per setup it prints: accept req/s (first POST to last response), seconds until every alert is
on an incident and the new incidents/s this makes (from the first POST), the CPU seconds each
kind of process used until then (from /proc: PostgreSQL, Redis, the web server, the workers,
beat, this bench's client threads and polling), seconds until the queues are empty (no pending
delivery, event or notification, nothing left in the broker), the mid-storm Sev 1's first-page
latency, and what was done more than once (notifications sent after more than one attempt,
events followed more than once).

Baseline, in the same run, measured before the first setup and again after each one:
psycopg, one connection, single-row autocommit INSERTs of one incident-shaped row plus three
notification-shaped rows per incident (tables shaped like Vigil's, in a scratch database), in
incidents/s; and for information the same four INSERTs in one transaction per incident. Each
autocommit INSERT waits for PostgreSQL's WAL flush, and on a shared machine that moved the
baseline between 337 and 704 incidents/s within an hour (up to 1.9x between two consecutive
measurements), so a setup's ratio is taken against the mean of the measurements just before and
just after it, and the ratio against each of the two is printed beside it.

Targets: new incidents/s >= 0.5x the baseline on (b), >= 0.3x on (a); the mid-storm Sev 1's
first page within 5 s on (b); accept rate (a)/(b) >= 0.5. Exits non-zero when one is missed,
unless ``--no-fail``.

    python bench/alert_storm.py [--alerts 1000] [--setups a,b] [--threads 8]
        [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_storm]
        [--redis-url redis://127.0.0.1:6379/9] [--no-fail] [--keep]

The PostgreSQL databases (the setup's and ``<name>_scratch``) are dropped and recreated, and
dropped at the end; the Redis database given is flushed before and after (it must not be 0).
Every process started is stopped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_storm"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
LOG = "escalation.channels.log.LogBackend"
QUEUES = "vigil.intake,vigil.urgent,vigil.sweeps,vigil,vigil.bulk"  # settings.VIGIL_ALL_QUEUES
SETUPS = {
    "a": "(a) embedded default as make run starts it (SQLite, filesystem broker)",
    "b": "(b) PostgreSQL + Redis, gunicorn 2 workers, one Celery worker x2 + beat",
}
TARGET_RATE = {"a": 0.3, "b": 0.5}
TARGET_SEV1 = 5.0
TARGET_ACCEPT = 0.5
PREFIX = "storm"
TITLE = "Payments are failing everywhere"


class Interrupted(SystemExit):
    pass


def _terminate(signum, frame):
    raise Interrupted(128 + signum)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1000, help="POSTs, one new group each")
    parser.add_argument("--setups", default="a,b", help="a, b or a,b")
    parser.add_argument("--threads", type=int, default=8, help="client threads posting")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_STORM_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database for (b); <name>_scratch holds the baseline's tables.",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_STORM_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis database for (b), flushed before and after (not db 0).",
    )
    parser.add_argument(
        "--sev1-at",
        type=float,
        default=0.5,
        help="create the API Sev 1 once this share of the storm's alerts is on incidents",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait per phase")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600,
        help="seconds to wait for the queues to empty once every alert is on an incident",
    )
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even if a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep temporary directories (logs)")
    parser.add_argument("--run-setup", choices=sorted(SETUPS), help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser.parse_args()


def load_average() -> str:
    return Path("/proc/loadavg").read_text().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_url(database_url: str) -> str:
    url = urlparse(database_url)
    return urlunparse(url._replace(path=url.path.rstrip("/") + "_scratch"))


# --- PostgreSQL and Redis ----------------------------------------------------------------------


def _admin(database_url: str) -> tuple[str, str]:
    url = urlparse(database_url)
    name = url.path.lstrip("/")
    if not name or url.scheme not in ("postgres", "postgresql"):
        sys.exit(f"--database-url must name a PostgreSQL database, got {database_url!r}")
    return urlunparse(url._replace(path="/postgres")), name


def recreate_database(database_url: str) -> None:
    import psycopg

    admin_url, name = _admin(database_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(database_url: str) -> None:
    import psycopg

    admin_url, name = _admin(database_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


# --- Baseline -----------------------------------------------------------------------------------

BASELINE_DDL = """
CREATE TABLE bench_incident (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    number varchar(24) NOT NULL UNIQUE,
    day date NOT NULL,
    sequence integer NOT NULL CHECK (sequence >= 0),
    title varchar(200) NOT NULL,
    summary text NOT NULL,
    impact varchar(10) NOT NULL,
    urgency varchar(10) NOT NULL,
    priority smallint NOT NULL CHECK (priority >= 0),
    status varchar(20) NOT NULL,
    detection_source varchar(30) NOT NULL,
    customer_facing boolean NOT NULL,
    affected_users integer,
    business_impact text NOT NULL,
    root_cause text NOT NULL,
    resolution text NOT NULL,
    lessons_learned text NOT NULL,
    cancel_reason text NOT NULL,
    detected_at timestamptz NOT NULL,
    response_due_at timestamptz NOT NULL,
    resolution_due_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    severity_id smallint NOT NULL,
    resolution_breach_recorded boolean NOT NULL,
    response_breach_recorded boolean NOT NULL,
    UNIQUE (day, sequence)
);
CREATE INDEX ON bench_incident (created_at DESC);
CREATE INDEX ON bench_incident (detected_at DESC);
CREATE INDEX ON bench_incident (response_due_at);
CREATE INDEX ON bench_incident (resolution_due_at);
CREATE INDEX ON bench_incident (severity_id, status);
CREATE INDEX ON bench_incident (status, detected_at DESC);
CREATE INDEX ON bench_incident (priority);
CREATE TABLE bench_notification (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id bigint REFERENCES bench_incident (id) DEFERRABLE INITIALLY DEFERRED,
    contact_id bigint,
    recipient varchar(255) NOT NULL,
    channel varchar(10) NOT NULL,
    template varchar(80) NOT NULL,
    subject varchar(255) NOT NULL,
    body text NOT NULL,
    context jsonb NOT NULL,
    ack_url text NOT NULL,
    reason varchar(200) NOT NULL,
    idempotency_key varchar(200) NOT NULL UNIQUE,
    status varchar(10) NOT NULL,
    attempts smallint NOT NULL CHECK (attempts >= 0),
    last_error text NOT NULL,
    provider_message_id varchar(255) NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    urgent boolean NOT NULL
);
CREATE INDEX ON bench_notification (contact_id);
CREATE INDEX ON bench_notification (incident_id, created_at);
CREATE INDEX ON bench_notification (next_attempt_at) WHERE status IN ('pending', 'sending');
"""

INCIDENT_SQL = (
    "INSERT INTO bench_incident (number, day, sequence, title, summary, impact, urgency, "
    "priority, status, detection_source, customer_facing, business_impact, root_cause, "
    "resolution, lessons_learned, cancel_reason, detected_at, response_due_at, "
    "resolution_due_at, created_at, updated_at, severity_id, resolution_breach_recorded, "
    "response_breach_recorded) VALUES (%s, current_date, %s, %s, '', 'high', 'high', 1, 'open', "
    "'monitoring', false, '', '', '', '', '', now(), now() + interval '15 minutes', "
    "now() + interval '4 hours', now(), now(), 1, false, false) RETURNING id"
)
NOTIFICATION_SQL = (
    "INSERT INTO bench_notification (incident_id, contact_id, recipient, channel, template, "
    "subject, body, context, ack_url, reason, idempotency_key, status, attempts, last_error, "
    "provider_message_id, next_attempt_at, created_at, urgent) VALUES (%s, %s, %s, %s, "
    "'escalation/initial', %s, %s, %s, %s, 'Initial notification', %s, 'pending', 0, '', '', "
    "now(), now(), true)"
)
CHANNELS = ("phone", "slack", "email")


def baseline(database_url: str, count: int) -> dict[str, float]:
    """Incidents/s of plain psycopg INSERTs: one incident row and three notification rows per
    incident, each its own autocommit statement; and the four in one transaction."""
    import psycopg

    url = scratch_url(database_url)
    recreate_database(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(BASELINE_DDL)
            context = json.dumps({"kind": "initial", "incident": "INC-0", "severity": 1})
            body = "Sev 1 incident logged: storm alert on host-1. Acknowledge: " + "x" * 200

            sequence = iter(range(10**9))

            def one(n: int, tag: str) -> None:
                number = f"INC-{tag}-{n:05d}"
                incident_id = conn.execute(
                    INCIDENT_SQL, [number, next(sequence), f"Storm alert {n} ({tag})"]
                ).fetchone()[0]
                for c, channel in enumerate(CHANNELS):
                    conn.execute(
                        NOTIFICATION_SQL,
                        [
                            incident_id,
                            c + 1,
                            f"+1415555{c:04d}",
                            channel,
                            f"[Sev 1] {number}",
                            body,
                            context,
                            f"http://127.0.0.1/ack/#{secrets.token_urlsafe(24)}",
                            f"initial:{incident_id}:sev1:c{c + 1}:{channel}",
                        ],
                    )

            for n in range(min(50, count)):  # warm-up
                one(n, "w")
            started = time.perf_counter()
            for n in range(count):
                one(n, "a")
            autocommit = count / (time.perf_counter() - started)
            started = time.perf_counter()
            for n in range(count):
                with conn.transaction():
                    one(n, "t")
            transactional = count / (time.perf_counter() - started)
    finally:
        drop_database(url)
    return {"autocommit": autocommit, "transaction": transactional}


# --- One setup (in a child process: Django is set up once per process) ------------------------


def setup_env(args: argparse.Namespace, setup: str, var_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VIGIL_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "VIGIL_VAR_DIR": str(var_dir),
            "PYTHONWARNINGS": "ignore::UserWarning",
            # make run puts the virtualenv first on PATH (the Procfile calls celery, gunicorn).
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    if setup == "a":
        # As `make run` sets it; the address it serves at, as `make run` records it.
        env.update({"DJANGO_DEBUG": "1", "VIGIL_BIND": "127.0.0.1"})
        (var_dir / "development").write_text(
            f"# Written by bench/alert_storm.py as make run writes it.\nBIND=127.0.0.1\n"
            f"PORT={port}\n"
        )
    else:
        env.update(
            {
                "DATABASE_URL": args.database_url,
                "REDIS_URL": args.redis_url,
                "CELERY_BROKER_URL": args.redis_url,
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DJANGO_SECURE_SSL_REDIRECT": "0",
                "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
                "VIGIL_LOG_LEVEL": "WARNING",
                "VIGIL_BASE_URL": f"http://127.0.0.1:{port}",
                **{
                    f"VIGIL_CHANNEL_{c}": LOG
                    for c in ("EMAIL", "SLACK", "SMS", "PHONE", "TEAMS", "WEBHOOK")
                },
            }
        )
    return env


def reachable_contacts() -> str:
    """Every seeded contact gets a phone number, a Slack handle and a login in its role's group
    (as ``bench/events_latency.py`` does); returns the incident manager's username."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from incidents.models import EscalationContact, ResponseRole

    user_model = get_user_model()
    number = 100
    manager = ""

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
                if role.key == "incident_manager" and kind == "primary":
                    manager = f"{slug}-{kind}"
    viewer = Group.objects.filter(name="Viewer").first()
    for level in EscalationContact.objects.select_related("contact"):
        if level.contact.user_id is None:
            reach(level.contact, level.key.replace("_", "-"), viewer)
    return manager


def prepare() -> dict[str, str]:
    """Migrate, make the contacts reachable; an Alertmanager integration and an API token."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from knox.models import AuthToken

    from incidents.detection.integrations import integration_create

    call_command("migrate", "--noinput", verbosity=0)
    manager = reachable_contacts()
    user = get_user_model().objects.get(username=manager)
    _, token = AuthToken.objects.create(user=user)
    integration = integration_create(
        actor=None, source="system", name="storm prometheus", kind="alertmanager"
    )
    prepared = {
        "integration": integration.pk,
        "key": integration.key,
        "secret": integration.secret,
        "token": token,
    }
    connection.close()
    return prepared


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def descendants(pid: int) -> list[int]:
    """Process ids under ``pid`` (its children, theirs, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_by_process() -> dict[str, float]:
    """CPU seconds (user + system) used so far by the processes of this machine that take
    part in a storm, by role: PostgreSQL, Redis, the web server, the Celery workers, beat,
    this bench (its client threads and its polling), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    used: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(entry) == me:
            role = "this bench (client threads, polling)"
        elif name.startswith("postgres"):
            role = "PostgreSQL"
        elif name.startswith("redis"):
            role = "Redis"
        elif "gunicorn" in command:
            role = "web (gunicorn)"
        elif "celery" in command and " beat" in command:
            role = "beat"
        elif "celery" in command and " worker" in command:
            role = "urgent worker" if "urgent@" in command else "Celery worker"
        else:
            continue
        used[role] = used.get(role, 0.0) + seconds
    return used


def stop(process: subprocess.Popen, *, group: bool = True, wait: float = 40) -> None:
    """SIGTERM (to its process group, or to it alone: devrun stops its own processes), then
    SIGKILL to it and everything it started, if still running after ``wait`` seconds."""
    if process.poll() is None:
        tree = descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.send_signal(signal.SIGTERM)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        # Whatever it started and left behind (honcho puts each process in a group of its own).
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Any HTTP answer (a GET on a hook answers 405) means the web process serves."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            sys.exit(f"nothing served {url} within {timeout:.0f} s:\n{tail}")
        time.sleep(0.3)


def wait_workers_ready(log: Path, workers: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(" ready.") < workers:
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            sys.exit(f"{workers} Celery worker(s) did not start within {timeout:.0f} s:\n{tail}")
        time.sleep(0.3)


def procfile_workers() -> int:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return sum(1 for line in lines if " celery " in f" {line} " and " worker" in line)


def start_setup(setup: str, env: dict[str, str], var_dir: Path, port: int):
    """The setup's processes; returns (processes, how to stop each)."""
    if setup == "a":
        log = var_dir / "devrun.log"
        devrun = start([sys.executable, "-m", "config.devrun", "--port", str(port)], env, log)
        return [(devrun, False, log)], procfile_workers()
    bin_dir = Path(sys.executable).parent
    # As the Procfile's web process runs it (config/gunicorn.py: gthread workers, whose threads
    # keep a sender's connection open), with 2 worker processes.
    gunicorn = start(
        [
            str(bin_dir / "gunicorn"),
            "config.wsgi",
            "--config",
            "python:config.gunicorn",
            "--log-level",
            "warning",
        ],
        {**env, "WEB_CONCURRENCY": "2", "VIGIL_BIND": "127.0.0.1", "PORT": str(port)},
        var_dir / "gunicorn.log",
    )
    worker_log = var_dir / "worker.log"
    worker = start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--hostname",
            "storm@%h",
            "--queues",
            QUEUES,
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        env,
        worker_log,
    )
    beat = start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--schedule",
            str(var_dir / "celerybeat-schedule"),
            "--loglevel",
            "WARNING",
        ],
        env,
        var_dir / "beat.log",
    )
    return [
        (gunicorn, True, var_dir / "gunicorn.log"),
        (worker, True, worker_log),
        (beat, True, var_dir / "beat.log"),
    ], 1


def storm_bodies(count: int) -> list[bytes]:
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    bodies = []
    for g in range(count):
        name = f"{PREFIX}-{g:05d}"
        labels = {
            "alertname": name,
            "job": "storm",
            "instance": f"host-{g}:9100",
            "severity": "critical",
        }
        bodies.append(
            json.dumps(
                {
                    "version": "4",
                    "groupKey": f'{{}}:{{alertname="{name}"}}',
                    "truncatedAlerts": 0,
                    "status": "firing",
                    "receiver": "vigil",
                    "groupLabels": {"alertname": name},
                    "commonLabels": labels,
                    "commonAnnotations": {},
                    "externalURL": "http://alertmanager.example.com:9093",
                    "alerts": [
                        {
                            "status": "firing",
                            "labels": labels,
                            "annotations": {"summary": f"{name} down on host-{g}"},
                            "startsAt": starts,
                            "endsAt": "0001-01-01T00:00:00Z",
                            "generatorURL": "http://prometheus.example.com:9090/graph",
                            "fingerprint": f"{name}-fp",
                        }
                    ],
                }
            ).encode()
        )
    return bodies


def post_all(url: str, bodies: list[bytes], secret: str, threads: int, posted: list) -> float:
    """POST every body from ``threads`` threads, each on one kept-alive connection
    (``http.client``: the load generator shares the machine's two cores with Vigil, and
    ``requests`` spent about as much CPU per POST as the webhook view itself); appends each
    answer's status to ``posted``."""
    import http.client

    parts = urlparse(url)
    local = threading.local()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}

    def send(body: bytes) -> None:
        for attempt in (1, 2):
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = http.client.HTTPConnection(
                    parts.hostname, parts.port, timeout=120
                )
            try:
                connection.request("POST", parts.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                posted.append(response.status)
                return
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                local.connection = None
                # Sent again only when a kept-alive connection was closed by the server before
                # it answered (the request was not taken), as requests/urllib3 do.
                stale = isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                )
                if attempt == 2 or not stale:
                    posted.append(type(exc).__name__)
                    return

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - started


def broker_backlog(setup: str, env: dict[str, str]) -> int:
    """Messages waiting or taken but not acknowledged, in the broker."""
    if setup == "a":
        # A folder per queue (config/broker.py); a name with a leading dot is being written.
        folder = Path(env["VIGIL_VAR_DIR"]) / "broker" / "queue"
        return sum(1 for path in folder.rglob("*.msg") if not path.name.startswith("."))
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(env["REDIS_URL"])
    total = client.hlen("unacked")
    # The queues' lists only (Kombu names a queue's priority lists ``<queue>\x06\x16<n>``): the
    # same Redis database holds other keys of Vigil, such as the API rate limiter's windows.
    for queue in settings.VIGIL_ALL_QUEUES:
        for key in client.scan_iter(match=f"{queue}*", count=1000):
            name = key.decode()
            if (name == queue or name.startswith(f"{queue}\x06\x16")) and client.type(
                key
            ) == b"list":
                total += client.llen(key)
    return total


def work_left() -> dict[str, int]:
    from django.db.models import Q

    from escalation.models import Notification, NotificationStatus
    from incidents.models import DeliveryStatus, EventStatus, IncidentEvent, WebhookDelivery

    return {
        "deliveries": WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count(),
        "events": IncidentEvent.objects.filter(
            Q(status=EventStatus.PENDING) | Q(status=EventStatus.RUNNING)
        ).count(),
        "notifications": Notification.objects.filter(
            status__in=[NotificationStatus.PENDING, NotificationStatus.SENDING]
        ).count(),
    }


def create_sev1(base: str, token: str) -> dict:
    import requests

    started = time.time()
    response = requests.post(
        f"{base}/api/v1/incidents/",
        json={"title": TITLE, "severity": 1},
        headers={"Authorization": f"Token {token}"},
        timeout=120,
    )
    answered = time.time()
    sev1 = {"title": TITLE, "posted": started, "answered": answered}
    if response.status_code != 201:
        sev1["error"] = f"{response.status_code}: {response.text[:300]}"
    else:
        sev1["number"] = response.json()["id"]
    return sev1


def first_page(number: str) -> tuple[float | None, int]:
    from django.db.models import Min

    from escalation.models import Notification, NotificationStatus

    rows = Notification.objects.filter(incident__number=number)
    sent = rows.filter(status=NotificationStatus.SENT).aggregate(first=Min("sent_at"))["first"]
    return (sent.timestamp() if sent else None), rows.count()


def _setup_alive(processes: list) -> None:
    """Stop waiting as soon as a process of the setup has exited: nothing would drain its
    queues any more (a worker that stopped takes ``make run``'s other processes with it)."""
    for process, _, log in processes:
        if process.poll() is not None:
            sys.exit(f"a process of the setup exited ({process.returncode}): see {log}")


def run_setup(args: argparse.Namespace) -> dict:
    setup = args.run_setup
    var_dir = Path(tempfile.mkdtemp(prefix=f"vigil-bench-storm-{setup}-"))
    port = free_port()
    env = setup_env(args, setup, var_dir, port)
    processes: list = []
    try:
        if setup == "b":
            if urlparse(args.redis_url).path.strip("/") in ("", "0"):
                sys.exit("--redis-url must name a Redis database other than 0")
            recreate_database(args.database_url)
            flush_redis(args.redis_url)
        os.environ.clear()
        os.environ.update(env)
        os.environ["VIGIL_LOG_LEVEL"] = "WARNING"  # this process only
        import django

        django.setup()
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        from django.db import connection

        from incidents.models import Alert

        prepared = prepare()
        processes, workers = start_setup(setup, env, var_dir, port)
        base = f"http://127.0.0.1:{port}"
        hook = f"{base}/hooks/alertmanager/{prepared['key']}/"
        first_log = processes[0][2]
        wait_until_serving(hook, processes[0][0], first_log, timeout=120)
        worker_log = first_log if setup == "a" else processes[1][2]
        wait_workers_ready(worker_log, workers, processes[0][0], timeout=120)
        result: dict = {"setup": setup, "load_start": load_average(), "alerts": args.alerts}
        print(f"  {SETUPS[setup]}: up (load {result['load_start']})", flush=True)

        bodies = storm_bodies(args.alerts)
        alerts = Alert.objects.filter(integration_id=prepared["integration"])
        posted: list = []
        sev1: dict = {}
        sev1_thread: threading.Thread | None = None
        cpu_start = cpu_by_process()
        t0 = time.time()
        poster = threading.Thread(
            target=lambda: result.update(
                accept_s=post_all(hook, bodies, prepared["secret"], args.threads, posted)
            ),
            daemon=True,
        )
        poster.start()
        deadline = time.monotonic() + args.timeout
        attached = 0
        while attached < args.alerts:
            time.sleep(0.1)
            attached = alerts.filter(incident__isnull=False).count()
            if sev1_thread is None and attached >= args.alerts * args.sev1_at:
                sev1["at"] = time.time() - t0
                sev1["attached"] = attached
                sev1["accepted"] = len(posted)
                sev1_thread = threading.Thread(
                    target=lambda: sev1.update(create_sev1(base, prepared["token"])),
                    daemon=True,
                )
                sev1_thread.start()
            if time.monotonic() > deadline:
                sys.exit(f"only {attached} of {args.alerts} alerts on incidents in time")
            _setup_alive(processes)
        result["attached_s"] = time.time() - t0
        cpu_end = cpu_by_process()
        result["cpu"] = {role: cpu_end[role] - cpu_start.get(role, 0.0) for role in sorted(cpu_end)}
        poster.join()
        result["statuses"] = {str(s): posted.count(s) for s in set(posted)}
        if sev1_thread is not None:
            sev1_thread.join()
        print(
            f"  all {args.alerts} alerts on incidents after {result['attached_s']:.1f} s "
            f"(load {load_average()})",
            flush=True,
        )

        # Until the queues are empty: every delivery, event and notification done, and nothing
        # left in the broker (sweeps may add a message now and then; it must be gone too).
        next_note = time.monotonic() + 30
        drain_deadline = time.monotonic() + args.drain_timeout
        while True:
            left = work_left()
            backlog = broker_backlog(setup, env)
            if not any(left.values()) and backlog == 0:
                break
            _setup_alive(processes)
            if time.monotonic() > drain_deadline:
                print(
                    f"  work still left after {args.drain_timeout:.0f} s more: {left}, broker "
                    f"{backlog}",
                    flush=True,
                )
                result["left"] = {**left, "broker": backlog}
                break
            if time.monotonic() > next_note:
                print(f"  {time.time() - t0:.0f} s: left {left}, broker {backlog}", flush=True)
                next_note = time.monotonic() + 30
            time.sleep(0.2)
        result["empty_s"] = None if "left" in result else time.time() - t0
        result["load_end"] = load_average()

        if "error" in sev1:
            # Say why (the web process logged it), and whether the incident was logged anyway.
            log = processes[0][2].read_text(errors="replace")
            at = log.rfind("Traceback")
            sev1["log"] = log[at : at + 4000] if at >= 0 else log[-2000:]
            from incidents.models import Incident

            found = Incident.objects.filter(title=TITLE).values_list("number", flat=True).first()
            if found:
                sev1["number"] = found
        if "number" in sev1:
            sent_at, pages = first_page(sev1["number"])
            sev1["pages"] = pages
            sev1["latency"] = None if sent_at is None else sent_at - sev1["answered"]
        result["sev1"] = sev1

        from django.db.models import Count, Q

        from escalation.models import Notification, NotificationStatus
        from incidents.models import EventStatus, IncidentEvent

        result["incidents"] = (
            alerts.filter(incident__isnull=False).values("incident").distinct().count()
        )
        notifications = Notification.objects.aggregate(
            total=Count("id"),
            sent=Count("id", filter=Q(status=NotificationStatus.SENT)),
            failed=Count("id", filter=Q(status=NotificationStatus.FAILED)),
            retried=Count("id", filter=Q(attempts__gt=1)),
        )
        result["notifications"] = notifications
        result["events"] = IncidentEvent.objects.aggregate(
            total=Count("id"),
            failed=Count("id", filter=Q(status=EventStatus.FAILED)),
            again=Count("id", filter=Q(attempts__gt=1)),
        )
        connection.close()
        return result
    finally:
        for process, group, _log in reversed(processes):
            stop(process, group=group)
        if setup == "b":
            with contextlib.suppress(Exception):
                flush_redis(args.redis_url)
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            try:
                drop_database(args.database_url)
            except Exception as exc:
                print(f"  could not drop {args.database_url}: {exc}", file=sys.stderr)
        if args.keep:
            print(f"  kept {var_dir}", flush=True)
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


# --- Report -------------------------------------------------------------------------------------


def report(result: dict, around: list[dict[str, float]]) -> dict[str, float | None]:
    """Prints a setup's figures; ``around``: the baselines measured before and after it."""
    setup, n = result["setup"], result["alerts"]
    accept = n / result["accept_s"]
    rate = result["incidents"] / result["attached_s"]
    sev1 = result["sev1"]
    print(f"\n{SETUPS[setup]}")
    print(f"  load average: {result['load_start']} (start), {result['load_end']} (end)")
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items()))
    print(f"  accept: {n} POSTs in {result['accept_s']:.1f} s = {accept:.1f} req/s ({answers})")
    print(
        f"  every alert on an incident after {result['attached_s']:.1f} s: "
        f"{result['incidents']} incidents, {rate:.1f} new incidents/s"
    )
    if result.get("cpu"):
        spent = ", ".join(
            f"{role} {seconds:.2f}"
            for role, seconds in sorted(result["cpu"].items(), key=lambda item: -item[1])
        )
        print(f"  CPU seconds until then, by process: {spent}")
    if result["empty_s"] is None:
        print(f"  queues NOT empty at the end of the wait: {result['left']}")
    else:
        print(f"  queues empty after {result['empty_s']:.1f} s")
    latency = sev1.get("latency")
    if "error" in sev1:
        print(f"  mid-storm Sev 1: the API answered {sev1['error']}")
        print("    " + sev1.get("log", "").replace("\n", "\n    ").rstrip())
    if "number" in sev1:
        shown = "never sent" if latency is None else f"{latency:.2f} s"
        print(
            f"  mid-storm Sev 1 {sev1['number']} (created at {sev1['at']:.1f} s, "
            f"{sev1['attached']} alerts on incidents, {sev1['accepted']} POSTs answered; the "
            f"POST took {sev1['answered'] - sev1['posted']:.2f} s): first page {shown} after "
            f"the response ({sev1['pages']} pages)"
        )
    notes, events = result["notifications"], result["events"]
    print(
        f"  notifications: {notes['total']} ({notes['sent']} sent, {notes['failed']} failed, "
        f"{notes['retried']} after more than one attempt); events: {events['total']} "
        f"({events['failed']} failed, {events['again']} followed more than once)"
    )
    before, after = (b["autocommit"] for b in around)
    mean = (before + after) / 2
    ratio = rate / mean
    ok = ratio >= TARGET_RATE[setup]
    print(
        f"  new incidents/s / baseline ({before:.1f} before, {after:.1f} after, mean "
        f"{mean:.1f}): {ratio:.3f} ({rate / before:.3f} and {rate / after:.3f} against each; "
        f"target >= {TARGET_RATE[setup]}): {'pass' if ok else 'FAIL'}"
    )
    missed = [] if ok else [f"{setup}: incidents/s"]
    if result["empty_s"] is None:
        missed.append(f"{setup}: queues not emptied")
    if setup == "b":
        ok = latency is not None and latency <= TARGET_SEV1
        print(f"  mid-storm Sev 1 first page <= {TARGET_SEV1:g} s: {'pass' if ok else 'FAIL'}")
        if not ok:
            missed.append("b: Sev 1 first page")
    non202 = sum(v for k, v in result["statuses"].items() if k != "202")
    if non202:
        missed.append(f"{setup}: {non202} POSTs not accepted")
    return {"accept": accept, "missed": missed}


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    if args.run_setup:
        result = run_setup(args)
        Path(args.result_file).write_text(json.dumps(result))
        return

    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = set(setups) - set(SETUPS)
    if unknown or not setups:
        sys.exit(f"unknown setups: {', '.join(sorted(unknown)) or '(none)'}; use a, b or a,b")
    print(
        f"Alert storm: {args.alerts} Alertmanager POSTs, one new Sev 1 group each, "
        f"{args.threads} client threads ({os.cpu_count()} CPUs, load {load_average()})",
        flush=True,
    )

    def measure_baseline(when: str) -> dict[str, float]:
        base = baseline(args.database_url, args.alerts)
        print(
            f"baseline {when}, psycopg single-row autocommit INSERTs (1 incident + 3 "
            f"notification rows): {base['autocommit']:.1f} incidents/s; the four in one "
            f"transaction: {base['transaction']:.1f} incidents/s (load {load_average()})",
            flush=True,
        )
        return base

    base = measure_baseline("before the setups")
    outcomes: dict[str, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-storm-"))
    try:
        for setup in setups:
            print(f"\n{SETUPS[setup]} ...", flush=True)
            result_file = workdir / f"{setup}.json"
            child = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    *sys.argv[1:],
                    "--run-setup",
                    setup,
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
                        child.wait(120)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
            if code != 0:
                sys.exit(f"the setup {setup} run failed (exit {code})")
            after = measure_baseline(f"after {setup}")
            outcomes[setup] = report(json.loads(result_file.read_text()), [base, after])
            base = after
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    missed = [m for o in outcomes.values() for m in o["missed"]]
    if "a" in outcomes and "b" in outcomes:
        ratio = outcomes["a"]["accept"] / outcomes["b"]["accept"]
        ok = ratio >= TARGET_ACCEPT
        print(
            f"\naccept rate (a)/(b): {ratio:.3f} (target >= {TARGET_ACCEPT}): "
            f"{'pass' if ok else 'FAIL'}"
        )
        if not ok:
            missed.append("accept rate (a)/(b)")
    print(f"load average at the end: {load_average()}")
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        if not args.no_fail:
            sys.exit(1)


if __name__ == "__main__":
    main()
