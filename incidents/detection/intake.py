"""Accepting deliveries: one row per accepted POST, its processing queued after commit, and the
sweep that re-queues what a lost task left behind.

The request only stores the raw body (one INSERT) and, after commit, makes sure drain tasks
will look at it, so a sender is answered in milliseconds whatever the processing costs
(opening an incident pages people). The row, not the broker message, is the record: a task
lost with its worker, or a broker that refused the message, loses nothing, because the sweep
finds the pending row and queues it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from .. import group_commit
from ..group_commit import GroupCommit
from ..models import DeliveryStatus, WebhookDelivery
from ..queue import WorkQueue

logger = logging.getLogger(__name__)

# The deliveries accepted by the threads of one web process on SQLite, written together.
ACCEPTS = GroupCommit()

DEFAULT_REQUEUE_AFTER = 60.0
REQUEUE_BATCH = 500
KICK_KEY = "vigil:alert-deliveries:kick"
KICK_TTL = 10
# Drain tasks queued per kick: how many worker processes share a stream of deliveries.
DEFAULT_DRAINS = 2
MAX_ATTEMPTS = 5

# Inbound deliveries are one of Vigil's work tables (``incidents.queue``). A delivery is
# processed in one transaction under its row lock (the lock is the lease); a failed attempt is
# retried with backoff by the sweep, up to MAX_ATTEMPTS.
INBOUND = WorkQueue(
    model=WebhookDelivery,
    pending=DeliveryStatus.PENDING,
    done=DeliveryStatus.PROCESSED,
    failed=DeliveryStatus.FAILED,
    max_attempts=MAX_ATTEMPTS,
    backoff_base=30.0,
    backoff_max=600.0,
    requeue_after=lambda: float(
        getattr(settings, "VIGIL_ALERT_REQUEUE_AFTER_SECONDS", DEFAULT_REQUEUE_AFTER)
    ),
    error_field="error",
)


def delivery_accept(
    *,
    integration_id: int,
    body: str,
    headers: dict[str, str],
    remote_addr: str | None,
    alert_count: int,
    dedup_key: str = "",
    group_hash: str = "",
) -> int:
    """Store a verified, valid delivery and queue its processing after commit; returns the
    delivery's id. Not idempotent: a sender's retry is a second delivery (its alerts are
    deduplicated when processed).

    One hand-written INSERT: this runs on every request of every sender, and the ORM's
    query building costs more CPU than the statement itself.
    """
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    json_slot = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    # On SQLite the INSERT runs in a transaction, which in the web server asks for the write
    # lock every half millisecond (config/sqlite) where a lone statement would sleep in SQLite's
    # backoff behind the workers, and shares it with the other requests of its process
    # accepting at the same moment. PostgreSQL needs no BEGIN/COMMIT round trips for it.
    sqlite = connection.vendor == "sqlite"
    sql = (
        f"INSERT INTO {WebhookDelivery._meta.db_table} (integration_id, received_at, body, "
        "headers, remote_addr, dedup_key, group_hash, alert_count, status, attempts, error, "
        f"next_attempt_at) VALUES (%s, %s, %s, {json_slot}, %s, %s, %s, %s, %s, 0, '', %s) "
        "RETURNING id"
    )
    params = [
        integration_id,
        now,
        body,
        json.dumps(headers),
        remote_addr,
        dedup_key,
        group_hash,
        alert_count,
        DeliveryStatus.PENDING,
        now,
    ]
    if sqlite and group_commit.ENABLED and not connection.in_atomic_block:
        # A web process on the embedded setup: with the other requests writing at this moment,
        # in one transaction (incidents/group_commit.py).
        delivery_id = ACCEPTS.fetchone(sql, params)[0]
        deliveries_kick()
        return delivery_id
    checked_later = _health_check_deferred()
    try:
        with (
            transaction.atomic(savepoint=False) if sqlite else contextlib.nullcontext(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
            delivery_id = cursor.fetchone()[0]
    except (OperationalError, InterfaceError):
        if not checked_later or connection.is_usable():
            raise
        # The kept connection had gone (a database restart): what the health check would
        # have found. Once more on a new one.
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            delivery_id = cursor.fetchone()[0]
    transaction.on_commit(deliveries_kick)
    return delivery_id


def _health_check_deferred() -> bool:
    """Skip Django's health check of a kept PostgreSQL connection (a ``SELECT 1`` round trip
    before the request's first statement, ``CONN_HEALTH_CHECKS``) for this one-statement
    request: the INSERT finds a dead connection as well, and is then sent once more on a new
    one (:func:`delivery_accept`). A round trip fewer on every delivery accepted. True when
    it was skipped."""
    if (
        connection.vendor != "postgresql"
        or connection.connection is None
        or connection.in_atomic_block
        or not connection.health_check_enabled
        or connection.health_check_done
    ):
        return False
    connection.health_check_done = True
    return True


class _KickFlag:
    """The "drains are queued" flag: ``SET NX EX`` / ``DEL`` on Redis when Vigil has one,
    through one client kept per process (Django's Redis cache builds a client per call,
    which costs more than the command), else through Django's cache (the embedded setup)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._url: str | None = None

    def _redis(self) -> Any:
        url = getattr(settings, "REDIS_URL", "")
        if not url:
            return None
        if self._client is None or self._url != url:
            import redis

            self._client, self._url = redis.Redis.from_url(url), url
        return self._client

    def set(self) -> bool:
        client = self._redis()
        if client is None:
            return bool(cache.add(KICK_KEY, 1, timeout=KICK_TTL))
        return bool(client.set(KICK_KEY, 1, nx=True, ex=KICK_TTL))

    def clear(self) -> None:
        client = self._redis()
        if client is None:
            cache.delete(KICK_KEY)
        else:
            client.delete(KICK_KEY)


kick_flag = _KickFlag()

# A process that saw the kick flag set skips looking again for this long (a request costs no
# Redis round trip then). Safe because a drain, before it ends, looks once more after
# processing.DRAIN_LINGER, which is longer: the drain that clears the flag after it was seen
# finds every delivery committed within this time (deliveries_kick).
KICK_MEMO_SECONDS = 0.02
_flag_seen_at = 0.0


def deliveries_kick() -> bool:
    """Make sure a drain will look at every delivery committed so far. Runs after the commit
    of each accepted delivery; returns whether drains were queued.

    The cache key ``KICK_KEY`` means "drains are queued and have not begun to look": a drain
    deletes it before it scans, so a delivery committed before the deletion is found by that
    scan, and one committed after it finds no key and queues new drains. During a stream of
    alerts a request therefore costs one ``SET NX`` rather than a broker message, and none at
    all within ``KICK_MEMO_SECONDS`` of the last one its process sent. The key
    expires after ``KICK_TTL`` seconds, so a lost drain holds nothing up for long, and the
    sweep picks up whatever is left pending.
    """
    from ..tasks import alert_deliveries_drain_task

    global _flag_seen_at
    now = time.monotonic()
    # The flag was set a moment ago: it is set or was cleared since by a drain that has not
    # ended, and that drain looks again after DRAIN_LINGER (> KICK_MEMO_SECONDS) from its last
    # empty look, which comes after this delivery's commit.
    if now - _flag_seen_at < KICK_MEMO_SECONDS:
        return False
    try:
        newly = kick_flag.set()
        _flag_seen_at = now
        if not newly:
            return False
    except Exception:
        logger.exception("The delivery kick key is unavailable; queueing drains anyway")
    try:
        for _ in range(max(1, int(getattr(settings, "VIGIL_ALERT_DRAINS", DEFAULT_DRAINS)))):
            alert_deliveries_drain_task.apply_async()
    except Exception:
        logger.exception("Could not queue delivery drains; the sweep will pick them up")
        _flag_seen_at = 0.0
        with contextlib.suppress(Exception):
            kick_flag.clear()
        return False
    # The drains will look at every pending delivery: the sweep leaves them to the drains.
    _mark_published(status=DeliveryStatus.PENDING, published_at__isnull=True)
    return True


def _mark_published(*ids: int, **filters: Any) -> None:
    try:
        INBOUND.mark_published(list(ids) if ids else None, **filters)
    except Exception:
        # The task is queued; an unmarked delivery only risks one duplicate task from the sweep.
        logger.exception("Could not mark webhook deliveries published")


def delivery_enqueue(*, delivery_id: int) -> bool:
    """Publish the processing task of one delivery (the sweep, the admin's retry). A broker
    failure is logged, not raised: the delivery is stored and the sweep will queue it
    again."""
    from ..tasks import alert_delivery_process_task

    try:
        alert_delivery_process_task.apply_async(args=[delivery_id])
    except Exception:
        logger.exception("Could not queue webhook delivery %s; the sweep will", delivery_id)
        return False
    _mark_published(delivery_id)
    return True


def deliveries_requeue(*, now: datetime | None = None, batch: int = REQUEUE_BATCH) -> int:
    """Queue again the deliveries still pending ``VIGIL_ALERT_REQUEUE_AFTER_SECONDS`` after
    their next attempt was due (their task was lost, or a failed attempt's backoff ran out),
    oldest first. Safe to run twice at once (``incidents.queue``): each is taken once, and a
    duplicate task finds the delivery held or processed and does nothing. Returns how many
    were queued."""
    with transaction.atomic():
        ids = INBOUND.requeue(now=now, batch=batch)
        for pk in ids:
            transaction.on_commit(lambda pk=pk: delivery_enqueue(delivery_id=pk))
    if ids:
        logger.info("Re-queued %s pending webhook deliveries", len(ids))
    return len(ids)


@transaction.atomic
def delivery_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Give a failed (or stuck) delivery a fresh set of attempts and queue it after commit
    (admin action, once the cause is fixed). A processed delivery is left alone: its alerts
    exist. Idempotent."""
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if locked.status == DeliveryStatus.PROCESSED:
        return locked
    if locked.status == DeliveryStatus.FAILED:
        INBOUND.retry_now(locked, fresh=True)
    else:
        # Stuck pending: try now with a fresh budget.
        locked.attempts = 0
        locked.next_attempt_at = timezone.now()
        locked.save(update_fields=["attempts", "next_attempt_at"])
    locked.error = ""
    locked.processed_at = None
    locked.save(update_fields=["error", "processed_at"])
    transaction.on_commit(lambda: delivery_enqueue(delivery_id=locked.pk))
    return locked
