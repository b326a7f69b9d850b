"""The incident list's rows: the query, order and search behind them, their columns, and the
list actions on the selected incidents (one service call each, with ``source="admin"``)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from ..errors import VigilError
from ..models import Incident, Source
from ..selectors import incident_list, incident_manager_of, incident_search
from ..services import incident_transition
from ..services.lifecycle import action_permission
from . import display as ui
from .filters import StatusFilter, search_widens_status
from .incident_list import IncidentChangeList, NullsLast, live_list_response
from .workspace_actions import ACTION_DONE, ACTION_LABELS, error_text


class IncidentRowsMixin:
    """The list side of ``IncidentAdmin`` (its columns are named in ``list_display``)."""

    # --- list -----------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Incident]:
        queryset = incident_list(with_next_due=True)
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # Among active incidents the most severe come first; across all of them, the newest
        # (that order has its index, so "All" stays fast at any size).
        status = request.GET.get(StatusFilter.parameter_name, StatusFilter.ACTIVE)
        if status == StatusFilter.ACTIVE and not search_widens_status(request.GET):
            return ["severity_id", "-detected_at"]
        return ["-detected_at"]

    def get_changelist(self, request: HttpRequest, **kwargs):
        return IncidentChangeList

    def changelist_view(self, request: HttpRequest, extra_context=None):
        response = super().changelist_view(request, extra_context)
        return live_list_response(request, response)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Incident], search_term: str
    ) -> tuple[QuerySet[Incident], bool]:
        # People are matched through a subquery, so no incident is listed twice.
        return incident_search(queryset=queryset, term=search_term), False

    def action_checkbox(self, obj: Incident) -> str:
        # Django renders this box through the form-widget templates, about a millisecond a
        # row; the same markup written here keeps a full page of incidents cheap.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" '
            'aria-label="Select this object for an action - {}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            obj,
        )

    @admin.display(description="Severity", ordering="severity_id")
    def severity_badge(self, obj: Incident) -> str:
        return ui.severity_badge(obj.severity)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Incident) -> str:
        return ui.status_badge(obj.status)

    @admin.display(description="Priority", ordering="priority")
    def priority_label(self, obj: Incident) -> str:
        return f"P{obj.priority}"

    @admin.display(description="Age", ordering="-detected_at")
    def age(self, obj: Incident) -> str:
        return ui.age_text(obj)

    # Sorted by the deadline the column counts down to; ended incidents (no deadline) last.
    @admin.display(description="SLA", ordering=NullsLast("next_due_at"))
    def sla(self, obj: Incident) -> str:
        return ui.sla_badge(obj, compact=True)

    @admin.display(description="Services")
    def service_names(self, obj: Incident) -> str:
        return ", ".join(service.name for service in obj.services.all()) or "–"

    @admin.display(description="Incident manager")
    def incident_manager(self, obj: Incident) -> str:
        return ui.person(incident_manager_of(obj))

    # --- list actions -----------------------------------------------------------------------------

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(action_permission("acknowledge"))

    def has_investigate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(action_permission("investigate"))

    def has_close_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(action_permission("close"))

    @admin.action(description="Acknowledge selected incidents", permissions=["acknowledge"])
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._bulk_transition(request, queryset, "acknowledge")

    @admin.action(
        description="Move selected incidents to investigating", permissions=["investigate"]
    )
    def investigate_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._bulk_transition(request, queryset, "investigate")

    @admin.action(description="Close selected incidents", permissions=["close"])
    def close_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._bulk_transition(request, queryset, "close")

    def _bulk_transition(self, request: HttpRequest, queryset: QuerySet[Incident], action: str):
        """Run one service call per incident, each in its own transaction, so one refusal
        does not undo the others; report what happened to each."""
        done, unchanged, failed = [], [], []
        for incident in queryset.prefetch_related(None).order_by("detected_at", "pk"):
            before = incident.status
            try:
                result = incident_transition(
                    incident=incident, action=action, actor=request.user, source=Source.ADMIN
                )
            except VigilError as exc:
                failed.append(f"{incident.number}: {error_text(exc)}")
                continue
            if result.status == before:
                unchanged.append(result.number)
            else:
                done.append(result.number)
                self.log_change(request, result, f"{ACTION_LABELS[action]} (list action)")
        parts = []
        if done:
            parts.append(f"{len(done)} {ACTION_DONE[action]}")
        if unchanged:
            parts.append(f"{len(unchanged)} already {ACTION_DONE[action]}")
        if failed:
            parts.append(f"{len(failed)} failed: " + " ".join(failed))
        level = messages.SUCCESS if not failed else messages.WARNING if done else messages.ERROR
        self.message_user(request, ", ".join(parts) + ("" if failed else "."), level)
