"""The admin of public communication: one module per concern, each imported here so Django's
admin autodiscovery registers it."""

from . import catalog, clock, customers, policy, updates  # noqa: F401
from . import social  # noqa: F401
