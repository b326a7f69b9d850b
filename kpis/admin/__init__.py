"""The admin of KPIs and reports: one module per concern, each imported here (one per line) so
Django's admin autodiscovery registers it."""

from . import survey  # noqa: F401
from . import policy  # noqa: F401
