"""Domain errors of public communication, worded for what they are about (a maintenance window,
a component), as subclasses of the core's errors so the API's one exception handler and the
admin map them as it does the core's (409 with the allowed actions, 403)."""

from __future__ import annotations

from typing import Any

from incidents.errors import ActionForbidden, TransitionNotAllowed, VigilError


class StepNotAllowed(TransitionNotAllowed):
    """A maintenance step not possible from the window's current status (API 409)."""

    def __init__(self, *, action: str, status: str, allowed: list[str], what: str) -> None:
        self.action, self.status, self.allowed = action, status, allowed
        allowed_text = ", ".join(allowed) if allowed else "none"
        VigilError.__init__(
            self, f"Cannot {action} {what} that is {status}. Allowed actions now: {allowed_text}."
        )


class NotPermitted(ActionForbidden):
    """The actor's roles do not allow the action (API 403)."""

    def __init__(self, *, action: str, user: Any) -> None:
        self.action = action
        VigilError.__init__(self, f"{user} may not {action} (missing role permission).")


def require(actor: Any, perm: str, action: str) -> None:
    """Raise :class:`NotPermitted` unless ``actor`` holds ``perm``; ``None`` is Vigil itself."""
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise NotPermitted(action=action, user=actor)
