"""The security incident of an episode of failed logins: opening it when a minute first goes
over the threshold, and updating it (its summary and timeline) while the episode lasts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from .common import timeline_record
from .creation import incident_create
from .incidents import incident_update
from .login_counts import CHANNELS, MinuteSnapshot, minute_snapshot

# Members kept per episode; more are counted, not listed.
EPISODE_CAP = 50


def episode_record(
    *, rule: AlertRule, threshold: int, window: datetime, crossing: bool
) -> Incident | None:
    snapshot = minute_snapshot(window)
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


__all__ = ["EPISODE_CAP", "episode_record"]
