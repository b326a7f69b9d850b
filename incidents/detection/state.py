"""What one delivery's processing carries along (the integration, the receipt time, the timeline
entries to write) and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..memo import Versioned
from ..models import (
    AlertRule,
    Integration,
    Kind,
    MaintenanceWindow,
    RoutingRule,
    Service,
    Source,
)

# What processing a delivery reads besides the delivery: the integration's routing rules (with
# their services), the alert rules and the maintenance windows; kept per process while none of
# them changes (:mod:`incidents.memo`).
DETECTION_CONFIG = Versioned(
    "detection:config", models=(RoutingRule, Service, AlertRule, MaintenanceWindow)
)


@dataclass
class DeliveryResult:
    """What processing one delivery did."""

    outcome: str  # processed, skipped (not pending or held elsewhere), failed
    new: int = 0
    repeated: int = 0
    resolved: int = 0
    acknowledged: int = 0
    stale: int = 0
    # New firing alerts recorded during a maintenance window (no incident, no page).
    in_maintenance: int = 0
    opened: list[str] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)
    monitoring: list[str] = field(default_factory=list)
    # Later pending deliveries of the same group processed in the same transaction.
    followers: int = 0


@dataclass
class Run:
    """One delivery being processed."""

    integration: Integration
    received: datetime
    now: datetime
    rules: list[Any]
    result: DeliveryResult
    # The integration's enabled routing rules, in order, and the maintenance windows active at
    # the receipt time that may silence its alerts: each read once per delivery.
    routing: list[Any] = field(default_factory=list)
    windows: list[Any] = field(default_factory=list)
    # Timeline entries to append in one go (``timeline_record_many``) when the run ends.
    entries: list[dict[str, Any]] = field(default_factory=list)
    resolved_incidents: set[int] = field(default_factory=set)
    # Incidents opened by the delivery's alerts, written by the caller with those of the other
    # deliveries of its batch (``firing.openings_write``): a storm's in a few INSERTs.
    openings: list[Any] = field(default_factory=list)
    # The groups of the caller's batch, locked already, by (integration id, key).
    groups: dict[tuple[int, str], Any] = field(default_factory=dict)

    def note(self, incident: int | Any, message: str, data: dict[str, Any]) -> None:
        """An alert entry on the incident's timeline (an id, or an incident that may not be
        written yet: the entries are written after it)."""
        self.entries.append(
            {
                **(
                    {"incident_id": incident}
                    if isinstance(incident, int)
                    else {"incident": incident}
                ),
                "kind": Kind.ALERT,
                "source": Source.WEBHOOK,
                "actor": None,
                "message": message,
                "data": {"integration": self.integration.pk, **data},
                "occurred_at": self.now,
            }
        )
