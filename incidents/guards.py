"""Close guards: conditions that apps above the core add to closing an incident.

An app registers a callable in ``AppConfig.ready``::

    close_guard_register(key="reviews.booked", check=review_booked_guard)

``check(incident)`` runs inside the close transaction, on the locked incident, after the core's
own checks (permission, status, the report's required fields) and returns ``{field: message}``
for what is missing, or ``{}``. Any error refuses the close with ``GuardFailed`` (API 400, the
admin shows the message) and nothing changes. Guards must only read; the core never imports the
apps that register them. With no guard registered (the default), closing needs only the core's
fields.
"""

from __future__ import annotations

from collections.abc import Callable

from .models import Incident

__all__ = ["close_guard_errors", "close_guard_register", "close_guard_unregister"]

CloseGuard = Callable[[Incident], dict[str, str]]

_close_guards: dict[str, CloseGuard] = {}


def close_guard_register(*, key: str, check: CloseGuard) -> None:
    """Consult ``check`` whenever an incident is closed (registering ``key`` again replaces
    it)."""
    if not key:
        raise ValueError("A close guard needs a key.")
    _close_guards[key] = check


def close_guard_unregister(*, key: str) -> None:
    """Stop consulting the close guard ``key`` (a no-op when it is not registered)."""
    _close_guards.pop(key, None)


def close_guard_errors(incident: Incident) -> dict[str, str]:
    """What the registered close guards say is missing for ``incident`` to close."""
    errors: dict[str, str] = {}
    for check in list(_close_guards.values()):
        for name, message in (check(incident) or {}).items():
            errors.setdefault(name, message)
    return errors
