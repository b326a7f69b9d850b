"""The admin of post-incident reviews: one module per concern, each imported here so Django's
admin autodiscovery registers it."""
from . import documentation  # noqa: F401
from . import actions  # noqa: F401
from . import booking  # noqa: F401
from . import reviews  # noqa: F401
from . import knowledge  # noqa: F401
