"""Markdown written by staff for the public (status updates, maintenance notices) as safe HTML.

The renderer and its sanitizer live in the incident core (:mod:`incidents.markdown`), shared
with the other apps that show staff-written Markdown (post-incident reviews); this module keeps
the names communications has always used.
"""

from __future__ import annotations

from incidents.markdown import ATTRIBUTES, TAGS, URL_SCHEMES, markdown_to_html, markdown_to_text

__all__ = ["ATTRIBUTES", "TAGS", "URL_SCHEMES", "markdown_to_html", "markdown_to_text"]
