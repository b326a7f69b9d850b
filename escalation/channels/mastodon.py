"""Mastodon through Mastodon.py: one status (a "toot") on the company's account per
notification, with the notification's idempotency key as Mastodon's own ``Idempotency-Key``.

Mastodon keeps an idempotency key for an hour per account: a notification resent within that
time (its worker died after Mastodon accepted the post) gives back the status already posted
instead of a second one. Later than that, a resend is a second post.

The account, its server and the visibility of posts come from settings only
(``VIGIL_MASTODON_API_BASE_URL``, ``VIGIL_MASTODON_ACCESS_TOKEN``,
``VIGIL_MASTODON_VISIBILITY``); a notification's recipient names nothing (the company has one
account). The notification's body is posted as it is: plain text, which Mastodon shows as text
(it makes links of URLs, and of ``@user@server`` mentions and ``#hashtags``; the people who
approve a post read it as it will be sent).

Mastodon.py is told not to look up the server's version (``version_check_mode="none"``: no
request besides the post), to raise at once on HTTP 429 instead of sleeping until the limit
resets (``ratelimit_method="throw"``: the outbox decides about retries), and to use a session
of this module that keeps the last answer, so a 429 or 5xx is classified with the server's own
``Retry-After`` (or ``X-RateLimit-Reset``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import requests
from django.utils import timezone
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError,
    MastodonError,
    MastodonIllegalArgumentError,
    MastodonNetworkError,
    MastodonRatelimitError,
)

from .base import IDEMPOTENCY_HEADER, USER_AGENT, http_timeout, setting
from .errors import (
    PermanentDeliveryError,
    TransientDeliveryError,
    is_transient_status,
    parse_retry_after,
)

if TYPE_CHECKING:
    from ..models import Notification

SERVICE = "Mastodon"
VISIBILITIES = ("public", "unlisted", "private", "direct")
# Mastodon's default limit of a status's length, in characters.
STATUS_MAX = 500


class _RecordingSession(requests.Session):
    """A session that keeps the last response, for the headers Mastodon.py's errors drop."""

    last: requests.Response | None = None

    def request(self, *args, **kwargs) -> requests.Response:  # type: ignore[override]
        kwargs["allow_redirects"] = False
        response = super().request(*args, **kwargs)
        self.last = response
        return response


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    wait = parse_retry_after(response.headers.get("Retry-After"))
    if wait is not None:
        return wait
    reset = response.headers.get("X-RateLimit-Reset")
    if not reset:
        return None
    try:
        when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def _detail(response: requests.Response | None, exc: Exception) -> str:
    if response is None:
        return f"{SERVICE}: {exc}"
    detail = f"{SERVICE} answered HTTP {response.status_code}"
    text = (response.text or "").strip()
    if text:
        detail += f": {text[:300]}"
    return detail


def _refuse_redirect(response: requests.Response | None) -> None:
    # Redirects are not followed (a server that moved is a configuration error), and
    # Mastodon.py would take a 3xx answer with a JSON body for a posted status.
    if response is not None and 300 <= response.status_code < 400:
        raise PermanentDeliveryError(
            f"{SERVICE} answered HTTP {response.status_code} (redirect to "
            f"{response.headers.get('Location', '?')}); redirects are not followed."
        )


class MastodonBackend:
    def send(self, notification: Notification) -> str:
        base_url = (setting("VIGIL_MASTODON_API_BASE_URL", "") or "").strip()
        token = (setting("VIGIL_MASTODON_ACCESS_TOKEN", "") or "").strip()
        if not base_url or not token:
            raise PermanentDeliveryError(
                "Mastodon is not configured: set VIGIL_MASTODON_API_BASE_URL and "
                "VIGIL_MASTODON_ACCESS_TOKEN."
            )
        visibility = (setting("VIGIL_MASTODON_VISIBILITY", "public") or "public").strip().lower()
        if visibility not in VISIBILITIES:
            raise PermanentDeliveryError(
                f"VIGIL_MASTODON_VISIBILITY is {visibility!r}; it must be one of "
                f"{', '.join(VISIBILITIES)}."
            )
        text = (notification.body or "").strip()
        if not text:
            raise PermanentDeliveryError("A Mastodon post needs a text.")
        if len(text) > STATUS_MAX:
            raise PermanentDeliveryError(
                f"A Mastodon post is at most {STATUS_MAX} characters; this one has {len(text)}."
            )

        session = _RecordingSession()
        session.headers[IDEMPOTENCY_HEADER] = notification.idempotency_key
        try:
            client = Mastodon(
                access_token=token,
                api_base_url=base_url.rstrip("/"),
                version_check_mode="none",
                ratelimit_method="throw",
                request_timeout=http_timeout(),
                session=session,
                user_agent=USER_AGENT,
            )
            status = client.status_post(
                text,
                visibility=visibility,
                idempotency_key=notification.idempotency_key,
            )
        except MastodonNetworkError as exc:
            raise TransientDeliveryError(f"{SERVICE} unreachable: {exc}") from exc
        except MastodonRatelimitError as exc:
            raise TransientDeliveryError(
                _detail(session.last, exc), retry_after=_retry_after(session.last)
            ) from exc
        except MastodonAPIError as exc:
            response = session.last
            status_code = response.status_code if response is not None else 0
            _refuse_redirect(response)
            if status_code and is_transient_status(status_code):
                raise TransientDeliveryError(
                    _detail(response, exc), retry_after=_retry_after(response)
                ) from exc
            raise PermanentDeliveryError(_detail(response, exc)) from exc
        except (MastodonIllegalArgumentError, ValueError) as exc:
            raise PermanentDeliveryError(
                f"{SERVICE} request refused before sending: {exc}"
            ) from exc
        except MastodonError as exc:
            raise PermanentDeliveryError(f"{SERVICE}: {exc}") from exc
        finally:
            session.close()
        _refuse_redirect(session.last)
        status_id = status.get("id") if isinstance(status, dict) else getattr(status, "id", None)
        return str(status_id or "")
