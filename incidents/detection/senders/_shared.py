"""Readers shared by the Datadog, New Relic and Splunk senders: epoch times, ``key:value`` tag
lists and alert identities that fit their column."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from ..parsing import CLOCK_SKEW, KEY_MAX, parse_time

_EPOCH = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
# Epoch values from this size on are milliseconds: 1e11 seconds is in the year 5138, 1e11
# milliseconds in 1973.
_MILLISECONDS_FROM = 10**11


def epoch_time(value: Any, *, now: datetime | None = None) -> datetime | None:
    """A time given as Unix seconds or milliseconds (a JSON number or a string of digits), or
    as RFC 3339 text. None when missing, zero, unreadable or more than ``CLOCK_SKEW`` ahead of
    Vigil's clock; a time slightly ahead is taken as now."""
    now = now or timezone.now()
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and not _EPOCH.match(value):
        return parse_time(value, now=now)
    if not isinstance(value, str | int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not 0 < number < float("inf"):
        return None
    seconds = number / 1000 if number >= _MILLISECONDS_FROM else number
    try:
        parsed = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if parsed > now + CLOCK_SKEW:
        return None
    return min(parsed, now)


def tag_pairs(text: str) -> list[tuple[str, str]]:
    """``"env:prod, service:checkout, monitor"`` as ``[("env", "prod"), ("service",
    "checkout"), ("monitor", "")]``: split on commas, each tag at its first colon."""
    pairs = []
    for tag in text.split(","):
        tag = tag.strip()
        if tag:
            name, _, value = tag.partition(":")
            pairs.append((name.strip(), value.strip()))
    return pairs


def bounded_key(*parts: str) -> str:
    """``parts`` joined by ``/``; past ``KEY_MAX`` characters, the first part and a hash of
    the rest (an alert's identity must fit its column and stay the same on every delivery)."""
    key = "/".join(p for p in parts if p)
    if len(key) <= KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:40]
    return f"{parts[0][: KEY_MAX - len(digest) - 1]}/{digest}"
