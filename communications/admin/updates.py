"""Status updates in the admin: drafted and edited through the update services, approved and
published with buttons on the update's page (and actions on the list) that call the workflow
services, read-only once published. The form shows the public rendering of the body (the
sanitized HTML, refreshed as one types through a small preview endpoint). The incident page
lists the incident's updates with a link to post one, through the core's extension point."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.admin.extensions import incident_page_panel_register
from incidents.errors import VigilError
from incidents.models import Incident, Source
from incidents.timeformat import when

from ..markdown import markdown_to_html
from ..models import (
    Component,
    ComponentStatus,
    StatusUpdate,
    UpdateState,
)
from ..selectors import delivery_counts
from ..services.updates import (
    BODY_MAX,
    TITLE_PROMPT,
    needs_approval,
    status_update_approve,
    status_update_create,
    status_update_edit,
    status_update_publish,
)
from .messages import deliveries_html

COMPONENT_PREFIX = "component_"
STATE_CSS = {
    UpdateState.DRAFT: "vigil-clock-warning",
    UpdateState.APPROVED: "vigil-clock-none",
    UpdateState.PUBLISHED: "vigil-clock-met",
}
STEPS = {
    "approve": (status_update_approve, "approved"),
    "publish": (status_update_publish, "published"),
}


def public_components() -> QuerySet[Component]:
    return (
        Component.objects.select_related("service", "group")
        .filter(service__is_active=True)
        .exclude(service__public_name="")
    )


def state_badge(update: StatusUpdate) -> str:
    return format_html(
        '<strong class="{}">{}</strong>',
        STATE_CSS.get(update.state, ""),
        update.get_state_display(),
    )


class StatusUpdateForm(forms.ModelForm):
    """The update's text and, per public component, the status the update gives it (or none).
    The admin hands the values to the update services; it never saves the instance itself."""

    class Meta:
        model = StatusUpdate
        fields = ["incident", "public_title", "public_status", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 10, "cols": 80, "maxlength": BODY_MAX})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "public_title" not in self.fields:
            return  # read-only (published, or no change permission): nothing to choose
        title = self.fields["public_title"]
        title.required = False
        title.help_text = (
            f"What customers read. Left blank, it is “{TITLE_PROMPT}”, which must be replaced "
            "before the update is approved or published; the incident's internal title is never "
            "used."
        )
        self.fields["body"].help_text = (
            "Markdown. Raw HTML is shown as text, never as markup; links only to http, https "
            "and mailto addresses."
        )
        current = {}
        if self.instance.pk:
            current = {row.component_id: row.new_status for row in self.instance.affected.all()}
        for component in public_components():
            self.fields[f"{COMPONENT_PREFIX}{component.pk}"] = forms.ChoiceField(
                label=f"{component.name} (now {component.get_status_display().lower()})",
                choices=[("", "Not affected"), *ComponentStatus.choices],
                required=False,
                initial=current.get(component.pk, ""),
            )

    def component_field_names(self) -> list[str]:
        return [name for name in self.fields if name.startswith(COMPONENT_PREFIX)]

    def components(self) -> list[tuple[int, str]]:
        """(component id, new status) for each component given a status."""
        return [
            (int(name.removeprefix(COMPONENT_PREFIX)), self.cleaned_data[name])
            for name in self.component_field_names()
            if self.cleaned_data.get(name)
        ]


@admin.register(StatusUpdate)
class StatusUpdateAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="status_update", create=status_update_create, update=status_update_edit
    )
    form = StatusUpdateForm
    change_form_template = "admin/communications/statusupdate/change_form.html"
    list_display = (
        "public_title",
        "incident_link",
        "kind",
        "state_label",
        "public_status",
        "created_by",
        "approved_by",
        "published_at",
        "deliveries",
    )
    list_filter = ("state", "kind", "public_status")
    search_fields = ("incident__number", "public_title")
    list_select_related = ("incident", "created_by", "approved_by")
    raw_id_fields = ("incident",)
    actions = ["approve_selected", "publish_selected"]
    ordering = ("-created_at",)

    class Media:
        js = ("communications/statusupdate_preview.js",)

    # -- the page ------------------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: StatusUpdate | None = None):
        # The form adds one field per public component when it is made (see StatusUpdateForm).
        components = [
            f"{COMPONENT_PREFIX}{pk}" for pk in public_components().values_list("pk", flat=True)
        ]
        if obj is not None and not self.has_change_permission(request, obj):
            components = ["affected_components"]
        main = ["incident", "public_title", "public_status", "body", "public_preview"]
        fieldsets: list = [(None, {"fields": main})]
        fieldsets.append(
            (
                "Affected components",
                {
                    "fields": components,
                    "description": "The status each component gets when the update is published.",
                },
            )
        )
        if obj is not None:
            fieldsets.append(
                (
                    "Workflow",
                    {
                        "fields": [
                            "state_label",
                            "kind",
                            "created_by",
                            "approved_by",
                            "approved_at",
                            "published_by",
                            "published_at",
                            "deliveries",
                        ]
                    },
                )
            )
        return fieldsets

    def get_form(self, request: HttpRequest, obj: StatusUpdate | None = None, change=False, **kw):
        # The components' fields are the form's own (made with it), not the model's.
        shown = kw.get("fields")
        if shown is None:
            shown = flatten_fieldsets(self.get_fieldsets(request, obj))
        kw["fields"] = [name for name in shown if not name.startswith(COMPONENT_PREFIX)]
        return super().get_form(request, obj, change=change, **kw)

    def get_readonly_fields(self, request: HttpRequest, obj: StatusUpdate | None = None):
        fields = [
            "public_preview",
            "state_label",
            "kind",
            "created_by",
            "approved_by",
            "approved_at",
            "published_by",
            "published_at",
            "affected_components",
            "deliveries",
        ]
        if obj is not None:
            fields.append("incident")
        return fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        number = request.GET.get("incident_number")
        if number:
            incident = Incident.objects.filter(number=number).only("pk").first()
            if incident is not None:
                initial["incident"] = incident.pk
        return initial

    def has_change_permission(self, request: HttpRequest, obj: StatusUpdate | None = None) -> bool:
        if obj is not None and obj.state == UpdateState.PUBLISHED:
            return False  # published updates are immutable: a correction is a new update
        return super().has_change_permission(request, obj)

    def service_fields(self, form: StatusUpdateForm, *, change: bool) -> dict[str, Any]:
        names = form.changed_data if change else list(form.fields)
        fields = {
            name: form.cleaned_data[name]
            for name in names
            if name in form.cleaned_data and not name.startswith(COMPONENT_PREFIX)
        }
        if change:
            fields.pop("incident", None)
        if not change or any(name.startswith(COMPONENT_PREFIX) for name in names):
            wanted = form.components()
            by_pk = {c.pk: c for c in public_components().filter(pk__in=[pk for pk, _ in wanted])}
            fields["components"] = [(by_pk[pk], status) for pk, status in wanted if pk in by_pk]
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[StatusUpdate]:
        # The delivery counts of each update, in the list's (and the page's) own query.
        return super().get_queryset(request).annotate(**delivery_counts())

    @admin.display(description="Deliveries")
    def deliveries(self, obj: StatusUpdate) -> str:
        return deliveries_html(obj)

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: StatusUpdate) -> str:
        url = reverse("admin:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.incident.number)

    @admin.display(description="State", ordering="state")
    def state_label(self, obj: StatusUpdate) -> str:
        return state_badge(obj)

    @admin.display(description="Public rendering")
    def public_preview(self, obj: StatusUpdate | None) -> str:
        # Rendered again from the Markdown by the one sanitizing renderer (nh3), so safe HTML.
        html = mark_safe(markdown_to_html(obj.body)) if obj is not None and obj.pk else ""
        return format_html(
            '<div id="status-update-preview" class="vigil-status-preview" data-url="{}" '
            'aria-live="polite">{}</div>',
            reverse(f"{self.admin_site.name}:communications_statusupdate_preview"),
            html,
        )

    @admin.display(description="Components")
    def affected_components(self, obj: StatusUpdate) -> str:
        rows = obj.affected.select_related("component__service")
        if not rows:
            return "None"
        return format_html_join(
            ", ",
            "{}: {}{}",
            (
                (
                    row.component.name,
                    row.get_new_status_display(),
                    f" (was {row.get_old_status_display().lower()})" if row.old_status else "",
                )
                for row in rows
            ),
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:
            context["status_update_steps"] = self._steps(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _steps(self, request: HttpRequest, obj: StatusUpdate) -> dict[str, Any]:
        user = request.user
        steps = []
        if obj.state == UpdateState.DRAFT and user.has_perm("communications.approve_statusupdate"):
            steps.append(("approve", "Approve"))
        if obj.state != UpdateState.PUBLISHED and user.has_perm(
            "communications.publish_statusupdate"
        ):
            steps.append(("publish", "Publish"))
        note = ""
        if obj.state == UpdateState.PUBLISHED:
            note = "Published updates are immutable: post a correction as a new update."
        elif obj.state != UpdateState.APPROVED and needs_approval(obj):
            note = (
                f"Sev {obj.incident.severity_id}: the business liaison's approval is needed "
                "before publishing."
            )
        return {
            "state": state_badge(obj),
            "note": note,
            "buttons": [
                {"name": name, "label": label, "url": self._step_url(obj, name)}
                for name, label in steps
            ],
        }

    def _step_url(self, obj: StatusUpdate, step: str) -> str:
        return reverse(f"{self.admin_site.name}:communications_statusupdate_{step}", args=[obj.pk])

    # -- the workflow's endpoints -------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("preview/", wrap(self.preview_view), name="communications_statusupdate_preview"),
            path(
                "<path:object_id>/approve/",
                wrap(self.step_view),
                {"step": "approve"},
                name="communications_statusupdate_approve",
            ),
            path(
                "<path:object_id>/publish/",
                wrap(self.step_view),
                {"step": "publish"},
                name="communications_statusupdate_publish",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest):
        """The public rendering of the posted Markdown ``body`` (JSON ``{"html": ...}``)."""
        if request.method != "POST":
            return JsonResponse({"detail": "POST the body."}, status=405)
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        body = request.POST.get("body", "")[:BODY_MAX]
        return JsonResponse({"html": markdown_to_html(body)})

    def step_view(self, request: HttpRequest, object_id: str, step: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        service, done = STEPS[step]
        try:
            service(status_update=obj, actor=request.user, source=Source.ADMIN)
        except VigilError as error:
            self.message_user(request, f"Not {done}: {error.message}", messages.ERROR)
        else:
            self.message_user(request, f"“{obj.public_title}” {done}.", messages.SUCCESS)
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:communications_statusupdate_change", args=[obj.pk])
        )

    # -- actions on the list ------------------------------------------------------------------

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("communications.approve_statusupdate")

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("communications.publish_statusupdate")

    @admin.action(description="Approve selected drafts", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[StatusUpdate]) -> None:
        self._bulk(request, queryset, "approve")

    @admin.action(description="Publish selected updates", permissions=["publish"])
    def publish_selected(self, request: HttpRequest, queryset: QuerySet[StatusUpdate]) -> None:
        self._bulk(request, queryset, "publish")

    def _bulk(self, request: HttpRequest, queryset: QuerySet[StatusUpdate], step: str) -> None:
        service, done = STEPS[step]
        succeeded, failures = 0, []
        for obj in queryset.select_related("incident").order_by("pk"):
            try:
                service(status_update=obj, actor=request.user, source=Source.ADMIN)
            except VigilError as error:
                failures.append(f"{obj.incident.number} “{obj.public_title}”: {error.message}")
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, f"{succeeded} update(s) {done}.", messages.SUCCESS)
        for failure in failures:
            self.message_user(request, f"Not {done}: {failure}", messages.ERROR)


# --- on the incident page ------------------------------------------------------------------------


def incident_updates_panel(*, request: HttpRequest, incident: Incident) -> Any:
    updates = list(
        StatusUpdate.objects.filter(incident=incident)
        .select_related("created_by")
        .order_by("created_at", "pk")
    )
    rows = format_html_join(
        "\n",
        '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
        (
            (
                reverse("admin:communications_statusupdate_change", args=[update.pk]),
                update.public_title,
                update.get_kind_display(),
                state_badge(update),
                update.get_public_status_display(),
                when(update.published_at) if update.published_at else "–",
            )
            for update in updates
        ),
    )
    table = (
        format_html(
            '<table class="vigil-status-updates"><thead><tr><th>Public title</th><th>Kind</th>'
            "<th>State</th><th>Public status</th><th>Published</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )
        if updates
        else format_html('<p class="vigil-muted">{}</p>', "No status update yet.")
    )
    link = ""
    if request.user.has_perm("communications.add_statusupdate"):
        url = reverse("admin:communications_statusupdate_add")
        link = format_html(
            '<p><a class="button" href="{}?incident_number={}">Post a status update</a></p>',
            url,
            incident.number,
        )
    return format_html("{}{}", table, link)


incident_page_panel_register(
    key="status-updates",
    title="Status updates",
    render=incident_updates_panel,
    permission="communications.view_statusupdate",
)
