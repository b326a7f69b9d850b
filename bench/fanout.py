#!/usr/bin/env python
"""Benchmark: the fan-out of one published status update to 10,000 email subscribers.

1. **Writing the mailing.** The time ``fanout_run`` takes to turn one published update into its
   10,000 messages — the recipients query, the suppression check, one render of the templates,
   each subscriber's signed links and headers, the ``Message`` rows and the outbox rows
   (``notification_enqueue_many``), in batches of 500, one transaction each — against a plain
   ``Notification.objects.bulk_create`` of the same 10,000 outbox rows (the same subjects,
   bodies, HTML and headers, new keys) in the same run. Median of ``--repeat`` runs each.
   Target: within 3x.
2. **Delivering it** (with ``--deliver``; PostgreSQL and Redis): one real Celery worker
   (prefork, concurrency 1) sends the last run's 10,000 emails through Django's SMTP backend to
   a local SMTP server (aiosmtpd), timed from the first message received to the last, against
   the outbox bench's no-op task on the same worker and broker (``bench/escalation_outbox.py``).

    python bench/fanout.py --database-url sqlite:////tmp/vigil-bench-fanout.sqlite3
    python bench/fanout.py --database-url postgres://postgres@127.0.0.1:5432/vigil_bench_fanout \\
                           --broker-url redis://127.0.0.1:6379/0 --deliver

The database is dropped and recreated (SQLite: the file is deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.escalation_outbox import (  # noqa: E402
    NOOP_KEY,
    clear_broker,
    noop_task,
    recreate_database,
    start_worker,
    stop_worker,
    wait,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "sqlite:////tmp/vigil-bench-fanout.sqlite3"),
        help="SQLite file or PostgreSQL database to (re)create; it is dropped first.",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("BENCH_BROKER_URL", ""),
        help="Redis database for --deliver (broker and cache); empty: an in-memory broker.",
    )
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--deliver", action="store_true", help="also time delivery (PG + Redis)")
    parser.add_argument("--noop", type=int, default=2000, help="no-op tasks for the baseline")
    return parser.parse_args()


class SmtpSink:
    """A local SMTP server accepting everything and noting when each message arrived."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.times: list[float] = []
        self._lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.times.append(time.time())
        return "250 OK"

    def stop(self) -> None:
        self.controller.stop()
        asyncio.set_event_loop(asyncio.new_event_loop())


def configure(args: argparse.Namespace, sink: SmtpSink) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": args.database_url,
        "CELERY_BROKER_URL": args.broker_url or "memory://",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "VIGIL_VAR_DIR": tempfile.mkdtemp(prefix="vigil-bench-fanout-"),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_BASE_URL": "https://vigil.example.com",
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "EMAIL_USE_TLS": "0",
        "DJANGO_DEFAULT_FROM_EMAIL": "Example Co Status <status@example.com>",
        "PYTHONPATH": str(ROOT),
    }
    if args.broker_url:
        env["REDIS_URL"] = args.broker_url
    os.environ.update(env)
    return dict(os.environ)


def recreate(database_url: str) -> None:
    url = urlparse(database_url)
    if url.scheme == "sqlite":
        path = Path(url.path)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        recreate_database(database_url)


def seed(count: int):
    from communications.models import StatusPageSettings, Subscriber, SubscriberKind
    from communications.services.components import component_create
    from incidents.models import Service

    StatusPageSettings.objects.update_or_create(
        pk=1, defaults={"name": "Example Co Status", "url": "https://status.example.com"}
    )
    service = Service.objects.create(
        slug="checkout", name="Checkout (internal)", public_name="Checkout"
    )
    component_create(service=service, actor=None)
    Subscriber.objects.bulk_create(
        (
            Subscriber(kind=SubscriberKind.EMAIL, email=f"s{n:05d}@example.org", state="active")
            for n in range(count)
        ),
        batch_size=1000,
    )
    return service


def published_update(service, run: int):
    from django.db import transaction

    from communications.models import StatusUpdate, StatusUpdateComponent
    from communications.services.updates import status_update_publish
    from incidents.models import Source
    from incidents.services import incident_create

    incident = incident_create(
        actor=None,
        source=Source.SYSTEM,
        title=f"Bench incident {run}",
        severity=3,
        impact="medium",
        urgency="medium",
        summary="Bench",
        services=[service],
    )
    update = StatusUpdate.objects.create(
        incident=incident,
        public_title="Payments failing at checkout",
        public_status="investigating",
        body="Some customers **cannot pay**. We are investigating.\n\n- retry later\n- or not",
    )
    StatusUpdateComponent.objects.create(
        status_update=update, component=service.component, new_status="major_outage"
    )
    with transaction.atomic():
        status_update_publish(status_update=update, actor=_publisher(), source=Source.SYSTEM)
    return update


_user = None


def _publisher():
    global _user
    if _user is None:
        from django.contrib.auth import get_user_model

        _user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    return _user


def time_fanout(update) -> float:
    from communications.models import Fanout
    from communications.services.fanout import fanout_run

    fanout = Fanout.objects.get(status_update=update)
    started = time.perf_counter()
    result = fanout_run(fanout_id=fanout.pk)
    elapsed = time.perf_counter() - started
    if result.result != "done":
        sys.exit(f"the fan-out did not finish: {result}")
    return elapsed


def time_bulk_create(run: int) -> float:
    from django.db import transaction

    from escalation.models import Notification

    # Only this run's mailing is in the outbox (the loop deletes the previous ones).
    source = list(Notification.objects.filter(template="status_update_email"))
    rows = [
        Notification(
            incident=None,
            channel=row.channel,
            recipient=row.recipient,
            subject=row.subject,
            body=row.body,
            template=row.template,
            reason=row.reason,
            idempotency_key=f"baseline:{run}:{n}",
            context=row.context,
            next_attempt_at=row.next_attempt_at,
        )
        for n, row in enumerate(source)
    ]
    started = time.perf_counter()
    with transaction.atomic():
        Notification.objects.bulk_create(rows, batch_size=500)
    elapsed = time.perf_counter() - started
    Notification.objects.filter(idempotency_key__startswith=f"baseline:{run}:").delete()
    return elapsed


def main() -> None:
    args = parse_args()
    if args.deliver and not (args.broker_url and args.database_url.startswith("postgres")):
        sys.exit("--deliver needs PostgreSQL (--database-url) and Redis (--broker-url)")
    sink = SmtpSink()
    env = configure(args, sink)
    recreate(args.database_url)
    if args.broker_url:
        clear_broker(args.broker_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    service = seed(args.subscribers)
    print(
        f"Fan-out of one update to {args.subscribers:,} subscribers on {connection.vendor} "
        f"(load average {os.getloadavg()[0]:.2f})"
    )

    from escalation.models import Notification

    fanout_times, bulk_times = [], []
    update = None
    for run in range(args.repeat + 1):  # the first run warms up and is not counted
        if args.broker_url:
            clear_broker(args.broker_url)
        Notification.objects.filter(template="status_update_email").delete()
        update = published_update(service, run)
        spent = time_fanout(update)
        baseline = time_bulk_create(run)
        if run:
            fanout_times.append(spent)
            bulk_times.append(baseline)
    fanout_s, bulk_s = statistics.median(fanout_times), statistics.median(bulk_times)
    rate = args.subscribers / fanout_s
    print(f"  fan-out (Message + outbox rows):      {fanout_s:7.2f} s  ({rate:.0f} messages/s)")
    print(f"  bulk_create of the same outbox rows:  {bulk_s:7.2f} s")
    print(f"  ratio fan-out / bulk_create:          {fanout_s / bulk_s:7.2f}  (target <= 3)")

    if args.deliver:
        deliver(args, env, sink)
    sink.stop()


def deliver(args: argparse.Namespace, env: dict[str, str], sink: SmtpSink) -> None:
    import redis

    from escalation.models import Notification

    log = Path(env["VIGIL_VAR_DIR"]) / "worker.log"
    pending = Notification.objects.filter(template="status_update_email", status="pending")
    count = pending.count()
    sink.times.clear()
    worker = start_worker(env, log)
    try:
        wait(
            lambda: (
                not Notification.objects.filter(
                    template="status_update_email", status__in=["pending", "sending"]
                ).exists()
            ),
            timeout=1800,
            what="the deliveries",
            process=worker,
            log=log,
        )
    finally:
        stop_worker(worker)
    times = sorted(sink.times)
    if len(times) < count:
        sys.exit(f"the SMTP sink received {len(times)} messages for {count}")
    delivered = (len(times) - 1) / (times[-1] - times[0])

    broker = redis.Redis.from_url(args.broker_url)
    clear_broker(args.broker_url)
    for index in range(args.noop):
        noop_task.apply_async(args=[index], queue="vigil")
    worker = start_worker(env, log)
    try:
        wait(
            lambda: int(broker.get(f"{NOOP_KEY}:count") or 0) == args.noop,
            timeout=600,
            what="the no-op tasks",
            process=worker,
            log=log,
        )
    finally:
        stop_worker(worker)
    noop = (args.noop - 1) / (
        float(broker.get(f"{NOOP_KEY}:last")) - float(broker.get(f"{NOOP_KEY}:first"))
    )
    clear_broker(args.broker_url)
    print(f"  delivered to a local SMTP sink:       {delivered:7.1f} messages/s ({count:,})")
    print(f"  outbox no-op task:                    {noop:7.1f} tasks/s")
    print(f"  ratio delivered / no-op:              {delivered / noop:7.2f}")
    print(f"  (load average after: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
