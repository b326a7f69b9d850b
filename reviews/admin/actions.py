"""Action items in the admin: their list (what is overdue, whose, of which service), add and
change pages written through ``reviews.services.actions``, a status form per item (for its
owner too), a panel on the incident page listing the incident's items with a form to add one,
and "My action items" on the admin index."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.admin.extensions import admin_index_panel_register, incident_page_panel_register
from incidents.errors import VigilError
from incidents.models import Incident, Service, Source

from ..models import ActionItem, ActionKind, ActionPriority, ActionStatus, ReviewStatus
from ..services.actions import (
    ACTIVE,
    CONTENT_FIELDS,
    PERM_ADD,
    PERM_VIEW,
    action_item_can_set_status,
    action_item_create,
    action_item_delete,
    action_item_set_status,
    action_item_update,
    action_items_annotated,
    action_today,
    overdue_q,
)

INDEX_LIMIT = 20


def _update(*, action_item: ActionItem, actor: Any, source: str, **changes: Any) -> ActionItem:
    """The change page's save: field edits, then the status (its own service and rules)."""
    status = changes.pop("status", None)
    reason = changes.pop("wont_do_reason", None)
    item = action_item
    if changes:
        item = action_item_update(item=item, actor=actor, source=source, **changes)
    if status is not None or (reason is not None and item.status == ActionStatus.WONT_DO):
        item = action_item_set_status(
            item=item,
            actor=actor,
            source=source,
            status=status or item.status,
            reason=reason if reason is not None else item.wont_do_reason,
        )
    return item


def _create(*, actor: Any, source: str, **fields: Any) -> ActionItem:
    return action_item_create(actor=actor, source=source, **fields)


def _delete(*, action_item: ActionItem, actor: Any, source: str) -> None:
    action_item_delete(item=action_item, actor=actor, source=source)


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue"), ("no", "Not overdue")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(overdue_q())
        if self.value() == "no":
            return queryset.exclude(overdue_q())
        return queryset


class ServiceFilter(admin.SimpleListFilter):
    title = "service"
    parameter_name = "service"

    def lookups(self, request, model_admin):
        return [
            (str(s.pk), s.name)
            for s in Service.objects.filter(incidents__action_items__isnull=False)
            .distinct()
            .order_by("name")
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(incident__services=int(value)).distinct()
        return queryset


class ActionItemForm(forms.ModelForm):
    tracker_url = forms.URLField(
        label="Tracker link",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Jira or GitHub issue (http or https).",
    )

    class Meta:
        model = ActionItem
        fields = [
            "incident",
            "kind",
            "title",
            "description",
            "owner",
            "due_date",
            "priority",
            "tracker_url",
            "status",
            "wont_do_reason",
        ]
        widgets = {"due_date": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "owner" in self.fields:
            self.fields["owner"].queryset = get_user_model().objects.filter(is_active=True)
        if "wont_do_reason" in self.fields:
            self.fields["wont_do_reason"].help_text = 'Needed for "won\'t do".'


@admin.register(ActionItem)
class ActionItemAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="action_item", create=_create, update=_update, delete=_delete
    )
    form = ActionItemForm
    list_display = (
        "title",
        "incident_link",
        "kind",
        "owner",
        "due_date",
        "priority",
        "status",
        "overdue",
        "tracker",
    )
    list_filter = (
        ("owner", admin.RelatedOnlyFieldListFilter),
        "status",
        "kind",
        OverdueFilter,
        ServiceFilter,
        "priority",
    )
    search_fields = ("title", "description", "incident__number", "incident__title")
    list_select_related = ("incident", "owner")
    raw_id_fields = ("incident",)
    date_hierarchy = "due_date"
    ordering = ("due_date", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return action_items_annotated(super().get_queryset(request))

    def get_fields(self, request: HttpRequest, obj: ActionItem | None = None) -> list[str]:
        fields = list(ActionItemForm.Meta.fields)
        if obj is None:
            fields = [f for f in fields if f not in ("status", "wont_do_reason")]
        else:
            fields += ["review", "completed_at", "reminders_sent", "next_reminder_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: ActionItem | None = None):
        if obj is None:
            return ()
        readonly = ["incident", "review", "completed_at", "reminders_sent", "next_reminder_at"]
        if obj.review is not None and obj.review.status == ReviewStatus.PUBLISHED:
            readonly += list(CONTENT_FIELDS)
        return readonly

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("owner", request.user.pk)
        return initial

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, item: ActionItem) -> Any:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:incidents_incident_change", args=[item.incident_id]),
            item.incident.number,
        )

    @admin.display(description="Overdue", boolean=True, ordering="is_overdue")
    def overdue(self, item: ActionItem) -> bool:
        return bool(getattr(item, "is_overdue", False))

    @admin.display(description="Tracker")
    def tracker(self, item: ActionItem) -> Any:
        if not item.tracker_url:
            return "—"
        return format_html(
            '<a href="{}" rel="noopener noreferrer" target="_blank">link</a>', item.tracker_url
        )

    # -- the status form and the incident page's add form --------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/status/",
                wrap(self.status_view),
                name="reviews_actionitem_status",
            ),
            path(
                "incident/<int:incident_id>/add/",
                wrap(self.add_for_incident_view),
                name="reviews_actionitem_add_for_incident",
            ),
            *super().get_urls(),
        ]

    def _back(self, request: HttpRequest, default: str) -> HttpResponseRedirect:
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = default
        return HttpResponseRedirect(back)

    def status_view(self, request: HttpRequest, object_id: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        item = ActionItem.objects.select_related("incident").filter(pk=_pk(object_id)).first()
        if item is None or not request.user.has_perm(PERM_VIEW):
            raise Http404
        status = request.POST.get("status", "")
        try:
            action_item_set_status(
                item=item,
                actor=request.user,
                source=Source.ADMIN,
                status=status,
                reason=request.POST.get("reason", ""),
            )
        except VigilError as error:
            self.message_user(request, f"Not changed: {error.message}", messages.ERROR)
        else:
            label = dict(ActionStatus.choices).get(status, status)
            self.message_user(request, f"“{item.title}” is now {label.lower()}.", messages.SUCCESS)
        return self._back(request, reverse("admin:reviews_actionitem_change", args=[item.pk]))

    def add_for_incident_view(self, request: HttpRequest, incident_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = Incident.objects.filter(pk=incident_id).first()
        if incident is None:
            raise Http404
        back = reverse("admin:incidents_incident_change", args=[incident.pk]) + (
            "#panel-action-items"
        )
        data = request.POST
        try:
            due = date.fromisoformat(data.get("due_date", ""))
        except ValueError:
            self.message_user(
                request, "Not added: give the due date as YYYY-MM-DD.", messages.ERROR
            )
            return HttpResponseRedirect(back)
        try:
            item = action_item_create(
                incident=incident,
                actor=request.user,
                source=Source.ADMIN,
                kind=data.get("kind", ""),
                title=data.get("title", ""),
                description=data.get("description", ""),
                owner=data.get("owner", ""),
                due_date=due,
                priority=data.get("priority", ActionPriority.MEDIUM),
                tracker_url=data.get("tracker_url", ""),
            )
        except VigilError as error:
            self.message_user(request, f"Not added: {error.message}", messages.ERROR)
        else:
            self.message_user(request, f"Action item “{item.title}” added.", messages.SUCCESS)
        return HttpResponseRedirect(back)


def _pk(object_id: str) -> int:
    value = unquote(object_id)
    return int(value) if value.isdigit() else 0


# --- panels ------------------------------------------------------------------------------------

STATUS_BUTTONS = {
    ActionStatus.OPEN: [("in_progress", "Start"), ("done", "Done")],
    ActionStatus.IN_PROGRESS: [("done", "Done")],
    ActionStatus.DONE: [("open", "Reopen")],
    ActionStatus.WONT_DO: [("open", "Reopen")],
}


def _rows(request: HttpRequest, items: list[ActionItem]) -> list[dict[str, Any]]:
    today = action_today()
    rows = []
    for item in items:
        may = action_item_can_set_status(actor=request.user, item=item)
        rows.append(
            {
                "item": item,
                "url": reverse("admin:reviews_actionitem_change", args=[item.pk]),
                "status_url": reverse("admin:reviews_actionitem_status", args=[item.pk]),
                "overdue": item.status in ACTIVE and item.due_date < today,
                "buttons": STATUS_BUTTONS[item.status] if may else [],
                "wont_do": may and item.status in ACTIVE,
            }
        )
    return rows


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    items = list(
        ActionItem.objects.filter(incident=incident)
        .select_related("owner", "review")
        .order_by("due_date", "pk")
    )
    can_add = request.user.has_perm(PERM_ADD) and incident.status != "cancelled"
    html = render_to_string(
        "admin/reviews/actionitem/incident_panel.html",
        {
            "rows": _rows(request, items),
            "incident": incident,
            "next": reverse("admin:incidents_incident_change", args=[incident.pk])
            + "#panel-action-items",
            "can_add": can_add,
            "add_url": reverse("admin:reviews_actionitem_add_for_incident", args=[incident.pk]),
            "kinds": ActionKind.choices,
            "priorities": ActionPriority.choices,
            "owners": get_user_model().objects.filter(is_active=True).order_by("username")
            if can_add
            else [],
            "today": action_today(),
        },
        request=request,
    )
    return mark_safe(html)  # rendered by the template engine, which escapes every value


def index_panel(*, request: HttpRequest) -> Any:
    mine = action_items_annotated(
        ActionItem.objects.filter(owner=request.user, status__in=ACTIVE).select_related("incident")
    ).order_by("-is_overdue", "due_date", "pk")
    items = list(mine[: INDEX_LIMIT + 1])
    if not items:
        return None
    more = len(items) > INDEX_LIMIT
    items = items[:INDEX_LIMIT]
    html = render_to_string(
        "admin/reviews/actionitem/index_panel.html",
        {
            "rows": _rows(request, items),
            "more": more,
            "all_url": reverse("admin:reviews_actionitem_changelist")
            + f"?owner__id__exact={request.user.pk}",
            "next": reverse("admin:index"),
        },
        request=request,
    )
    return mark_safe(html)  # rendered by the template engine, which escapes every value


incident_page_panel_register(
    key="action-items", title="Action items", render=incident_panel, permission=PERM_VIEW
)
admin_index_panel_register(
    key="my-action-items", title="My action items", render=index_panel, permission=PERM_VIEW
)
