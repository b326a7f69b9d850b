"""Processing a stored delivery: its alerts deduplicated, grouped and attached to incidents.

One delivery is processed in one transaction, which also marks it processed: it happens
completely, once, or not at all (a failed attempt is recorded and retried by the sweep).

Deduplication. At most one firing alert per (integration, fingerprint), enforced by the
partial unique constraint ``alert_firing_once``; a repeat is a single ``INSERT ... ON
CONFLICT DO UPDATE SET count = count + 1``, so concurrent identical deliveries count up one
row instead of racing to create several.

Grouping. The alerts of one group (the sender's group key, or the integration's grouping
labels) are processed under the row lock of their :class:`AlertGroup`, so concurrent
deliveries of one group open one incident between them. A new alert joins the group's
incident while it is active; otherwise it opens a new one. Groups are locked in key-hash
order, so two deliveries never wait on each other in a cycle. A drain processes the waiting
deliveries of one group together (see :func:`delivery_process`); a batch whose deliveries fall
in other groups than noted on receipt (the grouping rule changed meanwhile) may lock two groups
in another order than a concurrent drain, and a deadlock then rolls it back for a retry.

Routing and maintenance. Each alert is routed by its integration's routing rules (service,
default severity: :mod:`.routing`); a firing alert during a maintenance window of its
integration or routed service is recorded only (:mod:`.maintenance`). Both are read once per
delivery.

Order. Deliveries may be processed out of order (parallel workers, a retried task). Each
alert row remembers the receipt time of the latest delivery applied to it, so a firing
received before a resolve that was already applied is ignored (it is stale), and so is a
resolve received before a firing already applied.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from ..events.recording import kicks_collected
from ..models import (
    ACTIVE_STATUSES,
    AlertGroup,
    Incident,
    Integration,
    Service,
    WebhookDelivery,
)
from ..queue_statements import columns_sql, rows_from_db
from ..services.common import timeline_record_many
from .firing import Fire, Opening, alerts_fire, alerts_upsert_many, fire_prepare, openings_write
from .grouping import group_of, key_hash
from .heartbeat import heartbeat_alerts_take
from .intake import INBOUND
from .maintenance import windows_active
from .parsing import IncomingAlert, parse_delivery
from .resolution import alert_acknowledge, alert_resolve, incidents_auto_monitor
from .routing import routing_rules_for
from .rules import rules_active
from .state import DeliveryResult, Run

logger = logging.getLogger(__name__)


# How long one drain task processes deliveries before it queues its successor and ends: short,
# so a worker that also consumes the urgent queue takes a Sev 1 page between two drains
# instead of after a whole storm.
DRAIN_BUDGET = 0.5
# How long a drain that found nothing waits before it looks once more and ends: longer than
# intake.KICK_MEMO_SECONDS, the time a web process goes without setting the kick flag.
DRAIN_LINGER = 0.05


# --- the entry point -----------------------------------------------------------------------------


def delivery_process(*, delivery_id: int | None = None) -> DeliveryResult:
    """Process one pending delivery (the oldest fresh one when ``delivery_id`` is None), in
    one transaction that also marks it processed.

    Claims the delivery with ``FOR UPDATE SKIP LOCKED``: a delivery another worker holds, or
    one no longer pending, is skipped (a duplicate or stale task does nothing). A transient
    database error (deadlock, lost connection) rolls everything back and is re-raised for the
    task to retry. Any other error rolls the alerts back, records the attempt and its error
    on the delivery and leaves it pending for the sweep, up to ``MAX_ATTEMPTS``; then it is
    marked failed (shown in the admin). Idempotent.

    Batching. When the oldest fresh delivery's alerts all fell in one group on receipt
    (``group_hash``), the next fresh pending deliveries whose alerts also fell in one group
    each (of any group: in an alert storm each alert is a group of its own), that no other
    worker holds, up to ``VIGIL_ALERT_BATCH`` in all, are processed with it in the same
    transaction: one claim, one statement that locks all their groups, one that writes their
    firing alerts where no two of them share an alert or a group, a few that write the
    incidents they open, one INSERT of timeline entries, one commit and one task that follows
    the new incidents' events, instead of each of these per delivery. The batch is processed
    in the order of its groups' hashes (a group's deliveries in order of receipt), the order in
    which every drain locks groups, so two drains whose batches share a group wait instead of
    deadlocking (a delivery regrouped since receipt may still lock out of that order; a
    deadlock then rolls the batch back for a retry). Each delivery is processed exactly as it
    would be alone (its own receipt time, routing, rules and timeline). An error in one rolls
    the batch back; that delivery's attempt is recorded as above and the others, untouched,
    are taken again by the next claim.
    """
    # The delivery being processed when an error stops the batch.
    current: int | None = None
    try:
        with transaction.atomic(), kicks_collected():
            if delivery_id is None:
                batch = _claim_batch()
            else:
                batch = [d for d in [_claim(delivery_id)] if d is not None]
            if not batch:
                return DeliveryResult(outcome="skipped")
            head = batch[0]
            # What the batch's deliveries write together (the incidents they open, their
            # timeline entries): before a delivery of a group already processed in this batch
            # (it may read or write the same incident), and at the end.
            pending = _Pending()
            prepared = []
            for delivery in _lock_order(batch):
                current = delivery.pk
                prepared.append(_prepare(delivery, now=timezone.now()))
            current = None
            if len(prepared) > 1:
                pending.groups = _groups_lock(prepared)
                _alerts_upsert_together(prepared, pending.groups)
            seen: set[tuple[int, str]] = set()
            for prep in prepared:
                delivery = prep.delivery
                current = delivery.pk
                group = (delivery.integration_id, delivery.group_hash)
                if group in seen:
                    pending.write()
                seen.add(group)
                # No savepoint: processing is expected to succeed; when it does not,
                # everything written is rolled back with the claim, and the attempt of the
                # delivery that failed is recorded below.
                outcome = _process(prep, pending=pending)
                if delivery is head:
                    result = outcome  # what the head delivery did; the followers are counted
            pending.write()
            now = timezone.now()
            INBOUND.complete_locked_many(batch, processed_at=now)
            result.followers = len(batch) - 1
            return result
    except OperationalError:
        raise
    except Exception as exc:
        if current is None:
            raise
        logger.exception("Webhook delivery %s could not be processed", current)
        error = f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        delivery = _claim(current)
        if delivery is None:
            # Another worker took it meanwhile.
            return DeliveryResult(outcome="skipped")
        now = timezone.now()
        failure = INBOUND.fail_locked(delivery, error=error, now=now)
        if failure.outcome == "failed":
            delivery.processed_at = now
            delivery.save(update_fields=["processed_at"])
        return DeliveryResult(outcome="failed")


def _lock_order(batch: list[WebhookDelivery]) -> list[WebhookDelivery]:
    """The batch in the order its groups are locked: by the hash of each delivery's group
    noted on receipt (then integration, then receipt), the order every drain takes, so two
    drains whose batches share groups wait for each other instead of deadlocking; a group's
    deliveries stay in order of receipt."""
    return sorted(batch, key=lambda d: (d.group_hash, d.integration_id, d.received_at, d.pk))


@dataclass
class _Pending:
    """What a batch's deliveries write together: the incidents their alerts open (in a few
    INSERTs for all, ``openings_write``) and then their timeline entries (one INSERT). Written
    before a delivery of a group already processed in the batch (it reads the group's incident,
    and may write to it directly), and at the end."""

    entries: list[dict] = field(default_factory=list)
    openings: list[Opening] = field(default_factory=list)
    # The batch's groups, locked together (_groups_lock), by (integration id, key).
    groups: dict[tuple[int, str], AlertGroup] = field(default_factory=dict)

    def write(self) -> None:
        _pending_write(self.entries, self.openings)


def _pending_write(entries: list[dict], openings: list[Opening]) -> None:
    openings_write(openings)
    if entries:
        timeline_record_many(entries=entries)
        entries.clear()


def _claim(delivery_id: int) -> WebhookDelivery | None:
    claim = WebhookDelivery.objects.select_related("integration", "integration__service")
    return INBOUND.claim_locked(claim.filter(pk=delivery_id), now=timezone.now())


DEFAULT_BATCH = 25


def _claim_batch() -> list[WebhookDelivery]:
    """The oldest fresh pending delivery no other transaction holds (the head) and, when its
    alerts fell in one group on receipt, the next fresh pending deliveries no other
    transaction holds whose alerts also fell in one group each (of any group and any
    integration: a storm of new alerts is many groups), up to ``VIGIL_ALERT_BATCH`` in all, in
    order of receipt, locked, with their integration and its service: one statement, built once
    (:func:`_claim_batch_sql`), the head found by a ``SKIP LOCKED`` common table expression
    (index ``delivery_pending``). A delivery whose alerts fell in several groups is processed
    alone."""
    limit = max(1, int(getattr(settings, "VIGIL_ALERT_BATCH", DEFAULT_BATCH)))
    pending = INBOUND.pending
    with connection.cursor() as cursor:
        cursor.execute(_claim_batch_sql(), [pending, pending, limit])
        rows = cursor.fetchall()
    claimed = []
    for values in rows:
        delivery, integration, service = rows_from_db(values, WebhookDelivery, Integration, Service)
        integration.service = service
        delivery.integration = integration
        claimed.append(delivery)
    return claimed


@cache
def _claim_batch_sql() -> str:
    """The statement of :func:`_claim_batch` for this database: parameters the pending status
    (twice) and the batch's size. Fresh deliveries only (no attempt yet): one that failed
    waits for the sweep's retry. On SQLite, where a writing transaction holds the whole
    database, without the row locks."""
    q = connection.ops.quote_name
    lock = connection.vendor == "postgresql"
    table = q(WebhookDelivery._meta.db_table)
    col = {
        name: q(WebhookDelivery._meta.get_field(name).column)
        for name in ("status", "attempts", "received_at", "group_hash", "integration")
    }
    pk = q(WebhookDelivery._meta.pk.column)

    def fresh(alias: str) -> str:
        return f"{alias}.{col['status']} = %s AND {alias}.{col['attempts']} = 0"

    return (
        f"WITH head AS (SELECT h.{pk}, h.{col['integration']}, h.{col['group_hash']} "
        f"FROM {table} h WHERE {fresh('h')} "
        f"ORDER BY h.{col['received_at']}, h.{pk} LIMIT 1"
        f"{' FOR UPDATE SKIP LOCKED' if lock else ''}) "
        f"SELECT {columns_sql(WebhookDelivery, 'd')}, {columns_sql(Integration, 'i')}, "
        f"{columns_sql(Service, 's')} "
        f"FROM {table} d "
        f"INNER JOIN {q(Integration._meta.db_table)} i "
        f"ON i.{q(Integration._meta.pk.column)} = d.{col['integration']} "
        f"LEFT OUTER JOIN {q(Service._meta.db_table)} s "
        f"ON s.{q(Service._meta.pk.column)} = i.{q(Integration._meta.get_field('service').column)} "
        f"WHERE {fresh('d')} AND (d.{pk} = (SELECT {pk} FROM head) OR "
        f"(d.{col['group_hash']} <> '' AND (SELECT {col['group_hash']} FROM head) <> '')) "
        f"ORDER BY d.{col['received_at']}, d.{pk} LIMIT %s"
        f"{' FOR UPDATE OF d SKIP LOCKED' if lock else ''}"
    )


def deliveries_drain(*, budget_seconds: float | None = None) -> int:
    """Process fresh pending deliveries, oldest first, one transaction each, until none is
    left to claim or ``budget_seconds`` (``DRAIN_BUDGET``) have passed (then drains are
    queued again). Several
    drains run side by side, each claiming the next delivery no other holds. Returns how
    many it processed."""
    from .intake import deliveries_kick, kick_flag

    # Before looking: a delivery committed from now on queues drains of its own.
    try:
        kick_flag.clear()
    except Exception:
        logger.exception("The delivery kick key is unavailable")
    deadline = time.monotonic() + (DRAIN_BUDGET if budget_seconds is None else budget_seconds)
    done = 0
    lingered = False
    while True:
        if time.monotonic() > deadline:
            deliveries_kick()
            break
        result = delivery_process()
        if result.outcome == "skipped":
            if lingered:
                break
            # Once more after a moment: a request that saw the kick flag set within
            # intake.KICK_MEMO_SECONDS queued no drain, and counts on this look.
            lingered = True
            time.sleep(DRAIN_LINGER)
            continue
        lingered = False
        done += 1 + result.followers
    return done


@dataclass
class _Prepared:
    """A claimed delivery read: its alerts by group, and what processing it carries along."""

    delivery: WebhookDelivery
    run: Run
    groups: dict[str, tuple[str, list[IncomingAlert]]]
    # The rows of a group's firing alerts, written with those of other deliveries.
    upserted: dict[str, tuple[Fire, list[tuple]]] = field(default_factory=dict)


def _prepare(delivery: WebhookDelivery, *, now: datetime) -> _Prepared:
    """Read a claimed delivery: its alerts, grouped, with the rules its processing applies."""
    integration = delivery.integration
    parsed = parse_delivery(
        integration.kind, json.loads(delivery.body), dedup_key=delivery.dedup_key
    )
    # The always-firing heartbeat alert (Watchdog) is a signal, never an alert or incident.
    parsed.alerts = heartbeat_alerts_take(
        integration=integration, alerts=parsed.alerts, received=delivery.received_at
    )
    routing = routing_rules_for(integration=integration)
    run = Run(
        integration=integration,
        received=delivery.received_at,
        now=now,
        rules=rules_active(),
        result=DeliveryResult(outcome="processed"),
        routing=routing,
        windows=windows_active(
            integration=integration,
            service_ids=[integration.service_id, *(r.service_id for r in routing)],
            at=delivery.received_at,
        ),
    )
    groups: dict[str, tuple[str, list[IncomingAlert]]] = {}
    for alert in parsed.alerts:
        key, reason = group_of(integration.group_by, alert)
        groups.setdefault(key, (reason, []))[1].append(alert)
    return _Prepared(delivery=delivery, run=run, groups=groups)


def _process(prep: _Prepared, *, pending: _Pending) -> DeliveryResult:
    """Process one claimed delivery. The incidents it opens and its timeline entries are left
    in ``pending`` for the caller to write with the batch's."""
    run = prep.run
    run.entries, run.openings, run.groups = pending.entries, pending.openings, pending.groups
    for key in sorted(prep.groups, key=key_hash):
        reason, alerts = prep.groups[key]
        _process_group(run, key=key, reason=reason, alerts=alerts, upserted=prep.upserted.get(key))
    if run.resolved_incidents:
        # Before an incident moves to monitoring, which writes its own entry.
        pending.write()
    incidents_auto_monitor(run)
    return run.result


# The columns a new group is inserted with.
_GROUP_COLUMNS = ("integration", "key_hash", "key", "created_at")


def _groups_lock(prepared: list[_Prepared]) -> dict[tuple[int, str], AlertGroup]:
    """The rows of every group of a batch's deliveries, locked until the transaction ends
    (created on first use), as :func:`_group_lock` locks one, in one statement for all of them,
    taken in the order of their keys' hashes (the order of every drain). A value the database
    refuses (rolled back to a savepoint) leaves each delivery to lock its own groups, so that
    the refusal is recorded on the delivery that brought it. Returns the groups by
    (integration id, key): one instance per group, shared by the deliveries of the batch."""
    wanted: dict[tuple[int, str], tuple[Integration, str]] = {}
    for prep in prepared:
        for key in prep.groups:
            wanted.setdefault((prep.run.integration.pk, key), (prep.run.integration, key_hash(key)))
    order = sorted(wanted, key=lambda found: (wanted[found][1], found[0]))
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params: list = []
    for integration_id, key in order:
        params += [integration_id, wanted[(integration_id, key)][1], key, now]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_groups_upsert_sql(len(order)), params)
            rows = cursor.fetchall()
    except OperationalError:
        raise
    except Exception:
        logger.warning("The groups of a batch could not be locked together", exc_info=True)
        return {}
    by_hash = {
        (integration_id, hashed): (pk, incident_id)
        for pk, incident_id, integration_id, hashed in rows
    }
    groups = {}
    for (integration_id, key), (integration, hashed) in wanted.items():
        pk, incident_id = by_hash[(integration_id, hashed)]
        groups[(integration_id, key)] = _group_row(integration, key, hashed, pk, incident_id)
    return groups


@lru_cache(maxsize=8)
def _groups_upsert_sql(count: int) -> str:
    q = connection.ops.quote_name
    col = {name: q(AlertGroup._meta.get_field(name).column) for name in _GROUP_COLUMNS}
    table = q(AlertGroup._meta.db_table)
    # The rows are locked in the order of the VALUES list.
    return (
        f"INSERT INTO {table} ({', '.join(col.values())}) VALUES "
        + ", ".join(["(%s, %s, %s, %s)"] * count)
        + f" ON CONFLICT ({col['integration']}, {col['key_hash']}) "
        f"DO UPDATE SET {col['key']} = {table}.{col['key']} "
        f"RETURNING {q('id')}, {q(AlertGroup._meta.get_field('incident').column)}, "
        f"{col['integration']}, {col['key_hash']}"
    )


def _group_lock(integration: Integration, key: str) -> AlertGroup:
    """The group's row, locked until the transaction ends (created on first use), in one
    statement: ``INSERT … ON CONFLICT DO UPDATE … RETURNING``. A new group is inserted; an
    existing one is locked by the no-op update, as ``SELECT … FOR UPDATE`` would, and comes
    back with its incident. A concurrent first delivery of this group that inserted it holds
    us until it commits; then its row is the one updated and returned."""
    hashed = key_hash(key)
    sql = _group_upsert_sql()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, [integration.pk, hashed, key, now])
        pk, incident_id = cursor.fetchone()
    return _group_row(integration, key, hashed, pk, incident_id)


def _group_row(
    integration: Integration, key: str, hashed: str, pk: int, incident_id: int | None
) -> AlertGroup:
    """The group's instance from what its lock returned."""
    group = AlertGroup.from_db(
        connection.alias,
        ["id", "integration_id", "key_hash", "key", "incident_id"],
        [pk, integration.pk, hashed, key, incident_id],
    )
    group.integration = integration
    return group


@cache
def _group_upsert_sql() -> str:
    q = connection.ops.quote_name
    col = {name: q(AlertGroup._meta.get_field(name).column) for name in _GROUP_COLUMNS}
    table = q(AlertGroup._meta.db_table)
    return (
        f"INSERT INTO {table} ({', '.join(col.values())}) VALUES (%s, %s, %s, %s) "
        f"ON CONFLICT ({col['integration']}, {col['key_hash']}) "
        f"DO UPDATE SET {col['key']} = {table}.{col['key']} "
        f"RETURNING {q('id')}, {q(AlertGroup._meta.get_field('incident').column)}"
    )


def _active_incident(group: AlertGroup) -> Incident | None:
    if group.incident_id is None:
        return None
    return (
        Incident.objects.filter(pk=group.incident_id, status__in=ACTIVE_STATUSES)
        .only("pk", "number", "status", "severity_id")
        .first()
    )


# --- one group ------------------------------------------------------------------------------------


def _alerts_upsert_together(
    prepared: list[_Prepared], groups: dict[tuple[int, str], AlertGroup]
) -> None:
    """Write the firing alerts of a batch's deliveries in one statement
    (``alerts_upsert_many``) where that changes nothing: a delivery whose groups are each its
    own in the batch and have no incident yet (a storm: new groups), whose alerts all fire,
    and none of whose fingerprints comes in another delivery of the batch (whose count it
    would race). The rest are written delivery by delivery, as before, and all of them when
    the database refuses the statement."""
    groups_used = Counter((p.run.integration.pk, key) for p in prepared for key in p.groups)
    fingerprints = Counter(
        (p.run.integration.pk, a.fingerprint)
        for p in prepared
        for _, alerts in p.groups.values()
        for a in {a.fingerprint: a for a in alerts}.values()
    )
    items: list[tuple[Run, AlertGroup, Fire]] = []
    places: list[tuple[_Prepared, str]] = []
    for prep in prepared:
        integration_id = prep.run.integration.pk
        plan = []
        for key, (_reason, alerts) in prep.groups.items():
            group = groups.get((integration_id, key))
            latest = _latest(alerts)
            if (
                group is None
                or group.incident_id is not None
                or groups_used[(integration_id, key)] > 1
                or any(a.action not in FIRING for a in latest)
                or any(fingerprints[(integration_id, a.fingerprint)] > 1 for a in latest)
            ):
                plan = []
                break
            plan.append((key, group, latest))
        for key, group, latest in plan:
            items.append((prep.run, group, fire_prepare(prep.run, latest)))
            places.append((prep, key))
    if len(items) < 2:
        return
    try:
        with transaction.atomic():
            written = alerts_upsert_many(items)
    except OperationalError:
        raise
    except Exception:
        # A value the database refuses: rolled back to the savepoint, each delivery writes its
        # own alerts, so that the refusal is recorded on the delivery that brought it.
        logger.warning("The alerts of a batch could not be written together", exc_info=True)
        return
    for (prep, key), (_run, _group, fire), rows in zip(places, items, written, strict=True):
        prep.upserted[key] = (fire, rows)


FIRING = ("firing", "trigger")


def _latest(alerts: list[IncomingAlert]) -> list[IncomingAlert]:
    """The last word of a delivery on each of its alerts, in order of last mention."""
    latest: dict[str, IncomingAlert] = {}
    for alert in alerts:
        latest.pop(alert.fingerprint, None)
        latest[alert.fingerprint] = alert
    return list(latest.values())


def _process_group(
    run: Run,
    *,
    key: str,
    reason: str,
    alerts: list[IncomingAlert],
    upserted: tuple[Fire, list[tuple]] | None = None,
) -> None:
    group = run.groups.get((run.integration.pk, key)) or _group_lock(run.integration, key)
    opened = next((o for o in run.openings if o.group.pk == group.pk), None)
    if opened is not None:
        # An incident this batch opened for the group and has not written yet (a delivery
        # regrouped since receipt falls in a group the batch has seen): written first.
        _pending_write(run.entries, run.openings)
        group.incident = opened.new.incident
    incident = _active_incident(group)
    # The last word of the delivery on each alert counts.
    latest = _latest(alerts)
    firing = [a for a in latest if a.action in FIRING]
    resolving = [a for a in latest if a.action in ("resolved", "resolve")]
    acks = [a for a in latest if a.action == "acknowledge"]
    if firing:
        incident = alerts_fire(
            run, group=group, incident=incident, reason=reason, alerts=firing, upserted=upserted
        )
        if (resolving or acks) and run.openings:
            # They read the group's incident: it must be written.
            openings_write(run.openings)
    for alert in resolving:
        alert_resolve(run, group=group, alert=alert)
    for alert in acks:
        alert_acknowledge(run, alert=alert)
