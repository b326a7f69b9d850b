"""Text people and senders supply, made safe to put in a Markdown document.

A title, a name, a note or a report field must show in a Markdown viewer as the text it is:
never as HTML (``<script>``, ``<img onerror=…>``, comments, entities), a heading, a link or
image, a table, a list, a quote, a rule, a code block or emphasis, whatever it contains. The
escaping follows CommonMark, where a backslash before any ASCII punctuation character makes it
literal, with HTML entities for ``<``, ``>`` and ``&`` (they work in every Markdown dialect,
Markdown.pl's and Python-Markdown's included):

* everywhere: ``\\ ` * _ [ ] { } | ~ # $`` get a backslash (emphasis, code, links and images,
  attribute lists, tables, strikethrough and fences, headings, math); ``< > &`` become
  ``&lt; &gt; &amp;`` (HTML, autolinks, entities, quotes);
* at the start of a line, after its indentation is removed (an indented line would be code):
  ``-``, ``+`` and ``=`` (list items, rules, setext headings) and the ``.`` or ``)`` of an
  ordered list marker (``1.``) get a backslash.

Plain prose stays as typed (``Rolled back release 42.``). Bare URLs are left alone: viewers
that turn them into links (GitHub's) show the address itself as the link's text.

Three forms, by where the value goes: :func:`md_inline` (a line: headings, list items; line
breaks become spaces), :func:`md_block` (paragraphs: line breaks and blank lines kept) and
:func:`md_list_item` (paragraphs inside a ``- `` list item: continuation lines indented).
"""

from __future__ import annotations

import re

from django import template

register = template.Library()

_ANYWHERE = re.compile(r"([\\`*_\[\]{}|~#$])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_HTML = re.compile(r"[&<>]")
_LINE_START = re.compile(r"^(?:([-+=])|([0-9]{1,9})([.)]))")


def _escape_line(line: str) -> str:
    line = line.strip()
    line = _ANYWHERE.sub(r"\\\1", line)
    line = _HTML.sub(lambda match: _ENTITIES[match.group()], line)
    return _LINE_START.sub(
        lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), line
    )


def _text(value: object) -> str:
    return "" if value is None else str(value)


@register.filter
def md_inline(value: object) -> str:
    """One line of Markdown text showing ``value`` as typed; line breaks become spaces."""
    return _escape_line(" ".join(_text(value).split()))


@register.filter
def md_block(value: object) -> str:
    """Markdown paragraphs showing ``value`` as typed: its lines and blank lines kept."""
    lines = [_escape_line(line) for line in _text(value).strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


@register.filter
def md_list_item(value: object) -> str:
    """:func:`md_block` for the text of a ``- `` list item: lines after the first are
    indented to stay inside it."""
    return "\n  ".join(md_block(value).split("\n")).replace("\n  \n", "\n\n")
