"""The two ways a delivery can fail, and the HTTP status rules shared by the HTTP channels."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from django.utils import timezone


class DeliveryError(Exception):
    pass


class TransientDeliveryError(DeliveryError):
    """Worth retrying: the same request may succeed later. ``retry_after`` is the provider's
    own wait in seconds, when it named one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Not worth retrying: the same request would fail the same way (bad address, rejected
    payload, missing credentials)."""


def is_transient_status(status: int) -> bool:
    """408 (timeout), 425 (too early), 429 (rate limited) and every 5xx are worth retrying."""
    return status in (408, 425, 429) or status >= 500


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or timezone.now())).total_seconds())


def http_error(
    *, service: str, status: int, headers: Mapping[str, str] | None, body: str
) -> TransientDeliveryError | PermanentDeliveryError:
    """The delivery error for an unsuccessful HTTP answer."""
    detail = f"{service} answered HTTP {status}"
    text = (body or "").strip()
    if text:
        detail += f": {text[:300]}"
    if is_transient_status(status):
        retry_after = None
        if headers is not None:
            retry_after = parse_retry_after(
                headers.get("Retry-After") or headers.get("retry-after")
            )
        return TransientDeliveryError(detail, retry_after=retry_after)
    return PermanentDeliveryError(detail)
