"""The admin of post-incident reviews: one module per concern, each imported here so Django's
admin autodiscovery registers it."""

from . import actions, booking, booking_actions, documentation, knowledge, reviews  # noqa: F401
