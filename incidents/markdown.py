"""Markdown written by staff (status updates, maintenance notices, post-incident reviews) as safe
HTML, for every app that shows it (communications, reviews).

markdown-it-py renders CommonMark with raw HTML disabled (``html: False``: tags are shown as
text), and nh3 (the Rust ``ammonia`` sanitizer) then keeps only an allowlist of tags and
attributes and only ``http``, ``https`` and ``mailto`` links, so raw HTML, scripts, event
handlers and ``javascript:`` links never reach a page, a feed or an email. Links open with
``rel="nofollow noopener noreferrer"``.
"""

from __future__ import annotations

import html

import nh3
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable("strikethrough")

TAGS = {
    "p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h3", "h4", "h5", "h6", "hr",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}


def markdown_to_html(text: str) -> str:
    """Safe HTML for ``text`` (Markdown). Headings 1-2 become level 3 (the page owns the top
    levels). Deterministic: the same text always gives the same HTML."""
    rendered = _markdown.render(text or "")
    rendered = rendered.replace("<h1>", "<h3>").replace("</h1>", "</h3>")
    rendered = rendered.replace("<h2>", "<h3>").replace("</h2>", "</h3>")
    return nh3.clean(
        rendered,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
    )


def markdown_to_text(text: str) -> str:
    """Plain text for feeds' summaries and emails: the safe HTML with its tags removed and
    its entities decoded (escape it again for any markup it goes into)."""
    return html.unescape(nh3.clean(markdown_to_html(text), tags=set())).strip()


# Blocks an app composes around rendered Markdown (a section of the incident report, say):
# the Markdown allowlist plus the few structural tags such blocks use, and classes for styling.
BLOCK_TAGS = TAGS | {
    "h2", "section", "div", "span", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
BLOCK_ATTRIBUTES = {**ATTRIBUTES, "*": {"class"}, "th": {"scope"}}


def html_clean(html_text: str) -> str:
    """``html_text`` (HTML an app built, e.g. a report section) with only :data:`BLOCK_TAGS`,
    their allowed attributes and ``http``/``https``/``mailto`` (or same-page) links kept."""
    return nh3.clean(
        html_text or "",
        tags=BLOCK_TAGS,
        attributes=BLOCK_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
    )
