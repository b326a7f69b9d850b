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
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import (
    ACTIVE_STATUSES,
    AlertAction,
    AlertRule,
    DetectionSource,
    Incident,
    Kind,
    LoginFailureEpisode,
    Source,
)
from ..models.detection import ALERT_ACTION_PAGING, ALERT_ACTION_URGENCY
from ..ratelimit import Rate, rate_limit_hit
from .common import timeline_record
from .incidents import incident_create, incident_update

logger = logging.getLogger(__name__)

RULE_KEY = "failed_logins"
# The rule's threshold is cached so a failed login costs no database query; saving an alert
# rule clears it (``login_watch_rule_changed``), and it expires anyway after RULE_TTL.
RULE_CACHE_KEY = "vigil:login-failures:threshold"
RULE_TTL = 60
CHANNELS = {"admin": "admin login page", "api": "API", "other": "other logins"}
# Cache entries outlive their minute long enough for the last failures of it to be counted.
WINDOW_TTL = 180
# Members kept per minute and per episode; more are counted, not listed.
MINUTE_CAP = 25
EPISODE_CAP = 50
USERNAME_MAX = 150


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
    prefix = _prefix(window)
    channel = channel if channel in CHANNELS else "other"

    members = [("addr", _address(address))]
    if username:  # API token failures carry no username; only named attempts are listed
        members.append(("user", _username(username)))
    count, firsts, threshold = _count(prefix, channel, members)
    # A value new to the minute is listed (up to the cap): that is what makes an update.
    # (A list, not a generator: every new value is listed, not only the first.)
    listed = [
        _list(prefix, kind, value)
        for (kind, value), first in zip(members, firsts, strict=True)
        if first
    ]
    new_member = any(listed)

    if threshold is None:
        threshold = _threshold_load()
    if not threshold or count < threshold:
        return None
    crossing = cache.add(prefix + "crossed", 1, WINDOW_TTL)
    if not (crossing or new_member or count % threshold == 0):
        return None
    # The rule itself is read afresh whenever the database is about to be written.
    rule = AlertRule.objects.filter(key=RULE_KEY, enabled=True).first()
    if rule is None or rule.threshold is None:
        return None
    return _episode_record(
        rule=rule, threshold=_threshold_of(rule), window=window, crossing=crossing
    )


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
        _incr(_prefix(now.replace(second=0, microsecond=0)) + "locked")
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


# --- the cache side -----------------------------------------------------------------------------


def _prefix(window: datetime) -> str:
    return f"vigil:login-failures:{window:%Y%m%d%H%M}:"


def _count(
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
    count = _incr(prefix + "count")
    _incr(prefix + f"via:{channel}")
    firsts = [cache.add(member_key, 1, WINDOW_TTL) for member_key in member_keys]
    return count, firsts, threshold


def _threshold_of(rule: AlertRule) -> int:
    return max(1, math.ceil(rule.threshold))


def _threshold_load() -> int:
    rule = AlertRule.objects.filter(key=RULE_KEY, enabled=True).first()
    threshold = _threshold_of(rule) if rule is not None and rule.threshold is not None else 0
    cache.set(RULE_CACHE_KEY, threshold, RULE_TTL)
    return threshold


def _incr(key: str) -> int:
    try:
        return cache.incr(key)
    except ValueError:  # the minute's first: create it with its expiry
        if cache.add(key, 1, WINDOW_TTL):
            return 1
        return cache.incr(key)


def _member_key(prefix: str, kind: str, value: str) -> str:
    return f"{prefix}{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def _list(prefix: str, kind: str, value: str) -> bool:
    """List a value first seen this minute; False once the minute's list is full."""
    position = _incr(f"{prefix}{kind}-n")
    if position > MINUTE_CAP:
        return False
    cache.set(f"{prefix}{kind}#{position}", value, WINDOW_TTL)
    return True


def _members(prefix: str, kind: str) -> tuple[list[str], int]:
    total = cache.get(f"{prefix}{kind}-n") or 0
    keys = [f"{prefix}{kind}#{i}" for i in range(1, min(total, MINUTE_CAP) + 1)]
    found = cache.get_many(keys)
    return [found[key] for key in keys if key in found], total


def _snapshot(window: datetime) -> MinuteSnapshot:
    prefix = _prefix(window)
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


def _address(value: str | None) -> str:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return "unknown"


def _username(value: Any) -> str:
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text[:USERNAME_MAX] or "(blank)"


# --- the database side --------------------------------------------------------------------------


def _episode_record(
    *, rule: AlertRule, threshold: int, window: datetime, crossing: bool
) -> Incident | None:
    snapshot = _snapshot(window)
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _episode_apply(
                    rule=rule, threshold=threshold, snapshot=snapshot, crossing=crossing
                )
        except IntegrityError:
            # Another process opened the episode at this moment (the one-open constraint);
            # its incident is committed now, so the second attempt joins it.
            if attempt:
                raise
    return None


def _episode_apply(
    *, rule: AlertRule, threshold: int, snapshot: MinuteSnapshot, crossing: bool
) -> Incident | None:
    episode = (
        LoginFailureEpisode.objects.select_for_update(of=("self",))
        .select_related("incident")
        .filter(is_open=True)
        .first()
    )
    if episode is not None and episode.incident.status not in ACTIVE_STATUSES:
        episode.is_open = False
        episode.save(update_fields=["is_open", "updated_at"])
        episode = None
    if episode is None:
        if not crossing:
            # The episode's incident was resolved during this minute: the next minute over
            # the threshold opens a new one, a later failure of this minute does not.
            return None
        return _episode_open(rule=rule, threshold=threshold, snapshot=snapshot)
    return _episode_update(
        episode, rule=rule, threshold=threshold, snapshot=snapshot, crossing=crossing
    )


def _episode_open(*, rule: AlertRule, threshold: int, snapshot: MinuteSnapshot) -> Incident:
    episode = LoginFailureEpisode(
        first_window=snapshot.window,
        last_window=snapshot.window,
        windows=1,
        failures=snapshot.count,
        last_window_failures=snapshot.count,
        peak=snapshot.count,
        last_window_by_channel=snapshot.by_channel,
        addresses=snapshot.addresses[:EPISODE_CAP],
        usernames=snapshot.usernames[:EPISODE_CAP],
    )
    incident = incident_create(
        actor=None,
        source=Source.SYSTEM,
        title=(
            f"Failed logins over threshold: {snapshot.count} in one minute "
            f"(rule {rule.name}, {threshold} per minute)"
        ),
        severity=rule.severity_id,
        urgency=ALERT_ACTION_URGENCY.get(rule.action, ALERT_ACTION_URGENCY[""]),
        summary=_summary(episode, rule=rule, threshold=threshold, snapshot=snapshot),
        detection_source=DetectionSource.SECURITY_MONITORING,
        impact_started_at=snapshot.window,
        paging=ALERT_ACTION_PAGING.get(rule.action, "security"),
    )
    episode.incident = incident
    episode.save()
    timeline_record(
        incident=incident,
        kind=Kind.ALERT,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"Failed logins reached the {rule.name} threshold ({threshold} per minute): "
            f"{snapshot.count} in the minute from {_hhmm(snapshot.window)}"
            f"{_channels(snapshot.by_channel)}.{_locked(snapshot)} {_seen(snapshot)}"
        ),
        data=_data(snapshot, threshold=threshold, rule=rule),
    )
    return incident


def _episode_update(
    episode: LoginFailureEpisode,
    *,
    rule: AlertRule,
    threshold: int,
    snapshot: MinuteSnapshot,
    crossing: bool,
) -> Incident | None:
    new_addresses = [a for a in snapshot.addresses if a not in episode.addresses]
    new_usernames = [u for u in snapshot.usernames if u not in episode.usernames]
    if snapshot.window == episode.last_window:
        added = max(0, snapshot.count - episode.last_window_failures)
        if not (added or new_addresses or new_usernames):
            return None  # a concurrent update already recorded this state
        episode.failures += added
        episode.last_window_failures = max(episode.last_window_failures, snapshot.count)
    elif snapshot.window > episode.last_window:
        episode.windows += 1
        episode.last_window = snapshot.window
        episode.failures += snapshot.count
        episode.last_window_failures = snapshot.count
    else:
        return None  # a late failure of a minute already closed out by a newer one
    episode.peak = max(episode.peak, snapshot.count)
    episode.last_window_by_channel = snapshot.by_channel
    episode.addresses = (episode.addresses + new_addresses)[:EPISODE_CAP]
    episode.usernames = (episode.usernames + new_usernames)[:EPISODE_CAP]
    episode.save()

    incident = incident_update(
        incident=episode.incident,
        actor=None,
        source=Source.SYSTEM,
        summary=_summary(episode, rule=rule, threshold=threshold, snapshot=snapshot),
    )
    if crossing:
        head = (
            f"Another minute over the threshold: {snapshot.count} failed logins in the minute "
            f"from {_hhmm(snapshot.window)}{_channels(snapshot.by_channel)}."
        )
    else:
        head = (
            f"Failed logins continue: {snapshot.count} in the minute from "
            f"{_hhmm(snapshot.window)}{_channels(snapshot.by_channel)}."
        )
    parts = [head + _locked(snapshot)]
    if new_addresses:
        parts.append("New source addresses: " + ", ".join(new_addresses) + ".")
    if new_usernames:
        parts.append("New usernames: " + ", ".join(new_usernames) + ".")
    timeline_record(
        incident=incident,
        kind=Kind.ALERT,
        source=Source.SYSTEM,
        actor=None,
        message=" ".join(parts),
        data={
            **_data(snapshot, threshold=threshold, rule=rule),
            "new_addresses": new_addresses,
            "new_usernames": new_usernames,
        },
    )
    return incident


def _action(rule: AlertRule) -> str:
    try:
        return AlertAction(rule.action).label.lower()
    except ValueError:
        return rule.action or "none"


def _hhmm(window: datetime) -> str:
    local = timezone.localtime(window)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def _channels(by_channel: dict[str, int]) -> str:
    parts = [f"{CHANNELS[c]} {n}" for c, n in by_channel.items() if n]
    return f" ({', '.join(parts)})" if parts else ""


def _locked(snapshot: MinuteSnapshot) -> str:
    if not snapshot.locked_out:
        return ""
    return f" {snapshot.locked_out} at or past the lockout limit."


def _listing(values: list[str], total: int) -> str:
    text = ", ".join(values) if values else "none recorded"
    if total > len(values):
        text += f" (and {total - len(values)} more)"
    return text


def _seen(snapshot: MinuteSnapshot) -> str:
    return (
        f"Source addresses: {_listing(snapshot.addresses, snapshot.address_count)}. "
        f"Usernames: {_listing(snapshot.usernames, snapshot.username_count)}."
    )


def _data(snapshot: MinuteSnapshot, *, threshold: int, rule: AlertRule) -> dict[str, Any]:
    return {
        "rule": rule.key,
        "threshold": threshold,
        "window": snapshot.window.isoformat(),
        "failures": snapshot.count,
        "locked_out": snapshot.locked_out,
        "by_channel": snapshot.by_channel,
        "addresses": snapshot.addresses,
        "address_count": snapshot.address_count,
        "usernames": snapshot.usernames,
        "username_count": snapshot.username_count,
    }


def _summary(
    episode: LoginFailureEpisode, *, rule: AlertRule, threshold: int, snapshot: MinuteSnapshot
) -> str:
    more = f" (first {EPISODE_CAP} listed)"
    locked = (
        f", {snapshot.locked_out} of them at or past the lockout limit"
        if snapshot.locked_out
        else ""
    )
    return "\n".join(
        [
            f"Failed logins to Vigil went over the {rule.name} alert rule ({threshold} per "
            f"minute, §7.2; action: {_action(rule)}).",
            f"Minutes over the threshold: {episode.windows}, from {_hhmm(episode.first_window)} "
            f"to {_hhmm(episode.last_window)}; at least {episode.failures} failed logins in "
            f"them, up to {episode.peak} in one minute.",
            f"Latest minute ({_hhmm(snapshot.window)}): {snapshot.count} failed logins"
            f"{_channels(snapshot.by_channel)}{locked}, from {snapshot.address_count} "
            f"address(es) with {snapshot.username_count} username(s).",
            "Source addresses: "
            + (", ".join(episode.addresses) or "none recorded")
            + (more if len(episode.addresses) >= EPISODE_CAP else ""),
            "Usernames tried: "
            + (", ".join(episode.usernames) or "none recorded")
            + (more if len(episode.usernames) >= EPISODE_CAP else ""),
        ]
    )


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
