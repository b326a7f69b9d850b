"""Imports the modules whose renderers make up the public status site (each registers its own
with :func:`communications.public.site.renderer`)."""

from . import api_v2  # noqa: F401
