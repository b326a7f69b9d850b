"""Rate limits shared by the API (per token, per user, per address) and the PagerDuty-compatible
webhook (per routing key): a sliding window, counted by the ``limits`` package.

* **Where the hits are counted.** When the default cache is Redis (``REDIS_URL``), in Redis,
  with ``limits``' moving window: each hit is one Lua script that looks at the hits of the last
  window and records the new one only if there is room, so the check and the count are one
  atomic step for every process and thread (no read-modify-write race lets extra requests
  through). On any other cache (the embedded setup's file cache, the tests' local memory) in
  the memory of each process, best effort: each process counts its own requests.
* **Sliding, not fixed.** The window ends now: hits at 10:00:59 still count at 10:01:58. A
  refused hit is not counted, and the answer says how long until the oldest hit of the window
  leaves it (``Retry-After``).
* **When the storage fails** (Redis down, or not answering within ``STORAGE_TIMEOUT_SECONDS``)
  requests are let through: a rate limit protects Vigil, an outage of it must not become an
  outage of Vigil. A warning is logged, and the storage is left alone for ``OUTAGE_SECONDS``,
  so a Redis that stopped answering costs one request a short wait, not every request; then
  the next hit tries again. /healthz reports the cache itself.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)

REDIS_CACHE_BACKEND = "django.core.cache.backends.redis.RedisCache"
KEY_PREFIX = "vigil:ratelimit"
# A hit is one Redis round trip of well under a millisecond; one that takes longer than this
# means Redis is in trouble, and the request goes on without it.
STORAGE_TIMEOUT_SECONDS = 0.5
# After a failure, hits skip the storage this long (per process) before trying it again.
OUTAGE_SECONDS = 5.0
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Rate:
    """``limit`` hits per ``seconds``."""

    limit: int
    seconds: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # When refused: seconds until a hit would be let in again (at least 1).
    retry_after: int | None = None


ALLOWED = Decision(allowed=True)


def rate_parse(value: str | None) -> Rate | None:
    """``"N/second|minute|hour|day"`` (a unit may be shortened, as DRF allows: ``"N/s"``,
    ``"N/min"``) as a :class:`Rate`; ``None`` (no limit) when empty or N is 0.
    Raises ``ValueError`` for anything else."""
    text = (value or "").strip()
    if not text:
        return None
    number, slash, unit = text.partition("/")
    unit = unit.strip().lower()
    matches = [seconds for name, seconds in UNITS.items() if unit and name.startswith(unit)]
    try:
        limit = int(number)
    except ValueError:
        limit = -1
    if not slash or limit < 0 or len(matches) != 1:
        raise ValueError(f"{value!r} is not a rate: expected N/second, N/minute, N/hour or N/day")
    return Rate(limit=limit, seconds=matches[0]) if limit else None


@dataclass
class _Store:
    limiter: MovingWindowRateLimiter
    description: str
    down_until: float = 0.0
    failing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_stores: dict[str | None, _Store] = {}
_stores_lock = threading.Lock()


def _redis_location() -> str | None:
    """The Redis of the default cache (its first server: the one Django writes to), or
    ``None`` when the default cache is not Redis."""
    config = settings.CACHES.get("default", {})
    if config.get("BACKEND") != REDIS_CACHE_BACKEND:
        return None
    location = config.get("LOCATION") or ""
    servers = location if isinstance(location, list | tuple) else location.split(",")
    return servers[0].strip() or None


def _store() -> _Store:
    # Read on every hit, so a changed cache setting (a test's override) is followed.
    location = _redis_location()
    store = _stores.get(location)
    if store is not None:
        return store
    with _stores_lock:
        store = _stores.get(location)
        if store is None:
            if location is None:
                storage = MemoryStorage()
                description = "in-process"
            else:
                # Building the storage does not connect; the first hit does.
                storage = RedisStorage(
                    location,
                    key_prefix=KEY_PREFIX,
                    socket_timeout=STORAGE_TIMEOUT_SECONDS,
                    socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
                )
                description = "Redis"
            store = _stores[location] = _Store(MovingWindowRateLimiter(storage), description)
    return store


def rate_limit_hit(*, key: str, rate: Rate) -> Decision:
    """Count one hit on ``key`` against ``rate``, unless the window is full.

    Allowed: the hit is counted. Refused: nothing is counted, and ``retry_after`` says when
    the oldest hit of the window leaves it. Never raises on a storage failure: the hit is
    allowed (see the module's docstring). Not idempotent: each call is a hit.
    """
    store = _store()
    if store.down_until > time.monotonic():
        return ALLOWED
    item = RateLimitItemPerSecond(rate.limit, rate.seconds)
    try:
        if store.limiter.hit(item, key):
            decision = ALLOWED
        else:
            reset, _remaining = store.limiter.get_window_stats(item, key)
            # A hit exactly one window old still counts: the first second that lets one in
            # is strictly after ``reset``.
            decision = Decision(
                allowed=False, retry_after=max(1, math.floor(reset - time.time()) + 1)
            )
    except Exception as exc:
        _failed(store, exc)
        return ALLOWED
    if store.failing:
        store.failing = False
        logger.warning(
            "Rate limits are applied again: their %s storage answers.", store.description
        )
    return decision


def _failed(store: _Store, exc: Exception) -> None:
    with store.lock:
        now = time.monotonic()
        first = store.down_until <= now
        store.down_until = now + OUTAGE_SECONDS
        store.failing = True
    if first:
        logger.warning(
            "Rate limits not applied for the next %s s, requests let through: their %s "
            "storage failed (%s: %s).",
            OUTAGE_SECONDS,
            store.description,
            type(exc).__name__,
            exc,
            exc_info=not _is_connection_error(exc),
        )


def _is_connection_error(exc: Exception) -> bool:
    """An unreachable or silent Redis, as opposed to a bug (which gets its traceback)."""
    import redis

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)


__all__ = ["Decision", "Rate", "rate_limit_hit", "rate_parse"]
