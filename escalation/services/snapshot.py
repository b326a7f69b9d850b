"""The escalation policy snapshot an incident's escalation runs on (§5.1): every severity's
channels and response target, the matrix rows, each escalation level's contact and the backup
contacts of the incident manager and technical lead, as plain JSON, copied when escalation
starts so that editing the policy mid-incident does not rewrite a running escalation. Kept in
the shared cache under a version token that any change of the policy moves."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from incidents.memo import Versioned
from incidents.models import Contact, EscalationContact, ResponseRole, SeverityLevel

from ..models import EscalationStep
from .recipients import recipient_for_contact

__all__ = [
    "BACKUP_ROLES",
    "POLICY_CACHE_SECONDS",
    "policy_snapshot_take",
    "snapshot_row",
    "snapshot_severity",
    "step_key",
]

BACKUP_ROLES = (ResponseRole.INCIDENT_MANAGER, ResponseRole.TECHNICAL_LEAD)
# How long a change made behind the ORM's back may take to reach the snapshot.
POLICY_CACHE_SECONDS = 300


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
# minute while the policy does not change. It is kept per process and in the shared cache under
# the version token of its rows (:mod:`incidents.memo`): an unchanged policy costs one cache
# read and no query; any committed change of a severity level, an escalation step, an
# escalation contact, a response role or a contact reaches every process's next snapshot; the
# transaction making the change reads it from the database until it commits.

POLICY_SNAPSHOT = Versioned(
    "escalation:policy",
    models=(SeverityLevel, EscalationStep, EscalationContact, ResponseRole, Contact),
    seconds=POLICY_CACHE_SECONDS,
)


def _policy_cached() -> str:
    return POLICY_SNAPSHOT.get("snapshot", lambda: json.dumps(_policy_build()), shared=True)


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
