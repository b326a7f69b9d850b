"""How reviews follow incidents: handlers of the core's durable events, subscribed in
``ReviewsConfig.ready``, each under a handler name of its own (``reviews.<concern>``), run after
the incident's change committed, once per event, in event order per incident."""

from __future__ import annotations


def subscribe() -> None:
    """Subscribe every reviews handler (idempotent)."""
