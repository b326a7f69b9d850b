"""Extension points of the incident report (§6.2): what the apps above the core add to it.

The incident core imports none of the apps that follow an incident, yet the report's
"FOLLOW-UP ACTIONS" come from post-incident reviews, and a published review belongs in the
report. So an app registers providers here (at start, from its own modules) and the report
(:func:`incidents.selectors.incident_report`, hence its admin page, its Markdown download and
anything rendered from the same template) asks them each time it is built:

* follow-up actions (:func:`report_follow_ups_register`): ``provide(incident=...)`` returns an
  iterable of :class:`FollowUpAction` (title, owner, due date, status, optional link). The
  report escapes every value itself (HTML autoescaping; the Markdown filters of
  ``incidents.templatetags.markdown_text``), so providers hand over plain text.
* sections (:func:`report_section_register`): ``render(incident=...)`` returns a
  :class:`ReportSection` (a heading, its HTML and its Markdown) or None when it has nothing to
  add. The HTML is cleaned again by the core's sanitizer (:func:`incidents.markdown.html_clean`)
  before it is shown. The Markdown is printed as given: the provider escapes the text people
  typed (``md_inline`` / ``md_block``), so no raw HTML, link or heading of theirs gets through.

Providers run in registration order; registering the same key again replaces it in place. One
that raises is logged and shown as unavailable: an app's bug never takes the report down, and
never makes it say "None recorded." when it does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from .markdown import html_clean

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowUpAction:
    """One follow-up action of an incident as the report lists it (plain text values)."""

    title: str
    owner: str
    due: date | None
    status: str
    url: str = ""


@dataclass(frozen=True)
class ReportSection:
    """A section the report prints after its own ones. ``html`` is sanitized again by the
    core; ``markdown`` is the section's body, with what people typed already escaped."""

    title: str
    html: str
    markdown: str
    key: str = ""


@dataclass(frozen=True)
class FollowUps:
    """What the report shows under FOLLOW-UP ACTIONS: the actions of every provider, and
    whether one of them failed (then the list may be incomplete)."""

    actions: list[FollowUpAction] = field(default_factory=list)
    unavailable: bool = False


FollowUpProvider = Callable[..., Iterable[FollowUpAction]]
SectionRender = Callable[..., ReportSection | None]

_follow_up_providers: dict[str, FollowUpProvider] = {}
_section_renders: dict[str, SectionRender] = {}


def report_follow_ups_register(*, key: str, provide: FollowUpProvider) -> FollowUpProvider:
    """List the follow-up actions ``provide(incident=...)`` returns in every incident report.

    ``key`` names the provider; registering a key again replaces it in place. Idempotent.
    """
    _follow_up_providers[key] = provide
    return provide


def report_follow_ups_unregister(*, key: str) -> None:
    """Take the provider ``key`` out of the report again (no-op when it is not there)."""
    _follow_up_providers.pop(key, None)


def report_section_register(*, key: str, render: SectionRender) -> SectionRender:
    """Add the section ``render(incident=...)`` returns (or nothing, when it returns None) to
    every incident report, after the core's sections, in registration order.

    ``key`` names the section (its HTML id is ``report-<key>``); registering a key again
    replaces it in place. Idempotent.
    """
    _section_renders[key] = render
    return render


def report_section_unregister(*, key: str) -> None:
    """Take the section ``key`` out of the report again (no-op when it is not there)."""
    _section_renders.pop(key, None)


def report_follow_ups(*, incident: Any) -> FollowUps:
    """The follow-up actions of ``incident`` from every provider, in registration order."""
    actions: list[FollowUpAction] = []
    unavailable = False
    for key, provide in list(_follow_up_providers.items()):
        try:
            actions.extend(provide(incident=incident))
        except Exception:
            logger.exception("Report follow-up provider %r failed for %s", key, incident.number)
            unavailable = True
    return FollowUps(actions=actions, unavailable=unavailable)


def report_sections(*, incident: Any) -> list[dict[str, Any]]:
    """The extra sections of ``incident``'s report: ``{"key", "title", "html", "markdown"}``
    each, the HTML sanitized and marked safe, in registration order."""
    shown: list[dict[str, Any]] = []
    for key, render in list(_section_renders.items()):
        try:
            section = render(incident=incident)
        except Exception:
            logger.exception("Report section %r failed for %s", key, incident.number)
            shown.append(
                {
                    "key": key,
                    "title": key.replace("-", " ").replace("_", " ").upper(),
                    "html": SafeString('<p class="vigil-missing">This section is unavailable.</p>'),
                    "markdown": "This section is unavailable.",
                }
            )
            continue
        if section is None:
            continue
        shown.append(
            {
                "key": key,
                "title": section.title,
                "html": mark_safe(html_clean(section.html)),
                "markdown": section.markdown.strip(),
            }
        )
    return shown


__all__ = [
    "FollowUpAction",
    "FollowUps",
    "ReportSection",
    "report_follow_ups",
    "report_follow_ups_register",
    "report_follow_ups_unregister",
    "report_section_register",
    "report_section_unregister",
    "report_sections",
]
