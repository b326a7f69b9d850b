"""The admin of public communication: one module per concern, each imported here so Django's
admin autodiscovery registers it."""

from . import (  # noqa: F401
    catalog,
    clock,
    customers,
    messages,
    policy,
    social,
    subscribers,
    updates,
)
from .stakeholders import StakeholderGroupAdmin  # noqa: F401
