"""The admin of public communication: one module per concern, each imported here so Django's
admin autodiscovery registers it."""

from . import clock, policy, updates  # noqa: F401
