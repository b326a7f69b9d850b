"""The replay cache of the signed webhooks: each signed timestamp is accepted once.

A verified signature over a timestamp (``verify.Signed``) is written to
:class:`~incidents.models.WebhookSignature`, UNIQUE (integration, signature), in the transaction
that stores the delivery. The same request again, from any web process, finds the row and is
refused; a request refused for another reason writes no row, so it does not use up its
signature. Rows are kept while their timestamp is inside the window (outside it the timestamp
check refuses the request anyway) and deleted on insert once they are out of it.

The database rather than the cache holds them: a replay cache that forgets everything when Redis
restarts, or lets everything through when Redis is down, protects nothing when it matters.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection

from ..models import WebhookSignature

# Old rows deleted per insert at most: inserts outnumber expiries, so this keeps up, and a
# request never waits on a large delete.
PRUNE_BATCH = 100


def signature_claim(
    *, integration_id: int, signature: str, signed_at: int, max_age: float, now: float
) -> bool:
    """Remember ``signature`` (a verified HMAC over the Unix time ``signed_at``) for the
    integration; returns False when it was already remembered: the request is a replay. Call it
    inside the transaction that accepts the delivery. Deletes up to ``PRUNE_BATCH`` rows whose
    timestamp is more than ``max_age`` seconds before ``now``.

    Two transactions inserting the same signature at once: on PostgreSQL the second waits for
    the first and then finds the row (``ON CONFLICT DO NOTHING``); SQLite runs one writer at a
    time. Rows being pruned by another request are skipped (``SKIP LOCKED``), not waited for.
    """
    ops = connection.ops
    table = WebhookSignature._meta.db_table
    cutoff = ops.adapt_datetimefield_value(datetime.fromtimestamp(now - max_age, UTC))
    signed = ops.adapt_datetimefield_value(datetime.fromtimestamp(signed_at, UTC))
    skip_locked = connection.features.has_select_for_update_skip_locked
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE signed_at < %s "
            f"ORDER BY signed_at LIMIT %s{lock})",
            [cutoff, PRUNE_BATCH],
        )
        cursor.execute(
            f"INSERT INTO {table} (integration_id, signature, signed_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (integration_id, signature) DO NOTHING RETURNING id",
            [integration_id, signature, signed],
        )
        return cursor.fetchone() is not None
