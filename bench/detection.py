#!/usr/bin/env python
"""Benchmark: the monitoring webhooks, on PostgreSQL + Redis, served by gunicorn (2 sync
workers, production settings) with a real Celery worker (prefork, concurrency 2) processing
what they accept.

(a) Accept rate. ``POST /hooks/alertmanager/<key>/`` (the Alertmanager v4 sample, bearer
    token) against a bare DRF ``APIView`` that parses the same JSON body and answers 202
    (``/bench/bare/``, present only in this script's URLconf), driven by wrk with the same
    body, alternating. The worker keeps processing what the hook accepted meanwhile, as in
    production. Target: hook / bare >= 0.5.
(b) End-to-end alerts per second: ``--groups`` Alertmanager groups of ``--alerts`` new alerts
    each, posted by 8 client threads; timed from the first POST until every delivery is
    processed (each alert stored, deduplicated and attached to an incident; each group opens
    one, which pages the response team through the outbox). Against plain single-row
    autocommit INSERTs per second with psycopg, one connection, into a table shaped like the
    alerts table (jsonb labels, annotations and raw, the partial unique index), in the same
    run. Target: alerts/s / inserts/s >= 0.3.
(c) A burst of ``--burst-groups`` groups x ``--alerts`` alerts: all must be answered 2xx and
    fully processed; prints the time to accept and the time to process them all.

    python bench/detection.py [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_detect]
                              [--redis-url redis://127.0.0.1:6379/7] [--duration 10]
                              [--rounds 2] [--connections 4] [--groups 200] [--alerts 20]
                              [--burst-groups 1000]

The database is dropped and recreated; Vigil's queues and cache keys in the Redis database
given are cleared before and after. Needs wrk (``apt-get install wrk``). Traffic stays on
127.0.0.1. Exits non-zero when a target is missed or (c) loses anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_detect"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
BARE_PATH = "/bench/bare/"
SAMPLE = ROOT / "tests" / "incidents" / "payloads" / "alertmanager-webhook-v4-firing.json"
TARGET_ACCEPT = 0.5
TARGET_E2E = 0.3
LOG = "escalation.channels.log.LogBackend"


# --- The served app: production URLs plus the bare view ---------------------------------------


def wsgi_app():
    """gunicorn ``bench.detection:wsgi_app()``: Vigil's WSGI app with this module as URLconf."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    settings.ROOT_URLCONF = __name__
    return get_wsgi_application()


def __getattr__(name: str):
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.urls import path
    from rest_framework.permissions import AllowAny
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from config.urls import urlpatterns as production

    class BareView(APIView):
        """DRF's request handling and JSON parsing of the same body; no work, no throttle."""

        permission_classes = [AllowAny]
        throttle_classes = []

        def post(self, request):
            return Response({"alerts": len(request.data.get("alerts", []))}, status=202)

    return [path(BARE_PATH.lstrip("/"), BareView.as_view()), *production]


# --- Setup --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DETECT_DATABASE_URL", DEFAULT_DATABASE_URL),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_DETECT_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--groups", type=int, default=200, help="(b) groups")
    parser.add_argument("--alerts", type=int, default=20, help="alerts per group")
    parser.add_argument("--burst-groups", type=int, default=1000, help="(c) groups")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument(
        "--threads", type=int, default=1, help="gunicorn threads per worker (1: sync workers)"
    )
    parser.add_argument(
        "--accept-without-worker",
        action="store_true",
        help="(a) with the worker stopped: the accept path alone, without processing beside it",
    )
    return parser.parse_args()


def environment(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "VIGIL_VAR_DIR": tempfile.mkdtemp(prefix="vigil-bench-detect-"),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_BASE_URL": f"http://127.0.0.1:{args.port}",
        # Pages are written and delivered through the outbox as in production, to the log.
        **{f"VIGIL_CHANNEL_{c}": LOG for c in ("EMAIL", "SLACK", "SMS", "PHONE", "TEAMS")},
        "VIGIL_CHANNEL_WEBHOOK": LOG,
        "PYTHONWARNINGS": "ignore::UserWarning",
    }


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
    for pattern in ("vigil*", "unacked*", "_kombu*", "celery*", ":1:vigil*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


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


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        url, data=b'{"alerts": []}', headers={"Content-Type": "application/json"}
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 202:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"gunicorn did not answer {url} within {timeout:.0f} s")
        time.sleep(0.5)


# --- (a) accept rate -----------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS[unit]


def wrk_post(url: str, body: bytes, headers: dict[str, str], *, args, duration: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
        script.write(f"wrk.body = {json.dumps(body.decode())}\n")
        for name, value in headers.items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
        script.write(
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format("non2xx %d\\n", summary.errors.status))\n'
            "end\n"
        )
    command = [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(args.connections),
        "--duration",
        f"{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "--script",
        script.name,
        url,
    ]
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    if "Socket errors" in out or re.search(r"non2xx [1-9]", out):
        sys.exit(f"wrk saw errors against {url}:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
    }


# --- (b), (c) end to end -------------------------------------------------------------------------


def group_bodies(prefix: str, groups: int, alerts: int) -> list[bytes]:
    """Alertmanager v4 notifications of ``groups`` new groups, each with ``alerts`` alerts no
    rule matches (Sev 3 from their severity label: email and Slack, the response team paged)."""
    sample = json.loads(SAMPLE.read_text())
    base_alert = sample["alerts"][0]
    bodies = []
    for g in range(groups):
        body = dict(sample)
        body["groupKey"] = f'{{}}/{{}}:{{alertname="{prefix}-{g}"}}'
        body["groupLabels"] = {"alertname": f"{prefix}-{g}"}
        body["alerts"] = [
            {
                **base_alert,
                "labels": {
                    "alertname": f"{prefix}-{g}",
                    "instance": f"host-{a}:9100",
                    "severity": "warning",
                },
                "annotations": {"summary": f"{prefix} {g} on host-{a}"},
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)),
                "fingerprint": f"{prefix}-{g:05d}-{a:03d}",
            }
            for a in range(alerts)
        ]
        bodies.append(json.dumps(body).encode())
    return bodies


def post_all(
    url: str, bodies: list[bytes], token: str, threads: int = 8
) -> tuple[list[int], float]:
    import requests

    local = threading.local()

    def send(body: bytes) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=60,
        )
        return response.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        statuses = list(pool.map(send, bodies))
    return statuses, time.perf_counter() - started


def wait_processed(database_url: str, since_id: int, count: int, timeout: float) -> float:
    """Polls until ``count`` deliveries after ``since_id`` are processed; returns the time."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            done, failed = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'processed'), "
                "count(*) FILTER (WHERE status = 'failed') "
                "FROM incidents_webhookdelivery WHERE id > %s",
                [since_id],
            ).fetchone()
            if failed:
                sys.exit(f"{failed} deliveries failed to process")
            if done >= count:
                return time.perf_counter()
            if time.monotonic() > deadline:
                sys.exit(f"only {done} of {count} deliveries processed within {timeout:.0f} s")
            time.sleep(0.05)


def last_delivery_id(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT coalesce(max(id), 0) FROM incidents_webhookdelivery"
        ).fetchone()[0]


def check_alerts(database_url: str, prefix: str, groups: int, alerts: int) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        stored, attached, incidents = conn.execute(
            "SELECT count(*), count(incident_id), count(DISTINCT incident_id) "
            "FROM incidents_alert WHERE fingerprint LIKE %s",
            [f"{prefix}-%"],
        ).fetchone()
    if (stored, attached, incidents) != (groups * alerts, groups * alerts, groups):
        sys.exit(
            f"{prefix}: expected {groups * alerts} alerts attached to {groups} incidents, found "
            f"{stored} stored, {attached} attached, {incidents} incidents"
        )
    return stored, incidents


def psycopg_inserts(database_url: str, count: int) -> float:
    """Single-row autocommit INSERTs per second into a table shaped like the alerts table."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_alert")
        conn.execute(
            """
            CREATE TABLE bench_alert (
                id bigserial PRIMARY KEY,
                integration_id bigint NOT NULL,
                group_id bigint NOT NULL,
                incident_id bigint,
                fingerprint varchar(255) NOT NULL,
                status varchar(10) NOT NULL,
                title varchar(255) NOT NULL,
                labels jsonb NOT NULL,
                annotations jsonb NOT NULL,
                raw jsonb NOT NULL,
                severity_id smallint NOT NULL,
                starts_at timestamptz NOT NULL,
                received_at timestamptz NOT NULL,
                last_received_at timestamptz NOT NULL,
                count integer NOT NULL
            )
            """
        )
        conn.execute(
            "CREATE UNIQUE INDEX bench_alert_firing ON bench_alert (integration_id, fingerprint) "
            "WHERE status = 'firing'"
        )
        conn.execute("CREATE INDEX bench_alert_incident ON bench_alert (incident_id, status)")
        sample = json.loads(SAMPLE.read_text())["alerts"][0]
        labels, annotations, raw = (
            json.dumps(sample["labels"]),
            json.dumps(sample["annotations"]),
            json.dumps(sample),
        )
        sql = (
            "INSERT INTO bench_alert (integration_id, group_id, incident_id, fingerprint, status,"
            " title, labels, annotations, raw, severity_id, starts_at, received_at,"
            " last_received_at, count) VALUES (1, 1, 1, %s, 'firing', %s, %s, %s, %s, 3, now(),"
            " now(), now(), 1)"
        )
        started = time.perf_counter()
        for index in range(count):
            conn.execute(sql, [f"fp-{index}", f"Alert {index}", labels, annotations, raw])
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_alert")
    return count / elapsed


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    env = environment(args)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONWARNINGS"})
    recreate_database(args.database_url)
    clear_redis(args.redis_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from incidents.detection.integrations import integration_create

    call_command("migrate", verbosity=0)
    integration = integration_create(
        actor=None, source="system", name="bench prometheus", kind="alertmanager"
    )
    key, token = integration.key, integration.secret
    connection.close()

    base = f"http://127.0.0.1:{args.port}"
    hook = f"{base}/hooks/alertmanager/{key}/"
    logs = Path(env["VIGIL_VAR_DIR"])
    gunicorn = start(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "bench.detection:wsgi_app()",
            "--workers",
            "2",
            "--threads",
            str(args.threads),
            "--bind",
            f"127.0.0.1:{args.port}",
            "--log-level",
            "warning",
        ],
        env,
        logs / "gunicorn.log",
    )
    worker_command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--queues",
        "vigil.urgent,vigil.sweeps,vigil.intake,vigil,vigil.bulk",
        "--pool",
        "prefork",
        "--concurrency",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "WARNING",
    ]
    worker = None if args.accept_without_worker else start(worker_command, env, logs / "worker.log")
    failed = False
    try:
        wait_until_up(base + BARE_PATH)
        sample = SAMPLE.read_bytes()
        hook_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        bare_headers = {"Content-Type": "application/json"}

        # (a) ------------------------------------------------------------------------------
        print("(a) accept rate: Alertmanager hook vs bare DRF POST view")
        for url, headers in ((hook, hook_headers), (base + BARE_PATH, bare_headers)):
            wrk_post(url, sample, headers, args=args, duration=2)  # warm up
        results: dict[str, list[dict]] = {"hook": [], "bare": []}
        for round_ in range(1, args.rounds + 1):
            for name, url, headers in (
                ("hook", hook, hook_headers),
                ("bare", base + BARE_PATH, bare_headers),
            ):
                result = wrk_post(url, sample, headers, args=args, duration=args.duration)
                results[name].append(result)
                print(
                    f"  round {round_}: {name:<5} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms"
                )
        summary = {
            name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
            for name, runs in results.items()
        }
        accept_ratio = summary["hook"]["rps"] / summary["bare"]["rps"]
        if worker is None:
            worker = start(worker_command, env, logs / "worker.log")
        # Let the worker drain what (a) accepted before timing (b).
        accepted = last_delivery_id(args.database_url)
        wait_processed(args.database_url, 0, accepted, timeout=600)

        # (b) ------------------------------------------------------------------------------
        print(f"(b) end to end: {args.groups} groups x {args.alerts} new alerts")
        since = last_delivery_id(args.database_url)
        bodies = group_bodies("e2e", args.groups, args.alerts)
        started = time.perf_counter()
        statuses, accept_time = post_all(hook, bodies, token)
        if set(statuses) != {202}:
            sys.exit(f"(b) answers other than 202: {sorted(set(statuses))}")
        finished = wait_processed(args.database_url, since, args.groups, timeout=1800)
        e2e_time = finished - started
        total = args.groups * args.alerts
        check_alerts(args.database_url, "e2e", args.groups, args.alerts)
        alerts_per_s = total / e2e_time
        inserts_per_s = psycopg_inserts(args.database_url, total)
        e2e_ratio = alerts_per_s / inserts_per_s
        print(f"  {total} alerts accepted in {accept_time:.1f} s, processed in {e2e_time:.1f} s")

        # (c) ------------------------------------------------------------------------------
        print(f"(c) burst: {args.burst_groups} groups x {args.alerts} alerts")
        since = last_delivery_id(args.database_url)
        bodies = group_bodies("burst", args.burst_groups, args.alerts)
        started = time.perf_counter()
        statuses, burst_accept = post_all(hook, bodies, token, threads=16)
        non2xx = [s for s in statuses if not 200 <= s < 300]
        finished = wait_processed(args.database_url, since, args.burst_groups, timeout=3600)
        burst_total = finished - started
        stored, incidents = check_alerts(args.database_url, "burst", args.burst_groups, args.alerts)
    finally:
        stop(gunicorn)
        if worker is not None:
            stop(worker)
        clear_redis(args.redis_url)

    print()
    print(
        f"gunicorn 2 sync workers, Celery worker prefork x2, PostgreSQL, Redis "
        f"(wrk {args.connections} connections, {args.rounds} x {args.duration} s, medians):"
    )
    print(f"  {'(a) endpoint':<40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, label in (("hook", "POST /hooks/alertmanager/<key>/"), ("bare", "bare DRF POST")):
        s = summary[name]
        print(f"  {label:<40} {s['rps']:>8.1f} {s['p50']:>8.1f} {s['p99']:>8.1f}")
    verdict = "met" if accept_ratio >= TARGET_ACCEPT else "NOT met"
    print(f"  accept ratio hook/bare: {accept_ratio:.2f} (target >= {TARGET_ACCEPT}: {verdict})")
    failed |= accept_ratio < TARGET_ACCEPT
    print(
        f"  (b) end to end: {alerts_per_s:.0f} alerts/s ({args.groups} groups x {args.alerts}, "
        f"each group a new incident); psycopg single-row inserts: {inserts_per_s:.0f} rows/s"
    )
    verdict = "met" if e2e_ratio >= TARGET_E2E else "NOT met"
    print(f"  end-to-end ratio alerts/inserts: {e2e_ratio:.2f} (target >= {TARGET_E2E}: {verdict})")
    failed |= e2e_ratio < TARGET_E2E
    print(
        f"  (c) burst {args.burst_groups} x {args.alerts}: {len(statuses) - len(non2xx)}/"
        f"{len(statuses)} answered 2xx, accepted in {burst_accept:.1f} s, all processed in "
        f"{burst_total:.1f} s ({stored} alerts, {incidents} incidents)"
    )
    failed |= bool(non2xx)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
