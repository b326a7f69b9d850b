"""Admin for the notification outbox (delivery side); escalation policy and events live in
``admin_escalation``."""

from . import admin_escalation  # noqa: F401
