"""How KPIs follow incidents: handlers of the core's durable events, subscribed in
``KpisConfig.ready``, run after the incident's change committed, once per event."""

from __future__ import annotations


def subscribe() -> None:
    """Filled in by the rollup and survey work."""
