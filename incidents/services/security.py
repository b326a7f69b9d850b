"""Vigil watching itself (§7.1 security monitoring, §7.2 "Failed Logins 100/minute → High →
security team alert").

Every failed login (the admin login page, an API request with a bad token) is counted in the
cache, per minute: atomic ``INCR``s in one pipelined round trip on Redis (the file or
local-memory cache of a single host otherwise, whose increments are not atomic across
processes: close, not exact, under concurrent failures), with the source addresses and
usernames of the minute kept as capped sets. The threshold is that of the alert rule with key
``failed_logins``, cached beside the counters (saving a rule clears it, so an edit in the admin
applies from the next failure). The database is written only when a minute reaches it:

* the first failure to reach it in a minute (a cache ``add`` lets exactly one through) opens
  the security incident, or adds the minute to the one already open;
* later failures of that minute update the incident when they bring a new address or
  username, and at each further multiple of the threshold (200, 300, ...), so an attack of
  thousands of failures writes a handful of updates, not thousands.

One incident per episode: the open :class:`LoginFailureEpisode` (at most one, by a partial
UNIQUE constraint) names it; minutes over the threshold while it is active join it, and the
first minute over the threshold after it is resolved opens a new one.

Brute force is also stopped, not only watched: django-axes locks usernames and addresses out of
the admin login (settings ``AXES_*``). A locked-out attempt is still a failed login here (axes
refuses it through ``authenticate()``, which sends ``user_login_failed``), and each failure at
or past the lockout limit (axes's ``user_locked_out``) is counted in the minute too, shown on
the incident. Bad API tokens are counted per client address in a sliding window by the shared
rate limiter (:func:`api_token_failure_record`); at ``VIGIL_API_TOKEN_FAILURE_LIMIT`` the API
answers 429 without checking the address's tokens (:func:`api_token_blocked`, a lookup in the
process's memory: a token request costs no cache call). The limiter is atomic on Redis and
fails open: with the cache down, tokens are checked as usual and a warning is logged.

The minute's counters in the cache are kept by :mod:`incidents.services.login_counts`; the
security incident and its episode are written by :mod:`incidents.services.login_episodes`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from ..models import AlertRule, Incident
from ..ratelimit import Rate, rate_limit_hit
from .login_counts import (
    CHANNELS,
    RULE_CACHE_KEY,
    RULE_KEY,
    WINDOW_TTL,
    counter_incr,
    failure_count,
    member_list,
    minute_prefix,
    threshold_load,
    threshold_of,
)
from .login_episodes import episode_record

logger = logging.getLogger(__name__)

USERNAME_MAX = 150


def login_failure_record(
    *, channel: str, address: str | None, username: str, now: datetime | None = None
) -> Incident | None:
    """Count one failed login; open or update the security incident when the minute is over
    the threshold. Returns the incident it opened or updated, else ``None``.

    ``channel`` is ``"admin"``, ``"api"`` or ``"other"``; ``address`` the client address (not
    validated by the caller: anything that is not an IP address is recorded as unknown).
    Failures are always counted; they open or update nothing while the ``failed_logins`` rule
    is missing, disabled or without a threshold. Each call counts once: it is not idempotent,
    by design.
    """
    now = now or timezone.now()
    window = now.replace(second=0, microsecond=0)
    prefix = minute_prefix(window)
    channel = channel if channel in CHANNELS else "other"

    members = [("addr", _address(address))]
    if username:  # API token failures carry no username; only named attempts are listed
        members.append(("user", _username(username)))
    count, firsts, threshold = failure_count(prefix, channel, members)
    # A value new to the minute is listed (up to the cap): that is what makes an update.
    # (A list, not a generator: every new value is listed, not only the first.)
    listed = [
        member_list(prefix, kind, value)
        for (kind, value), first in zip(members, firsts, strict=True)
        if first
    ]
    new_member = any(listed)

    if threshold is None:
        threshold = threshold_load()
    if not threshold or count < threshold:
        return None
    crossing = cache.add(prefix + "crossed", 1, WINDOW_TTL)
    if not (crossing or new_member or count % threshold == 0):
        return None
    # The rule itself is read afresh whenever the database is about to be written.
    rule = AlertRule.objects.filter(key=RULE_KEY, enabled=True).first()
    if rule is None or rule.threshold is None:
        return None
    return episode_record(rule=rule, threshold=threshold_of(rule), window=window, crossing=crossing)


def login_watch_rule_changed() -> None:
    """Forget the cached threshold: an edit of the rule applies from the next failure on.
    (Called when an alert rule is saved; without it the cached value lasts ``RULE_TTL``.)"""
    cache.delete(RULE_CACHE_KEY)


def login_failure_from_request(*, request: Any, channel: str, username: str = "") -> None:
    """Count a failed login made by ``request`` (a Django or DRF request, or ``None``).

    Called on the login path itself, so it never raises: a broken cache or database must not
    turn a refused login into a server error (the failure is logged instead). A request is
    counted once even if two hooks see it (Django's ``user_login_failed`` and the API's
    authentication error).
    """
    django_request = getattr(request, "_request", request)
    if django_request is not None:
        if getattr(django_request, "_vigil_login_failure_counted", False):
            return
        django_request._vigil_login_failure_counted = True
    try:
        login_failure_record(
            channel=channel,
            address=client_address(django_request) if django_request is not None else None,
            username=username,
        )
    except Exception:
        logger.exception("Could not count a failed login (channel %s).", channel)


def client_address(request: Any) -> str | None:
    """The client's address: REMOTE_ADDR, or with ``DJANGO_NUM_PROXIES`` set, the address
    that many proxies back in X-Forwarded-For (DRF's rule). Without that setting the header
    is ignored: anyone can write it, and an attacker would write someone else's address."""
    meta = getattr(request, "META", {}) or {}
    remote = meta.get("REMOTE_ADDR")
    num_proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES")
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if num_proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(num_proxies, len(hops))]
    return remote


def client_ip(request: Any) -> str | None:
    """:func:`client_address` as an IP address, or ``None`` when it is not one (django-axes's
    client address: it stores it in an IP address column)."""
    address = _address(client_address(request))
    return None if address == "unknown" else address


def login_lockout_record(*, now: datetime | None = None) -> None:
    """Count, in its minute, a failed login at or past the lockout limit (django-axes's
    ``user_locked_out``: the failure that locks, and each one refused while locked). Shown on
    the security incident; the failure itself is counted by :func:`login_failure_record`.
    Never raises: it runs on the login path (a broken cache is logged)."""
    now = now or timezone.now()
    try:
        counter_incr(minute_prefix(now.replace(second=0, microsecond=0)) + "locked")
    except Exception:
        logger.exception("Could not count a login lockout.")


# --- API tokens: failures per client address ----------------------------------------------------

TOKEN_FAILURES_KEY = "api-token-failures:"
# Addresses this process refuses tokens from, and until when (``time.time()``); at most this
# many, the oldest block forgotten first.
_blocked: dict[str, float] = {}
_blocked_lock = threading.Lock()
BLOCKED_MAX = 10_000


def api_token_failure_record(*, address: str | None) -> int | None:
    """Count one refused API token from ``address`` (a sliding window of
    ``VIGIL_API_TOKEN_FAILURE_WINDOW_SECONDS``, counted by :mod:`incidents.ratelimit`: atomic
    on Redis and shared by every process; per process on other caches). When it is the
    ``VIGIL_API_TOKEN_FAILURE_LIMIT``th in the window, this process refuses the address's
    tokens until the oldest of them leaves the window: returns those seconds, else ``None``.

    Never raises: with the cache down the limiter lets everything through (and logs it).
    """
    limit = settings.VIGIL_API_TOKEN_FAILURE_LIMIT
    if not limit:
        return None
    address = _address(address)
    # The window holds limit - 1 failures: the one that finds it full is the limit-th.
    rate = Rate(limit=limit - 1, seconds=settings.VIGIL_API_TOKEN_FAILURE_WINDOW_SECONDS)
    key = TOKEN_FAILURES_KEY + hashlib.sha256(address.encode()).hexdigest()[:32]
    decision = rate_limit_hit(key=key, rate=rate)
    if decision.allowed:
        return None
    with _blocked_lock:
        if len(_blocked) >= BLOCKED_MAX:
            now = time.time()
            for blocked, until in list(_blocked.items()):
                if until <= now:
                    del _blocked[blocked]
            while len(_blocked) >= BLOCKED_MAX:
                del _blocked[min(_blocked, key=_blocked.__getitem__)]
        _blocked[address] = time.time() + decision.retry_after
    return decision.retry_after


def api_token_blocked(*, address: str | None) -> int | None:
    """Seconds this process still refuses API tokens from ``address`` (see
    :func:`api_token_failure_record`), or ``None``. No cache call: one dictionary lookup."""
    address = _address(address)
    until = _blocked.get(address)
    if until is None:
        return None
    left = until - time.time()
    if left <= 0 or not settings.VIGIL_API_TOKEN_FAILURE_LIMIT:
        with _blocked_lock:
            if _blocked.get(address) == until:
                del _blocked[address]
        return None
    return max(1, math.ceil(left))


def _address(value: str | None) -> str:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return "unknown"


def _username(value: Any) -> str:
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text[:USERNAME_MAX] or "(blank)"


__all__ = [
    "api_token_blocked",
    "api_token_failure_record",
    "client_address",
    "client_ip",
    "login_failure_from_request",
    "login_failure_record",
    "login_lockout_record",
    "login_watch_rule_changed",
]
