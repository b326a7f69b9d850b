#!/usr/bin/env python
"""Benchmark: the public status site served from the cache, on PostgreSQL + Redis, by gunicorn
(2 workers, production settings).

(a) Throughput. ``GET /status/api/v2/summary.json`` and ``GET /status/`` (the rendered files,
    served from the Redis cache) against a trivial Django view answering the same number of
    constant bytes with the same content type (``/bench/constant/<name>``, present only in
    this script's URLconf), driven by wrk: each round runs a file and then its constant view
    for ``--duration`` s each, ``--rounds`` rounds. The ratio of a round (file / constant, two
    runs seconds apart) is robust to the load of a shared machine drifting; the median of the
    rounds' ratios is the figure. Target: >= 0.8 for both.
(b) Stampede. The site is expired (its fresh marker deleted from the cache, as a public change
    or the end of ``VIGIL_STATUS_FRESH_SECONDS`` does) and ``--concurrent`` requests are fired
    at once (threads released together by a barrier); renders are counted by a renderer this
    script registers in the served app only, which increments a Redis counter once per render
    of the site. Target: exactly 1 render, every request answered 200. Run against the server
    of (a) (``--threads`` per worker, default 1: sync workers) and against a second server of 2
    workers x ``--stampede-threads`` threads, where many requests are in Vigil at once.

    python bench/status_page.py [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_status]
                                [--redis-url redis://127.0.0.1:6379/12] [--duration 3]
                                [--rounds 8] [--connections 8] [--concurrent 200]

The database is dropped, recreated and seeded with a realistic page: 10 components in 3 groups
with 100 days of status history, 20 incidents with 2-4 published updates each (one still
active, one component degraded now), a completed and an upcoming maintenance. Vigil's keys in
the Redis database given are cleared before and after. Needs wrk (``apt-get install wrk``).
Traffic stays on 127.0.0.1. Exits non-zero when a target is missed.
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
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_status"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
CONSTANT_PATH = "/bench/constant/"
RENDER_COUNTER = "vigil-bench:status-renders"
TARGET_RATIO = 0.8
PAGES = {"summary": "/status/api/v2/summary.json", "index": "/status/"}
FILES = {"summary": "api/v2/summary.json", "index": "index.html"}


# --- The served app: production URLs, the constant view and the render counter ---------------


def wsgi_app():
    """gunicorn ``bench.status_page:wsgi_app()``: Vigil's WSGI app with this module as URLconf
    and a renderer that counts the site's renders in Redis."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    from communications.public.site import renderer

    settings.ROOT_URLCONF = __name__

    import redis

    counter = redis.Redis.from_url(os.environ["REDIS_URL"])

    @renderer
    def bench_render_counter(context):
        counter.incr(RENDER_COUNTER)
        return {}

    local_seconds = float(os.environ.get("BENCH_STATUS_LOCAL_SECONDS") or 0)
    if local_seconds > 0:
        _serve_local_copies(local_seconds)
    return get_wsgi_application()


def _serve_local_copies(seconds: float) -> None:
    """What-if (``--local-copy-seconds``): each process keeps the files it served and serves
    them again for ``seconds`` without asking the cache. Not Vigil's behaviour; it measures
    what such a layer would gain."""
    from communications.public import views

    cached = views.site_artifact
    copies: dict[str, tuple[float, object]] = {}

    def site_artifact(path: str):
        now = time.monotonic()
        kept = copies.get(path)
        if kept is not None and now - kept[0] < seconds:
            return kept[1]
        artifact = cached(path)
        copies[path] = (now, artifact)
        return artifact

    views.site_artifact = site_artifact


def __getattr__(name: str):
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.http import Http404, HttpResponse
    from django.urls import path

    from config.urls import urlpatterns as production

    # name -> (size, content type), measured from the rendered site before gunicorn started.
    shapes = {
        key: (b"x" * size, content_type)
        for key, (size, content_type) in json.loads(os.environ["BENCH_STATUS_SHAPES"]).items()
    }

    def constant(request, name):
        """The same number of bytes as the status file, constant: no cache, no database."""
        if name not in shapes:
            raise Http404
        body, content_type = shapes[name]
        return HttpResponse(body, content_type=content_type)

    return [path(CONSTANT_PATH.lstrip("/") + "<str:name>", constant), *production]


# --- Setup --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_STATUS_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_STATUS_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--concurrent", type=int, default=200, help="(b) requests at once")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    parser.add_argument(
        "--stampede-threads", type=int, default=16, help="(b) second server's threads per worker"
    )
    parser.add_argument(
        "--local-copy-seconds",
        type=float,
        default=0,
        help="what-if: each process serves the files it fetched for this long without the cache "
        "(not Vigil's behaviour; 0, the default: off)",
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
        "VIGIL_VAR_DIR": tempfile.mkdtemp(prefix="vigil-bench-status-"),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_BASE_URL": f"http://127.0.0.1:{args.port}",
        "PYTHONWARNINGS": "ignore::UserWarning",
        "BENCH_STATUS_LOCAL_SECONDS": str(args.local_copy_seconds),
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


def gunicorn(port: int, threads: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    return start(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "bench.status_page:wsgi_app()",
            "--workers",
            "2",
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
            "--backlog",
            "2048",
            "--log-level",
            "warning",
        ],
        env,
        log,
    )


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"gunicorn did not answer {url} within {timeout:.0f} s")
        time.sleep(0.5)


def seed() -> None:
    """A realistic page, through the component services (every status change an interval);
    the published updates are written as the publish service leaves them, back-dated."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from communications.markdown import markdown_to_html
    from communications.models import (
        ComponentGroup,
        Maintenance,
        MaintenanceStatus,
        StatusUpdate,
        StatusUpdateComponent,
        UpdateState,
    )
    from communications.services.components import component_create, component_status_set
    from incidents.models import Service
    from incidents.services.creation import incident_create

    actor = get_user_model().objects.create_superuser("bench-status", None, None)
    now = timezone.now().replace(microsecond=0)
    start_at = now - timedelta(days=100)
    groups = [
        ComponentGroup.objects.create(name=name, position=i)
        for i, name in enumerate(["Customer apps", "Payments", "Platform"])
    ]
    names = [
        ("web", "Website", 0), ("mobile", "Mobile apps", 0), ("search", "Search", 0),
        ("checkout", "Checkout", 1), ("cards", "Card payments", 1), ("payouts", "Payouts", 1),
        ("api", "Public API", 2), ("webhooks", "Webhooks", 2), ("auth", "Login", 2),
        ("email", "Email delivery", None),
    ]  # fmt: skip
    components = []
    for position, (slug, public_name, group) in enumerate(names):
        service = Service.objects.create(slug=slug, name=slug.title(), public_name=public_name)
        components.append(
            component_create(
                service=service,
                actor=actor,
                group=groups[group] if group is not None else None,
                position=position,
                description=f"{public_name} for our customers.",
                at=start_at,
            )
        )
    steps = [
        ("investigating", "We are investigating reports of errors on {name}.", "partial_outage"),
        ("identified", "We have identified the cause: a faulty **configuration** change.", None),
        ("monitoring", "A fix is in place and we are monitoring the results.", "operational"),
        ("resolved", "This incident has been resolved. We apologize for the inconvenience.", None),
    ]
    for i in range(20):
        active = i == 19
        began = now - timedelta(hours=2) if active else start_at + timedelta(days=5 + i * 4.5)
        hit = [components[i % 10], components[(i * 3 + 1) % 10]][: 1 + i % 2]
        incident = incident_create(
            actor=None,
            source="system",
            title=f"internal incident {i}",
            severity=1 + i % 4,
            detected_at=began,
        )
        count = 2 if active else 2 + i % 3
        for n, (status, body, new_status) in enumerate(steps[:count]):
            if not active and n == count - 1:
                status, body, new_status = steps[3][0], steps[3][1], "operational"
            if active and new_status == "partial_outage":
                new_status = "degraded_performance"
            at = began + timedelta(minutes=15 + 40 * n)
            text = body.format(name=hit[0].name)
            update = StatusUpdate.objects.create(
                incident=incident,
                public_title=f"Errors on {hit[0].name}",
                public_status=status,
                body=text,
                body_html=markdown_to_html(text),
                state=UpdateState.PUBLISHED,
                published_at=at,
                published_by=actor,
                created_by=actor,
            )
            for component in hit if new_status else ():
                component.refresh_from_db()
                StatusUpdateComponent.objects.create(
                    status_update=update,
                    component=component,
                    new_status=new_status,
                    old_status=component.status,
                )
                component_status_set(
                    component=component,
                    status=new_status,
                    actor=actor,
                    status_update=update,
                    at=at,
                )
    done = Maintenance.objects.create(
        title="Database upgrade",
        body="We upgraded the database.",
        body_html=markdown_to_html("We upgraded the database."),
        status=MaintenanceStatus.COMPLETED,
        scheduled_for=now - timedelta(days=10),
        scheduled_until=now - timedelta(days=10) + timedelta(hours=2),
        started_at=now - timedelta(days=10),
        completed_at=now - timedelta(days=10) + timedelta(hours=2),
        created_by=actor,
    )
    done.components.set(components[6:8])
    upcoming = Maintenance.objects.create(
        title="Network maintenance",
        body="Short interruptions of the **API** are possible.",
        body_html=markdown_to_html("Short interruptions of the **API** are possible."),
        scheduled_for=now + timedelta(days=3),
        scheduled_until=now + timedelta(days=3, hours=2),
        created_by=actor,
    )
    upcoming.components.set(components[6:7])


# --- (a) throughput ------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS[unit]


def wrk_get(url: str, *, connections: int, duration: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format("non2xx %d\\n", summary.errors.status))\n'
            "end\n"
        )
    command = [
        "wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{duration}s",
        "--timeout", "10s", "--latency", "--script", script.name, url,
    ]  # fmt: skip
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


# --- (b) stampede --------------------------------------------------------------------------------


def stampede(base: str, concurrent: int, redis_client) -> tuple[int, dict[int, int], float]:
    """Expire the site, fire ``concurrent`` requests at once; (renders, statuses, seconds)."""
    from django.core.cache import cache

    from communications.public.site import FRESH_KEY

    # Warm: a fresh, complete copy in the cache first, as in production between changes.
    for path in PAGES.values():
        urllib.request.urlopen(base + path, timeout=30).read()
    time.sleep(0.5)
    barrier = threading.Barrier(concurrent)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    paths = [*PAGES.values(), "/status/api/v2/status.json", "/status/history.atom"]

    def one(i: int) -> None:
        barrier.wait()
        try:
            with urllib.request.urlopen(base + paths[i % len(paths)], timeout=60) as response:
                response.read()
                code = response.status
        except urllib.error.HTTPError as error:
            code = error.code
        except OSError:
            code = 0
        with lock:
            statuses[code] = statuses.get(code, 0) + 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrent)]
    before = int(redis_client.get(RENDER_COUNTER) or 0)
    cache.delete(FRESH_KEY)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    time.sleep(0.5)
    renders = int(redis_client.get(RENDER_COUNTER) or 0) - before
    return renders, statuses, elapsed


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
    import redis
    from django.core.management import call_command
    from django.db import connection

    from communications.public.site import site_render

    call_command("migrate", verbosity=0)
    seed_started = time.perf_counter()
    seed()
    print(f"seeded in {time.perf_counter() - seed_started:.1f} s")
    render_started = time.perf_counter()
    files = site_render()
    render_ms = (time.perf_counter() - render_started) * 1000
    connection.close()
    env["BENCH_STATUS_SHAPES"] = json.dumps(
        {name: [len(files[path].body), files[path].content_type] for name, path in FILES.items()}
    )
    clear_redis(args.redis_url)  # the render tasks the seeding queued (no worker here)
    redis_client = redis.Redis.from_url(args.redis_url)
    redis_client.delete(RENDER_COUNTER)

    base = f"http://127.0.0.1:{args.port}"
    logs = Path(env["VIGIL_VAR_DIR"])
    server = gunicorn(args.port, args.threads, env, logs / "gunicorn.log")
    second = None
    failed = False
    try:
        wait_until_up(base + CONSTANT_PATH + "summary")
        for name, path in PAGES.items():
            with urllib.request.urlopen(base + path) as response:
                size = len(response.read())
            with urllib.request.urlopen(base + CONSTANT_PATH + name) as response:
                assert len(response.read()) == size, f"{name}: constant view size differs"

        # (a) ------------------------------------------------------------------------------
        print("(a) throughput: status files from the cache vs a constant view, same sizes")
        targets = {}
        for name, path in PAGES.items():
            targets[name] = base + path
            targets[name + "-constant"] = base + CONSTANT_PATH + name
        for url in targets.values():
            wrk_get(url, connections=args.connections, duration=2)  # warm up
        results: dict[str, list[dict]] = {name: [] for name in targets}
        load_before_a = os.getloadavg()
        renders_before = int(redis_client.get(RENDER_COUNTER) or 0)
        for round_ in range(1, args.rounds + 1):
            for name, url in targets.items():
                result = wrk_get(url, connections=args.connections, duration=args.duration)
                results[name].append(result)
                print(
                    f"  round {round_}: {name:<16} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms"
                )
        steady_renders = int(redis_client.get(RENDER_COUNTER) or 0) - renders_before
        summary = {
            name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
            for name, runs in results.items()
        }
        load_after_a = os.getloadavg()

        # (b) ------------------------------------------------------------------------------
        print(f"(b) stampede: {args.concurrent} concurrent requests on a just-expired site")
        stampedes = []
        label = f"2 workers x {args.threads} thread{'s' if args.threads > 1 else ''}"
        stampedes.append((label, *stampede(base, args.concurrent, redis_client)))
        stop(server)
        second_port = args.port + 1
        second = gunicorn(second_port, args.stampede_threads, env, logs / "gunicorn2.log")
        second_base = f"http://127.0.0.1:{second_port}"
        wait_until_up(second_base + CONSTANT_PATH + "summary")
        label = f"2 workers x {args.stampede_threads} threads"
        stampedes.append((label, *stampede(second_base, args.concurrent, redis_client)))
    finally:
        stop(server)
        if second is not None:
            stop(second)
        clear_redis(args.redis_url)
        redis_client.delete(RENDER_COUNTER)

    print()
    print(
        f"gunicorn 2 workers x {args.threads} thread(s), PostgreSQL, Redis cache (wrk "
        f"{args.connections} connections, {args.rounds} x {args.duration} s, medians); "
        f"{len(files)} files, one render of the whole site {render_ms:.0f} ms:"
    )
    if args.local_copy_seconds > 0:
        print(
            f"  WHAT-IF: each process served its copies for {args.local_copy_seconds:g} s "
            "without the cache (not Vigil's behaviour)"
        )
    print(f"  {'endpoint':<40} {'bytes':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, path in PAGES.items():
        size = len(files[FILES[name]].body)
        for key, label in ((name, f"GET {path}"), (name + "-constant", "  constant view")):
            s = summary[key]
            print(f"  {label:<40} {size:>7} {s['rps']:>8.1f} {s['p50']:>8.2f} {s['p99']:>8.2f}")
    for name in PAGES:
        ratios = [
            status["rps"] / constant["rps"]
            for status, constant in zip(results[name], results[name + "-constant"], strict=True)
        ]
        ratio = statistics.median(ratios)
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(
            f"  {name} / constant: {ratio:.2f}, median of {len(ratios)} rounds "
            f"(from {min(ratios):.2f} to {max(ratios):.2f}; target >= {TARGET_RATIO}: {verdict})"
        )
        failed |= ratio < TARGET_RATIO
    print(f"  renders during (a): {steady_renders} (VIGIL_STATUS_FRESH_SECONDS apart at most)")
    print(
        f"  load average before (a): {' '.join(f'{v:.2f}' for v in load_before_a)}, "
        f"after: {' '.join(f'{v:.2f}' for v in load_after_a)}"
    )
    for label, renders, statuses, elapsed in stampedes:
        ok = statuses.get(200, 0)
        verdict = "met" if renders == 1 and ok == args.concurrent else "NOT met"
        print(
            f"  (b) {label}: {args.concurrent} requests on an expired site -> {renders} "
            f"render(s), {ok}/{args.concurrent} answered 200 in {elapsed:.2f} s "
            f"(target exactly 1 render, all 200: {verdict})"
        )
        failed |= verdict != "met"
    print(f"  load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
