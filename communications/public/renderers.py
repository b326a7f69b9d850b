"""Imports the modules whose renderers make up the public status site (each registers its own
with :func:`communications.public.site.renderer`)."""

from .api_v2 import render_api_v2  # noqa: F401
from .badge import render_badges  # noqa: F401
from .feeds import render_feeds  # noqa: F401
from .html import status_pages  # noqa: F401
