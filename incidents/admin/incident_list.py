"""The incident list's page around its rows: the note that a search looked at every status,
the quick links (active, all statuses, mine), and the live fragment htmx polls for."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.views.main import ChangeList
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import patch_vary_headers

from .filters import MineFilter, StatusFilter, search_widens_status

# What htmx asks for every few seconds: the rows alone (the same query, filters, search,
# sort and page as the page around them).
LIVE_TEMPLATE = "admin/incidents/incident/change_list_live.html"
# How often an open list asks for its rows again.
LIVE_SECONDS = 5


class NullsLast(F):
    """A column's sort that keeps rows without a value at the end both ways (the admin
    reverses an ``OrderBy``'s nulls along with its direction)."""

    def asc(self, **kwargs):
        return super().asc(nulls_last=True)

    def desc(self, **kwargs):
        return super().desc(nulls_last=True)


@dataclass(frozen=True)
class QuickLink:
    label: str
    url: str
    selected: bool


class IncidentChangeList(ChangeList):
    @property
    def search_widened(self) -> bool:
        """A search with no status chosen, which looked at every status."""
        return search_widens_status(self.params)

    @property
    def status_shown(self) -> str:
        for spec in self.filter_specs:
            if isinstance(spec, StatusFilter):
                return spec.value()
        return StatusFilter.ACTIVE

    @property
    def quick_links(self) -> list[QuickLink]:
        """Active, all statuses and mine, one tap away above the list (the sidebar's filters
        are collapsed on a phone). Each keeps the search and the other filters."""
        status = self.status_shown
        mine = self.params.get(MineFilter.parameter_name) == MineFilter.YES
        active = (
            self.get_query_string({StatusFilter.parameter_name: StatusFilter.ACTIVE})
            if self.query
            else self.get_query_string(remove=[StatusFilter.parameter_name])
        )
        return [
            QuickLink("Active", active, status == StatusFilter.ACTIVE),
            QuickLink(
                "All statuses",
                self.get_query_string({StatusFilter.parameter_name: StatusFilter.ALL}),
                status == StatusFilter.ALL,
            ),
            QuickLink(
                "Mine",
                self.get_query_string(remove=[MineFilter.parameter_name])
                if mine
                else self.get_query_string({MineFilter.parameter_name: MineFilter.YES}),
                mine,
            ),
        ]

    @property
    def show_all_url(self) -> str:
        """Where "Show all" beside the result count leads: every incident, whatever its
        status (the admin's own link goes back to the default view, active incidents only)."""
        popup = f"{IS_POPUP_VAR}=1&" if self.is_popup else ""
        return f"?{popup}{StatusFilter.parameter_name}={StatusFilter.ALL}"

    @property
    def shows_everything(self) -> bool:
        """No search and no filter narrows the list: "Show all" would lead here again."""
        others = set(self.filter_params) - {StatusFilter.parameter_name}
        return not self.query and self.status_shown == StatusFilter.ALL and not others

    @property
    def live_seconds(self) -> int:
        return LIVE_SECONDS


def live_list_response(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """The list page, or for htmx's poll only its rows. The two differ by the HX-Request
    header, so caches (and the browser's back button) must keep them apart."""
    htmx = getattr(request, "htmx", None)
    if (
        htmx
        and not htmx.history_restore_request
        and isinstance(response, TemplateResponse)
        and not response.is_rendered
        and "cl" in (response.context_data or {})
    ):
        response.template_name = LIVE_TEMPLATE
    patch_vary_headers(response, ("HX-Request",))
    return response
