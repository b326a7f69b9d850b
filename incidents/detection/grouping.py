"""Which group an alert belongs to: the integration's grouping labels when it has them, else
the sender's own grouping. Shared by processing (which locks each group) and the hooks (which
note, on receipt, the one group of a delivery so that a drain can take the pending deliveries
of one group together)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from .parsing import IncomingAlert


def group_of(group_by: Sequence[str], alert: IncomingAlert) -> tuple[str, str]:
    """The alert's group key and the reason it is grouped so (for the timeline)."""
    if group_by:
        parts = [f"{name}={alert.labels.get(name, '')}" for name in group_by]
        return "labels:" + ",".join(parts), f"same {', '.join(parts)} (grouping rule)"
    return alert.group_key, alert.group_reason


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def delivery_group_hash(group_by: Sequence[str], alerts: Iterable[IncomingAlert]) -> str:
    """The hash of the one group all ``alerts`` fall in; empty when they fall in several
    groups, or there are none."""
    keys = {group_of(group_by, alert)[0] for alert in alerts}
    return key_hash(keys.pop()) if len(keys) == 1 else ""
