"""Refusals of the status-update workflow, with messages about what was refused. Both are domain
errors the API and the admin already map: :class:`CommsForbidden` is a 403,
:class:`UpdateStateConflict` a 409. (Missing permissions: ``communications.errors.require``.)"""

from __future__ import annotations

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
