"""The admin of public communication: one module per concern, each imported here so Django's
admin autodiscovery registers it."""

from . import messages  # noqa: F401

from . import catalog, clock, customers, policy, social, updates  # noqa: F401
from . import subscribers  # noqa: F401
from .stakeholders import StakeholderGroupAdmin  # noqa: F401
