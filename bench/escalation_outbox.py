#!/usr/bin/env python
"""Benchmark: outbox throughput. Notifications delivered per second by one real Celery worker to
a local HTTP sink, against the same worker running a no-op task, on PostgreSQL + Redis.

Every run queues all its tasks first, then starts the worker (prefork, concurrency 1 unless
``--concurrency`` says otherwise, prefetch 1, the production settings) and times from the first
completed task to the last, so worker start-up is not counted. Two delivery runs:

- one task per row, the path of a retry, a re-queued row or a single message
  (``escalation.notification_send``): claim the row (one UPDATE … RETURNING, committed), sign
  and POST the webhook, record ``sent`` (one UPDATE matching the claim);
- batch tasks of ``--batch`` rows, as the pages of one incident are published
  (``notification_enqueue_many`` → ``escalation.notification_send_batch``): per chunk of
  ``VIGIL_NOTIFY_SEND_CHUNK`` rows one claim, the POSTs, one record.

The no-op task only stamps its completion time in Redis (one pipelined round trip), which is
the floor of what any task costs on this worker and broker. A POST-only task makes the
webhook channel's POST of a page-sized body and nothing else (no row claimed or recorded): the
ceiling of any one-task-per-row HTTP delivery, whatever its database work. Each of
``--rounds`` rounds runs the no-op, the three kinds, and the no-op again, and takes each kind's
ratio against the mean of the two no-op runs around it (the machine's speed drifts within
minutes), then a mixed run: blocks of ``--block`` no-op tasks and of one-row deliveries
alternating in one queue, each delivery block against the no-op blocks just before and after
it. Prints every round, then the medians and ranges of the rates and ratios.

The sink answers from this process, on the CPUs the worker uses, and every one-row delivery
waits for it: by default a lean server (one read, one write per request), since Python's
``http.server`` puts about 0.15 ms of the bench's own work into each delivery measured;
``--sink http.server`` for the sink of the runs before 7 December 2026, 18:00 UTC.

    python bench/escalation_outbox.py [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_outbox]
                                      [--broker-url redis://127.0.0.1:6379/0] [--count 2000]
                                      [--batch 9] [--rounds 3] [--block 200]
                                      [--sink lean|http.server] [--concurrency 1]

The database is dropped and recreated. In the Redis database given, Vigil's queues and the
bench's own keys are cleared before each run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from celery import shared_task

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vigil_bench_outbox"
NOOP_KEY = "vigil-bench:noop"
# When each no-op task ran, in the order they ran.
NOOP_TIMES = f"{NOOP_KEY}:times"


_redis_clients: dict = {}


@shared_task(name="bench.noop", ignore_result=True, acks_late=True)
def noop_task(index: int) -> None:
    """Does nothing but note when it ran (so the bench can time the run)."""
    import redis

    client = _redis_clients.get(os.getpid())
    if client is None:
        client = _redis_clients[os.getpid()] = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    pipe = client.pipeline(transaction=False)
    pipe.rpush(NOOP_TIMES, time.time())
    pipe.incr(f"{NOOP_KEY}:count")
    pipe.execute()


@shared_task(name="bench.post_only", ignore_result=True, acks_late=True)
def post_only_task(index: int) -> None:
    """A delivery's HTTP part alone: the webhook channel's POST (its session, headers and
    error handling) of a body like a page's, and nothing else: no row claimed or recorded."""
    from escalation.channels.base import post

    body = (
        b'{"event":"notification","id":%d,"subject":"Sev 1: checkout down",'
        b'"body":"Checkout is down."}' % index
    )
    post(
        service="Outbound webhook",
        url=os.environ["VIGIL_WEBHOOK_URL"],
        data=body,
        headers={"Content-Type": "application/json", "Idempotency-Key": f"post:{index}"},
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL database to (re)create for the bench; it is dropped first.",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("BENCH_BROKER_URL")
        or os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
        help="Redis database used as broker and cache.",
    )
    parser.add_argument("--count", type=int, default=2000, help="tasks per run")
    parser.add_argument("--warmup", type=int, default=50, help="untimed deliveries first")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every kind, each between two no-op runs (medians are printed)",
    )
    parser.add_argument(
        "--block",
        type=int,
        default=200,
        help="tasks per block in the mixed run (no-op and one-row blocks alternating)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=9,
        help="rows per batch task in the batched run (9: the pages of one Sev 1 incident)",
    )
    parser.add_argument(
        "--sink",
        choices=("lean", "http.server"),
        default="lean",
        help="the HTTP server the webhooks go to (bench/http_sink.py)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="the worker's pool processes (1: the urgent worker of the Procfile; 2: the other)",
    )
    return parser.parse_args()


def configure(args: argparse.Namespace, sink_url: str) -> dict[str, str]:
    """Production settings (DEBUG off) on the bench database and broker, for this process and
    the worker alike."""
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": args.database_url,
        "CELERY_BROKER_URL": args.broker_url,
        "REDIS_URL": args.broker_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "VIGIL_VAR_DIR": tempfile.mkdtemp(prefix="vigil-bench-outbox-"),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_CHANNEL_WEBHOOK": "escalation.channels.webhook.WebhookBackend",
        "VIGIL_WEBHOOK_URL": f"{sink_url}/hook",
        "VIGIL_WEBHOOK_SECRET": secrets.token_hex(16),
        "PYTHONPATH": str(ROOT),
        "BENCH_CONCURRENCY": str(args.concurrency),
    }
    os.environ.update(env)
    return dict(os.environ)


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


def clear_broker(broker_url: str) -> None:
    import redis

    client = redis.Redis.from_url(broker_url)
    for pattern in (
        "vigil",
        "vigil.urgent",
        "vigil.sweeps",
        "vigil\x06*",
        "unacked*",
        f"{NOOP_KEY}:*",
    ):
        keys = list(client.scan_iter(match=pattern))
        if keys:
            client.delete(*keys)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    concurrency = env.get("BENCH_CONCURRENCY", "1")
    # The worker holds its own copy of the file descriptor; ours is closed on return.
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--queues",
                "vigil.urgent,vigil,vigil.sweeps,vigil.bulk",
                "--pool",
                "prefork",
                "--concurrency",
                concurrency,
                "--without-gossip",
                "--without-mingle",
                "--include",
                "bench.escalation_outbox",
                "--loglevel",
                "WARNING",
                "--hostname",
                f"bench-{secrets.token_hex(4)}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait(predicate, *, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            sys.exit(f"the worker exited while waiting for {what}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def run_worker_until(
    env: dict[str, str], log: Path, predicate, *, what: str, timeout: float
) -> None:
    """Start a fresh worker on what is queued, wait until ``predicate`` holds, stop it."""
    worker = start_worker(env, log)
    try:
        wait(predicate, timeout=timeout, what=what, process=worker, log=log)
    finally:
        stop_worker(worker)


# Every benchmark notification: a page to the webhook sink (its key differs per row).
PAGE = {
    "channel": "webhook",
    "recipient": "bench",
    "subject": "Sev 1: checkout down",
    "body": "Checkout is down. Acknowledge: https://vigil.example.org/ack/x/",
    "template": "page",
    "reason": "Outbox benchmark",
}


def rate(times: list[float]) -> float:
    """Tasks per second from the sorted times of a run's tasks, first to last."""
    return (len(times) - 1) / (times[-1] - times[0])


def enqueue(count: int, prefix: str) -> None:
    from django.db import transaction

    from escalation.services import notification_enqueue

    # One transaction: the rows commit together, then their tasks are published.
    with transaction.atomic():
        for index in range(count):
            notification_enqueue(incident=None, idempotency_key=f"{prefix}:{index}", **PAGE)


def enqueue_batches(count: int, prefix: str, size: int) -> None:
    """As pages are written: ``size`` rows per call of ``notification_enqueue_many`` (one
    incident's pages), each call one batch task on the urgent queue after commit."""
    from django.db import transaction

    from escalation.outbox import OutboxMessage, notification_enqueue_many
    from incidents.events import urgent_queue

    with transaction.atomic():
        for start in range(0, count, size):
            notification_enqueue_many(
                [
                    OutboxMessage(idempotency_key=f"{prefix}:{index}", **PAGE)
                    for index in range(start, min(start + size, count))
                ],
                queue=urgent_queue(),
            )


def deliver(args, env, log, sink, prefix: str, write) -> float:
    """Rows committed and tasks queued first, then the worker starts; deliveries per second
    from the sink's first POST to its last."""
    sink.times.clear()
    write()
    run_worker_until(
        env,
        log,
        # The sink's count first: counting the rows sent scans the table, work of the bench's
        # own on the database it measures, so it is asked only once every POST has arrived.
        lambda: len(sink.times) >= args.count and sent_count(prefix) == args.count,
        what=f"the deliveries ({prefix})",
        timeout=600,
    )
    times = sorted(sink.times)
    if len(times) != args.count:
        sys.exit(f"the sink received {len(times)} deliveries for {args.count} notifications")
    return rate(times)


def sent_count(prefix: str) -> int:
    from escalation.models import Notification

    return Notification.objects.filter(
        idempotency_key__startswith=f"{prefix}:", status="sent"
    ).count()


def main() -> None:
    args = parse_args()
    from bench.http_sink import Sink

    sink = Sink(args.sink)
    env = configure(args, sink.url)
    recreate_database(args.database_url)
    clear_broker(args.broker_url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    from incidents.events import default_queue

    broker = redis.Redis.from_url(args.broker_url)
    log = Path(env["VIGIL_VAR_DIR"]) / "worker.log"

    print(
        f"Outbox throughput, one worker (prefork, concurrency {args.concurrency}), "
        f"{args.count} tasks per run"
    )

    # Warm-up: the worker's first tasks pay for imports and connections.
    enqueue(args.warmup, "warmup")
    run_worker_until(
        env,
        log,
        lambda: sent_count("warmup") == args.warmup,
        what="the warm-up deliveries",
        timeout=120,
    )

    def post_only() -> float:
        # The HTTP part of a delivery alone, one task each: what any one-task-per-row delivery
        # costs at least, whatever its database work.
        sink.times.clear()
        for index in range(args.count):
            post_only_task.apply_async(args=[index], queue="vigil")
        run_worker_until(
            env,
            log,
            lambda: len(sink.times) >= args.count,
            what="the POST-only tasks",
            timeout=600,
        )
        times = sorted(sink.times)
        return rate(times)

    def noop() -> float:
        # No-op tasks on the same worker and broker.
        clear_broker(args.broker_url)
        for index in range(args.count):
            noop_task.apply_async(args=[index], queue="vigil")
        run_worker_until(
            env,
            log,
            lambda: int(broker.get(f"{NOOP_KEY}:count") or 0) == args.count,
            what="the no-op tasks",
            timeout=600,
        )
        times = noop_times()
        clear_broker(args.broker_url)
        return rate(times)

    def noop_times() -> list[float]:
        return sorted(float(t) for t in broker.lrange(NOOP_TIMES, 0, -1))

    def mixed(prefix: str) -> list[float]:
        # Blocks of no-op tasks and of one-row deliveries, alternating in one queue and run by
        # one worker: each block of deliveries is compared with the no-op blocks just before
        # and after it, a second apart, where the separate runs are a minute apart (the
        # machine's speed changes within a minute: the CPU time of the same delivery code
        # doubled within one 8-second run).
        size = args.block
        blocks = max(2, args.count // size)
        clear_broker(args.broker_url)
        sink.times.clear()
        queue = default_queue()
        for block in range(blocks):
            for index in range(size):
                noop_task.apply_async(args=[index], queue=queue)
            # Committed at once: these rows' send tasks follow on the same (default) queue.
            enqueue(size, f"{prefix}-{block}")
        for index in range(size):
            noop_task.apply_async(args=[index], queue=queue)
        run_worker_until(
            env,
            log,
            lambda: (
                len(sink.times) >= blocks * size
                and int(broker.get(f"{NOOP_KEY}:count") or 0) == (blocks + 1) * size
            ),
            what="the mixed run",
            timeout=600,
        )
        noops, posts = noop_times(), sorted(sink.times)
        clear_broker(args.broker_url)
        if not (noops[size - 1] < posts[0] and posts[-1] < noops[-size]):
            sys.exit("the mixed run's tasks did not run in the order they were queued")
        found = []
        # The first pair is the worker's warm-up (its first connection, statements prepared).
        for block in range(1, blocks):
            before = rate(noops[block * size : (block + 1) * size])
            after = rate(noops[(block + 1) * size : (block + 2) * size])
            found.append(rate(posts[block * size : (block + 1) * size]) / ((before + after) / 2))
        return found

    # Each round measures every kind one after the other, the no-op first and last, and a
    # kind's ratio is taken against the mean of the two no-op runs around it: the machine's
    # speed drifts within minutes, more than the differences measured.
    kinds = ("per row", "batched", "POST-only")
    rates: dict[str, list[float]] = {kind: [] for kind in (*kinds, "no-op")}
    ratios: dict[str, list[float]] = {kind: [] for kind in kinds}
    mixed_ratios: list[float] = []
    for round_ in range(1, args.rounds + 1):
        before = noop()
        measured = {
            # One task per row (a retry, a re-queue, a single message), then batch tasks.
            "per row": deliver(
                args,
                env,
                log,
                sink,
                f"bench{round_}",
                lambda r=round_: enqueue(args.count, f"bench{r}"),
            ),
            "batched": deliver(
                args,
                env,
                log,
                sink,
                f"batch{round_}",
                lambda r=round_: enqueue_batches(args.count, f"batch{r}", args.batch),
            ),
            "POST-only": post_only(),
        }
        after = noop()
        reference = (before + after) / 2
        rates["no-op"] += [before, after]
        print(
            f"  round {round_}: no-op {before:.1f} and {after:.1f} tasks/s; "
            + ", ".join(
                f"{kind} {value:.1f}/s ({value / reference:.2f})"
                for kind, value in measured.items()
            )
            + f" (load {os.getloadavg()[0]:.2f})"
        )
        for kind, value in measured.items():
            rates[kind].append(value)
            ratios[kind].append(value / reference)
        found = mixed(f"mixed{round_}")
        mixed_ratios.extend(found)
        print(
            f"  round {round_}, mixed in blocks of {args.block}: one task per row / the no-op "
            f"blocks around it {statistics.median(found):.2f} [{min(found):.2f}–"
            f"{max(found):.2f}] over {len(found)} blocks (load {os.getloadavg()[0]:.2f})"
        )

    def median(values: list[float]) -> float:
        return statistics.median(values)

    def spread(values: list[float], digits: int) -> str:
        return f"{min(values):.{digits}f}–{max(values):.{digits}f}"

    noop_rate = median(rates["no-op"])
    labels = {
        "per row": "one task per row, to a local HTTP sink:",
        "batched": f"batch tasks of {args.batch} rows (one incident's pages):",
        "POST-only": "POST-only task (no database):",
    }
    print(f"Medians of {args.rounds} rounds (ranges in brackets):")
    for kind in kinds:
        unit = "tasks/s" if kind == "POST-only" else "notifications/s"
        print(f"  {labels[kind]:<50}{median(rates[kind]):8.1f} {unit} [{spread(rates[kind], 1)}]")
    print(f"  {'no-op task:':<50}{noop_rate:8.1f} tasks/s [{spread(rates['no-op'], 1)}]")
    for kind, label in (
        ("per row", "ratio one task per row / no-op:"),
        ("batched", "ratio batched / no-op:"),
        ("POST-only", "ratio POST-only / no-op (one task per row's ceiling):"),
    ):
        print(f"  {label:<50}{median(ratios[kind]):8.2f} [{spread(ratios[kind], 2)}]")
    label = f"ratio one task per row / no-op, mixed ({len(mixed_ratios)} blocks):"
    print(f"  {label:<50}{median(mixed_ratios):8.2f} [{spread(mixed_ratios, 2)}]")
    delivered_rate, batched_rate, post_rate = (median(rates[kind]) for kind in kinds)
    print(
        f"  cost of a delivery over a no-op: {1000 / delivered_rate - 1000 / noop_rate:.2f} ms "
        f"(one task per row), {1000 / batched_rate - 1000 / noop_rate:.2f} ms (batched); "
        f"of a POST alone: {1000 / post_rate - 1000 / noop_rate:.2f} ms"
    )


if __name__ == "__main__":
    main()
