"""The escalation policy snapshot an incident's escalation runs on (§5.1): every severity's
channels and response target, the matrix rows, each escalation level's contact and the backup
contacts of the incident manager and technical lead, as plain JSON, copied when escalation
starts so that editing the policy mid-incident does not rewrite a running escalation. Kept in
the shared cache under a version token that any change of the policy moves."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models.signals import post_delete, post_migrate, post_save

from incidents.models import Contact, EscalationContact, ResponseRole, SeverityLevel

from ..models import EscalationStep
from .recipients import recipient_for_contact

logger = logging.getLogger(__name__)

__all__ = [
    "BACKUP_ROLES",
    "POLICY_CACHE_SECONDS",
    "policy_snapshot_take",
    "snapshot_row",
    "snapshot_severity",
    "step_key",
]

BACKUP_ROLES = (ResponseRole.INCIDENT_MANAGER, ResponseRole.TECHNICAL_LEAD)


def step_key(severity: int, elapsed: timedelta) -> str:
    """Stable key of a matrix step, e.g. ``sev1-0:30:00`` (hours may exceed 24)."""
    seconds = int(elapsed.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"sev{severity}-{hours}:{rest // 60:02d}:{rest % 60:02d}"


# --- the snapshot ----------------------------------------------------------------------------


def policy_snapshot_take(*, now: datetime) -> dict[str, Any]:
    """The escalation policy in force now, as plain JSON: every severity's channels and
    response target, the matrix row of every severity, each escalation level's contact, and
    the backup contacts of the incident manager and technical lead; ``taken_at`` is ``now``.

    Read from the cache under the policy's version (see "The policy snapshot's cache" below):
    an unchanged policy costs no query. A transaction that changed the policy and has not
    committed reads its own changes from the database."""
    return {**json.loads(_policy_cached()), "taken_at": now.isoformat()}


def _policy_build() -> dict[str, Any]:
    """The snapshot, read from the database (four queries)."""
    severities = {
        str(s.level): {
            "name": s.name,
            "channels": list(s.notification_channels),
            "response_target_s": int(s.response_target.total_seconds()),
        }
        for s in SeverityLevel.objects.all()
    }
    levels = {
        level.key: {
            "name": level.name,
            "contact": recipient_for_contact(level.contact).snapshot() if level.contact else None,
        }
        for level in EscalationContact.objects.select_related("contact")
    }
    matrix: dict[str, list[dict[str, Any]]] = {}
    for step in EscalationStep.objects.select_related("target").order_by("severity_id", "elapsed"):
        matrix.setdefault(str(step.severity_id), []).append(
            {
                "step": step_key(step.severity_id, step.elapsed),
                "elapsed_s": int(step.elapsed.total_seconds()),
                "level": step.target.key,
            }
        )
    backups = {
        role.key: {
            "role": role.name,
            "contact": (
                recipient_for_contact(role.backup_contact).snapshot()
                if role.backup_contact
                else None
            ),
        }
        for role in ResponseRole.objects.filter(key__in=BACKUP_ROLES).select_related(
            "backup_contact"
        )
    }
    return {
        "version": 1,
        "severities": severities,
        "matrix": matrix,
        "levels": levels,
        "backups": backups,
    }


# --- the policy snapshot's cache -------------------------------------------------------------
#
# Every new incident takes a snapshot, so during an alert storm it is read hundreds of times a
# minute while the policy does not change. It is kept in the shared cache (Redis, or the file
# cache of the embedded setup: shared by the web, worker and beat processes) under a version
# token, itself in the cache; each process also remembers the last snapshot it read with its
# token, so an unchanged policy costs one cache read and no query.
#
# The token changes whenever a transaction that saved or deleted any row the snapshot is made of
# (a severity level, an escalation step, an escalation contact, a response role, a contact)
# commits: the models' post_save/post_delete register the change with ``on_commit``, which every
# process then sees through the shared token. Until it commits, the changing transaction reads
# the policy from the database (it must see its own changes, and nobody else may); a rollback
# discards the change and leaves the token alone. A migration changes the token too. A change
# made behind the ORM's back (raw SQL, ``queryset.update()``, which the conventions forbid on
# these audited models) applies within ``POLICY_CACHE_SECONDS``, when the token expires. If the
# cache is down, every snapshot is read from the database.

POLICY_VERSION_KEY = "vigil:escalation:policy:version"
POLICY_SNAPSHOT_KEY = "vigil:escalation:policy:snapshot:"
POLICY_CACHE_SECONDS = 300
# (token, the snapshot as JSON) this process read last; replaced whole, so threads never see
# half of it.
_policy_memo: tuple[str, str] = ("", "")


def _policy_dirty() -> bool:
    """Whether this connection's transaction changed the policy and has not committed yet."""
    return any(func is _policy_version_bump for _, func, *_ in connection.run_on_commit)


def _policy_cached() -> str:
    global _policy_memo
    if _policy_dirty():
        return json.dumps(_policy_build())
    try:
        version = cache.get(POLICY_VERSION_KEY)
        if version is None:
            version = uuid.uuid4().hex
            if not cache.add(POLICY_VERSION_KEY, version, POLICY_CACHE_SECONDS):
                version = cache.get(POLICY_VERSION_KEY) or version
        memo = _policy_memo
        if memo[0] == version:
            return memo[1]
        # The token is read before the policy: a change committed meanwhile moves the token,
        # so what is stored here under the old one is never read again.
        snapshot = cache.get(POLICY_SNAPSHOT_KEY + version)
        if snapshot is None:
            snapshot = json.dumps(_policy_build())
            cache.set(POLICY_SNAPSHOT_KEY + version, snapshot, POLICY_CACHE_SECONDS)
    except Exception:
        logger.warning("Policy snapshot cache unavailable; reading the policy", exc_info=True)
        return json.dumps(_policy_build())
    _policy_memo = (version, snapshot)
    return snapshot


def _policy_version_bump() -> None:
    """A new policy version: every process reads the policy afresh on its next snapshot."""
    global _policy_memo
    _policy_memo = ("", "")
    try:
        cache.set(POLICY_VERSION_KEY, uuid.uuid4().hex, POLICY_CACHE_SECONDS)
    except Exception:
        logger.warning("Policy snapshot cache unavailable; the change applies when it returns")


def _policy_changed(*, using: str | None = None, **kwargs: Any) -> None:
    transaction.on_commit(_policy_version_bump, using=using or DEFAULT_DB_ALIAS)


def _policy_migrated(**kwargs: Any) -> None:
    _policy_version_bump()


for _model in (SeverityLevel, EscalationStep, EscalationContact, ResponseRole, Contact):
    for _signal in (post_save, post_delete):
        _signal.connect(
            _policy_changed,
            sender=_model,
            dispatch_uid=f"escalation.policy_snapshot.{_signal is post_save}.{_model.__name__}",
        )
post_migrate.connect(_policy_migrated, dispatch_uid="escalation.policy_snapshot.migrated")


# --- reading a snapshot --------------------------------------------------------------------


def snapshot_row(snapshot: dict[str, Any], severity: int) -> list[dict[str, Any]]:
    """The matrix row of ``severity`` in ``snapshot``, in elapsed order."""
    return snapshot.get("matrix", {}).get(str(severity), [])


def snapshot_severity(snapshot: dict[str, Any], severity: int) -> dict[str, Any]:
    """A severity's channels and response target in ``snapshot`` (read from the database for
    a severity the snapshot predates)."""
    conf = snapshot.get("severities", {}).get(str(severity))
    if conf is not None:
        return conf
    level = SeverityLevel.objects.get(level=severity)
    return {
        "name": level.name,
        "channels": list(level.notification_channels),
        "response_target_s": int(level.response_target.total_seconds()),
    }
