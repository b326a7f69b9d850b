"""Extension points of the incident page: what the apps above the core may add to it.

The incident core imports none of the apps that follow an incident, so an app that has
something to show on the incident page (escalation: its state, events and notifications)
registers it here, from its own admin module, and the incident admin reads this registry
each time it builds the page. No app edits ``IncidentAdmin`` or the admin site's registry.

Two kinds of additions:

* an inline (:func:`incident_page_inline_register`): a Django inline of a model with a
  foreign key to :class:`~incidents.models.Incident`, shown below the incident's details on
  the change page (never on the add page: a new incident has nothing to show yet). The
  incident admin saves through the services and never writes inline formsets, so inlines
  registered here should be read-only.
* a panel (:func:`incident_page_panel_register`): a titled block of HTML shown in the
  workspace, after the timeline, for users who hold its permission. A short panel may ask for
  ``placement="side"``: beside the timeline on a wide screen (after it on a phone).
* a header fact (:func:`incident_header_fact_register`): a short labelled fact in the incident
  page's sticky header (escalation: who is called next, when and how), refreshed with it.

Both are shown in the order they were registered; registering the same one twice is a no-op.

And one addition to the admin index (the staff's workspace page):

* an index panel (:func:`admin_index_panel_register`): a titled block of HTML shown on the admin
  index, for users who hold its permission; its ``render(request=...)`` may return None to show
  nothing (nothing needs anyone now). In the ``"workspace"`` area (the default) it follows the
  "What needs you now" dashboard; in the ``"now"`` area it is part of that dashboard and is
  refreshed with it every few seconds (who is on call now).
* a due-from-user provider (:func:`admin_due_provider_register`): what a user owes now
  (status updates, reviews, action items), as :class:`DueItem` rows merged by due time into
  the dashboard's ranked list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.contrib.admin.options import InlineModelAdmin
from django.http import HttpRequest
from django.utils.html import format_html

from ..models import Incident

logger = logging.getLogger(__name__)

PanelRender = Callable[..., Any]


@dataclass(frozen=True)
class IncidentPanel:
    """A block of the incident page. ``render(request=..., incident=...)`` returns its HTML
    (mark it safe, e.g. with ``format_html``; a plain string is escaped)."""

    key: str
    title: str
    render: PanelRender
    permission: str | None = None
    placement: str = "main"


PLACEMENTS = ("main", "side")

_inlines: list[type[InlineModelAdmin]] = []
_panels: dict[str, IncidentPanel] = {}


def incident_page_inline_register(inline: type[InlineModelAdmin]) -> type[InlineModelAdmin]:
    """Show ``inline`` on the incident change page, after those registered before it.

    Idempotent. Returns the class, so it can be used as a class decorator.
    """
    if inline not in _inlines:
        _inlines.append(inline)
    return inline


def incident_page_inline_unregister(inline: type[InlineModelAdmin]) -> None:
    """Take ``inline`` off the incident page again (no-op when it is not there)."""
    if inline in _inlines:
        _inlines.remove(inline)


def incident_page_inlines() -> list[type[InlineModelAdmin]]:
    """The registered inlines, in registration order."""
    return list(_inlines)


def incident_page_panel_register(
    *,
    key: str,
    title: str,
    render: PanelRender,
    permission: str | None = None,
    placement: str = "main",
) -> IncidentPanel:
    """Show a panel titled ``title`` on the incident change page.

    ``key`` names the panel (its HTML id is ``panel-<key>``); registering a key again replaces
    the panel in place. ``permission`` ("app_label.codename"), when given, is the one a user
    needs to see it. ``placement`` is "main" (after the timeline, full width) or "side"
    (beside the timeline on a wide screen, with the response roles). A panel whose ``render``
    raises is shown as unavailable and the error logged: an app's bug must not take the
    incident page down with it.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, not {placement!r}.")
    panel = IncidentPanel(
        key=key, title=title, render=render, permission=permission, placement=placement
    )
    _panels[key] = panel
    return panel


def incident_page_panel_unregister(*, key: str) -> None:
    """Take the panel ``key`` off the incident page again (no-op when it is not there)."""
    _panels.pop(key, None)


def incident_page_panels(*, request: HttpRequest, incident: Incident) -> list[dict[str, Any]]:
    """The panels ``request.user`` may see, rendered for ``incident``, in registration order."""
    shown = []
    for panel in _panels.values():
        if panel.permission and not request.user.has_perm(panel.permission):
            continue
        try:
            html = panel.render(request=request, incident=incident)
        except Exception:
            logger.exception("Incident page panel %r failed for %s", panel.key, incident.number)
            html = format_html('<p class="vigil-muted">{}</p>', "This panel is unavailable.")
        shown.append(
            {"key": panel.key, "title": panel.title, "html": html, "placement": panel.placement}
        )
    return shown


# --- the incident page's header -----------------------------------------------------------------


@dataclass(frozen=True)
class HeaderFact:
    """What a header fact shows: ``label`` ("Next escalation") and ``text`` (plain, escaped),
    with ``title`` for the tooltip and ``state`` for the CSS class (``vigil-fact-<state>``:
    "warning", "breached", "none" or "")."""

    label: str
    text: str
    title: str = ""
    state: str = ""


@dataclass(frozen=True)
class HeaderFactProvider:
    """``render(request=..., incident=...)`` returns a :class:`HeaderFact` or None."""

    key: str
    render: PanelRender
    permission: str | None = None


_header_facts: dict[str, HeaderFactProvider] = {}


def incident_header_fact_register(
    *, key: str, render: PanelRender, permission: str | None = None
) -> HeaderFactProvider:
    """Show a fact in the incident page's sticky header, after the core's own (ID, severity,
    status, priority, incident manager, SLA clock).

    ``render(request=..., incident=...)`` returns a :class:`HeaderFact`, or None to show
    nothing. It runs on every refresh of the header (every few seconds while the page is
    open), so it should cost a fixed, small number of queries. Registering ``key`` again
    replaces the provider in place; ``permission``, when given, is the one a user needs to see
    it. A provider that raises is logged and left out.
    """
    provider = HeaderFactProvider(key=key, render=render, permission=permission)
    _header_facts[key] = provider
    return provider


def incident_header_fact_unregister(*, key: str) -> None:
    """Take the header fact ``key`` off the incident page (no-op when it is not there)."""
    _header_facts.pop(key, None)


def incident_header_facts(*, request: HttpRequest, incident: Incident) -> list[dict[str, Any]]:
    """The header facts ``request.user`` may see that have something to show, in
    registration order."""
    shown = []
    for provider in _header_facts.values():
        if provider.permission and not request.user.has_perm(provider.permission):
            continue
        try:
            fact = provider.render(request=request, incident=incident)
        except Exception:
            logger.exception("Incident header fact %r failed for %s", provider.key, incident.number)
            continue
        if fact is None:
            continue
        shown.append({"key": provider.key, "fact": fact})
    return shown


# --- the admin index ----------------------------------------------------------------------------


INDEX_AREAS = ("workspace", "now")


@dataclass(frozen=True)
class IndexPanel:
    """A block of the admin index. ``render(request=...)`` returns its HTML (marked safe; a
    plain string is escaped), or None when it has nothing to show. ``area`` is where it goes:
    ``"workspace"`` (after the dashboard) or ``"now"`` (inside the live dashboard)."""

    key: str
    title: str
    render: PanelRender
    permission: str | None = None
    area: str = "workspace"


_index_panels: dict[str, IndexPanel] = {}


def admin_index_panel_register(
    *,
    key: str,
    title: str,
    render: PanelRender,
    permission: str | None = None,
    area: str = "workspace",
) -> IndexPanel:
    """Show a panel titled ``title`` on the admin index.

    ``key`` names the panel (its HTML id is ``index-panel-<key>``); registering a key again
    replaces the panel in place. ``permission`` ("app_label.codename"), when given, is the one
    a user needs to see it. A panel whose ``render`` raises is shown as unavailable and the
    error logged: an app's bug must not take the admin index down with it. ``area`` is one of
    ``INDEX_AREAS``; a ``"now"`` panel is rendered again at each refresh of the dashboard, so it
    should cost a fixed, small number of queries.
    """
    if area not in INDEX_AREAS:
        raise ValueError(f"Unknown index area {area!r}: one of {', '.join(INDEX_AREAS)}.")
    panel = IndexPanel(key=key, title=title, render=render, permission=permission, area=area)
    _index_panels[key] = panel
    return panel


def admin_index_panel_unregister(*, key: str) -> None:
    """Take the index panel ``key`` off the admin index (no-op when it is not there)."""
    _index_panels.pop(key, None)


def admin_index_panels(*, request: HttpRequest, area: str = "workspace") -> list[dict[str, Any]]:
    """The index panels of ``area`` that ``request.user`` may see and that have something to
    show, rendered, in registration order."""
    shown = []
    for panel in _index_panels.values():
        if panel.area != area:
            continue
        if panel.permission and not request.user.has_perm(panel.permission):
            continue
        try:
            html = panel.render(request=request)
        except Exception:
            logger.exception("Admin index panel %r failed", panel.key)
            html = format_html('<p class="vigil-muted">{}</p>', "This panel is unavailable.")
        if html is None:
            continue
        shown.append({"key": panel.key, "title": panel.title, "html": html})
    return shown


# --- what is due from a user ------------------------------------------------------------------


@dataclass(frozen=True)
class DueItem:
    """One thing a user owes, for the dashboard's ranked list: ``title`` says what (e.g. "Status
    update for the executive team"), ``url`` where to do it, ``due_at`` by when (aware).
    ``key`` is unique among the provider's rows and stable across refreshes (a row new since
    the last refresh is highlighted). ``incident_number`` and ``severity`` (a level) place it
    next to its incident when there is one; ``kind`` is a short label ("Status update",
    "Review", "Action item")."""

    key: str
    kind: str
    title: str
    url: str
    due_at: Any
    incident_number: str = ""
    severity: int | None = None


DueProvide = Callable[..., list[DueItem]]


@dataclass(frozen=True)
class DueProvider:
    """``provide(user=..., now=...)`` returns what ``user`` owes, in a fixed number of
    queries whatever their number."""

    key: str
    provide: DueProvide
    permission: str | None = None


_due_providers: dict[str, DueProvider] = {}


def admin_due_provider_register(
    *, key: str, provide: DueProvide, permission: str | None = None
) -> DueProvider:
    """Add what ``provide(user=..., now=...)`` returns to the "due from you" rows of the admin
    index's dashboard, for users holding ``permission`` ("app_label.codename") when given.

    Registering a key again replaces the provider (``AppConfig.ready()`` may run twice). A
    provider that raises is left out and the error logged; the dashboard says a source is
    unavailable rather than failing.
    """
    provider = DueProvider(key=key, provide=provide, permission=permission)
    _due_providers[key] = provider
    return provider


def admin_due_provider_unregister(*, key: str) -> None:
    """Remove the provider ``key`` (no-op when it is not there)."""
    _due_providers.pop(key, None)


@dataclass(frozen=True)
class DueFromUser:
    items: list[DueItem]
    unavailable: list[str]


def admin_due_items(*, request: HttpRequest, now: Any) -> DueFromUser:
    """Everything due from ``request.user`` that the providers they may see return, soonest
    due first; and the keys of the providers that failed."""
    items: list[DueItem] = []
    unavailable: list[str] = []
    for provider in _due_providers.values():
        if provider.permission and not request.user.has_perm(provider.permission):
            continue
        try:
            rows = provider.provide(user=request.user, now=now)
        except Exception:
            logger.exception("Due-from-user provider %r failed", provider.key)
            unavailable.append(provider.key)
            continue
        items.extend(replace(row, key=f"{provider.key}-{row.key}") for row in rows)
    items.sort(key=lambda item: (item.due_at, item.key))
    return DueFromUser(items=items, unavailable=unavailable)
