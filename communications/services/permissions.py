"""Refusals of public communication's services, with messages about what was refused (the core's
``require_perm`` speaks of incidents). Both are domain errors the API and the admin already map:
:class:`CommsForbidden` is a 403, :class:`UpdateStateConflict` a 409."""

from __future__ import annotations

from typing import Any

from incidents.errors import ActionForbidden, TransitionNotAllowed, VigilError


class CommsForbidden(ActionForbidden):
    """The actor may not do this (403)."""

    def __init__(self, *, action: str, message: str) -> None:
        self.action = action
        VigilError.__init__(self, message)


class UpdateStateConflict(TransitionNotAllowed):
    """Not possible in the status update's current state (409); ``allowed`` lists what is."""

    def __init__(self, *, action: str, state: str, allowed: list[str], message: str) -> None:
        self.action, self.status, self.allowed = action, state, allowed
        VigilError.__init__(self, message)


def require_comms_perm(actor: Any, perm: str, action: str) -> None:
    """Raise :class:`CommsForbidden` unless ``actor`` holds ``perm``. ``None`` is Vigil itself."""
    if actor is None:
        return
    if not (actor.is_active and actor.has_perm(perm)):
        raise CommsForbidden(
            action=action, message=f"{actor} may not {action} (missing role permission)."
        )
