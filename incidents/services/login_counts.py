"""Failed logins counted per minute in the cache: the counters, the addresses and usernames of
the minute, and the cached threshold of the ``failed_logins`` alert rule."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from ..models import AlertRule

RULE_KEY = "failed_logins"
# The rule's threshold is cached so a failed login costs no database query; saving an alert
# rule clears it (``login_watch_rule_changed``), and it expires anyway after RULE_TTL.
RULE_CACHE_KEY = "vigil:login-failures:threshold"
RULE_TTL = 60
CHANNELS = {"admin": "admin login page", "api": "API", "other": "other logins"}
# Cache entries outlive their minute long enough for the last failures of it to be counted.
WINDOW_TTL = 180
# Members kept per minute; more are counted, not listed.
MINUTE_CAP = 25


@dataclass(frozen=True)
class MinuteSnapshot:
    """What the cache holds for one minute."""

    window: datetime
    count: int
    locked_out: int
    by_channel: dict[str, int]
    addresses: list[str]
    address_count: int
    usernames: list[str]
    username_count: int


def minute_prefix(window: datetime) -> str:
    return f"vigil:login-failures:{window:%Y%m%d%H%M}:"


def failure_count(
    prefix: str, channel: str, members: list[tuple[str, str]]
) -> tuple[int, list[bool], int | None]:
    """Count the failure in the minute and per door, and mark its address and username as
    seen. Returns the minute's count, per member whether it is the first of the minute, and
    the cached threshold (0: the rule is off; ``None``: not cached).

    On Redis this is one pipelined round trip (``SET NX EX`` creates each counter with its
    expiry, so no counter outlives its minute; ``INCR`` is atomic across processes); other
    caches take the same steps through Django's cache API.
    """
    backend = caches["default"]
    member_keys = [_member_key(prefix, kind, value) for kind, value in members]
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key
        # Django's Redis backend has no pipelines; its client (a redis-py one) does.
        client = backend._cache.get_client(write=True)
        pipe = client.pipeline(transaction=False)
        pipe.get(key(RULE_CACHE_KEY))
        for counter in (prefix + "count", prefix + f"via:{channel}"):
            pipe.set(key(counter), 0, ex=WINDOW_TTL, nx=True)
            pipe.incr(key(counter))
        for member_key in member_keys:
            pipe.set(key(member_key), 1, ex=WINDOW_TTL, nx=True)
        results = pipe.execute()
        # Django's Redis serializer stores integers as plain numbers.
        threshold = int(results[0]) if results[0] is not None else None
        return int(results[2]), [bool(result) for result in results[5:]], threshold
    threshold = cache.get(RULE_CACHE_KEY)
    count = counter_incr(prefix + "count")
    counter_incr(prefix + f"via:{channel}")
    firsts = [cache.add(member_key, 1, WINDOW_TTL) for member_key in member_keys]
    return count, firsts, threshold


def threshold_of(rule: AlertRule) -> int:
    return max(1, math.ceil(rule.threshold))


def threshold_load() -> int:
    rule = AlertRule.objects.filter(key=RULE_KEY, enabled=True).first()
    threshold = threshold_of(rule) if rule is not None and rule.threshold is not None else 0
    cache.set(RULE_CACHE_KEY, threshold, RULE_TTL)
    return threshold


def counter_incr(key: str) -> int:
    try:
        return cache.incr(key)
    except ValueError:  # the minute's first: create it with its expiry
        if cache.add(key, 1, WINDOW_TTL):
            return 1
        return cache.incr(key)


def _member_key(prefix: str, kind: str, value: str) -> str:
    return f"{prefix}{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def member_list(prefix: str, kind: str, value: str) -> bool:
    """List a value first seen this minute; False once the minute's list is full."""
    position = counter_incr(f"{prefix}{kind}-n")
    if position > MINUTE_CAP:
        return False
    cache.set(f"{prefix}{kind}#{position}", value, WINDOW_TTL)
    return True


def _members(prefix: str, kind: str) -> tuple[list[str], int]:
    total = cache.get(f"{prefix}{kind}-n") or 0
    keys = [f"{prefix}{kind}#{i}" for i in range(1, min(total, MINUTE_CAP) + 1)]
    found = cache.get_many(keys)
    return [found[key] for key in keys if key in found], total


def minute_snapshot(window: datetime) -> MinuteSnapshot:
    prefix = minute_prefix(window)
    values = cache.get_many(
        [prefix + "count", prefix + "locked", *(prefix + f"via:{c}" for c in CHANNELS)]
    )
    addresses, address_count = _members(prefix, "addr")
    usernames, username_count = _members(prefix, "user")
    return MinuteSnapshot(
        window=window,
        count=values.get(prefix + "count", 0),
        locked_out=values.get(prefix + "locked", 0),
        by_channel={
            c: values[prefix + f"via:{c}"] for c in CHANNELS if prefix + f"via:{c}" in values
        },
        addresses=addresses,
        address_count=address_count,
        usernames=usernames,
        username_count=username_count,
    )


__all__ = [
    "CHANNELS",
    "RULE_CACHE_KEY",
    "RULE_KEY",
    "WINDOW_TTL",
    "MinuteSnapshot",
    "counter_incr",
    "failure_count",
    "member_list",
    "minute_prefix",
    "minute_snapshot",
    "threshold_load",
    "threshold_of",
]
