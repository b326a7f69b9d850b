"""The admin of KPIs and reports: one module per concern, each imported here (one per line) so
Django's admin autodiscovery registers it."""

from . import (
    policy,  # noqa: F401
    reports,  # noqa: F401
    survey,  # noqa: F401
)
