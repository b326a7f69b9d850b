"""Domain errors raised by the incident services; the admin and the API map them to messages
and HTTP statuses (409 not allowed, 400 guard or input, 403 forbidden)."""

from __future__ import annotations


class VigilError(Exception):
    """Base of the domain errors. ``message`` is safe to show to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransitionNotAllowed(VigilError):
    """The action is not possible from the incident's current status."""

    def __init__(self, *, action: str, status: str, allowed: list[str]) -> None:
        self.action, self.status, self.allowed = action, status, allowed
        allowed_text = ", ".join(allowed) if allowed else "none"
        super().__init__(
            f"Cannot {action} an incident that is {status}. Allowed actions now: {allowed_text}."
        )


class GuardFailed(VigilError):
    """The action is possible from this status, but required information is missing."""

    def __init__(self, *, action: str, errors: dict[str, str]) -> None:
        self.action, self.errors = action, errors
        details = "; ".join(f"{field}: {message}" for field, message in errors.items())
        super().__init__(f"Cannot {action} yet: {details}")


class ActionForbidden(VigilError):
    """The acting user's roles do not allow the action."""

    def __init__(self, *, action: str, user: object) -> None:
        self.action = action
        super().__init__(f"{user} may not {action} incidents (missing role permission).")


class InvalidInput(VigilError):
    """Input that fails validation; ``errors`` maps field names to messages."""

    def __init__(self, errors: dict[str, str] | str) -> None:
        self.errors = errors if isinstance(errors, dict) else {"non_field_errors": errors}
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))
