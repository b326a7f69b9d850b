"""Status-page subscribers and the suppression list in the admin.

* **Subscribers**: filtered by state and kind, searched by address, exported as CSV (the
  selected rows, or every row of the filtered list with "select all"). Email subscribers come
  only from the public form (double opt-in); staff add **webhook** subscribers here — the page
  shows the key their bodies are signed with once, after adding. Rows are read-only; removing
  one is a service call, kept in its history.
* **Suppressions**: addresses no customer-facing mail goes to. Staff add one by hand (reason
  "manual") or remove one; both are service calls, and the history says who and when.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.admin.forms import attach_errors
from incidents.errors import VigilError
from incidents.models import Source

from ..models import Component, Subscriber, SubscriberKind, Suppression, SuppressionReason
from ..services.subscribers_staff import (
    subscriber_delete,
    subscriber_webhook_create,
    suppression_add,
    suppression_remove,
)

CSV_COLUMNS = [
    "kind",
    "address",
    "state",
    "all_components",
    "components",
    "maintenance_notices",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
]


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (an address may start with =)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def subscribers_csv(queryset) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in queryset.prefetch_related("components__service").order_by("pk"):
        writer.writerow(
            [
                _cell(value)
                for value in (
                    row.kind,
                    row.address,
                    row.state,
                    "yes" if row.all_components else "no",
                    ";".join(sorted(c.code for c in row.components.all())),
                    "yes" if row.maintenance_notices else "no",
                    row.created_at.isoformat() if row.created_at else "",
                    row.confirmed_at.isoformat() if row.confirmed_at else "",
                    row.unsubscribed_at.isoformat() if row.unsubscribed_at else "",
                )
            ]
        )
    return out.getvalue()


class WebhookSubscriberForm(forms.Form):
    url = forms.CharField(
        label="Webhook URL",
        max_length=255,
        help_text="https:// on a public host. Vigil POSTs each notice as JSON, signed.",
        widget=forms.URLInput(attrs={"size": 70}),
    )
    all_components = forms.BooleanField(
        required=False, initial=True, help_text="Every component, new ones included."
    )
    components = forms.ModelMultipleChoiceField(
        queryset=Component.objects.select_related("service"),
        required=False,
        help_text="When not every component: the ones it follows.",
    )
    maintenance_notices = forms.BooleanField(required=False, initial=True)


@admin.register(Subscriber)
class SubscriberAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(instance="subscriber", delete=subscriber_delete)
    list_display = (
        "address",
        "kind",
        "state",
        "follows",
        "maintenance_notices",
        "created_at",
        "confirmed_at",
    )
    list_filter = ("state", "kind", "maintenance_notices", "all_components")
    search_fields = ("email", "url")
    date_hierarchy = "created_at"
    actions = ["export_csv"]
    fields = (
        "kind",
        "email",
        "url",
        "state",
        "all_components",
        "components",
        "maintenance_notices",
        "created_at",
        "confirmation_sent_at",
        "confirmed_at",
        "unsubscribed_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("components__service")

    @admin.display(description="Follows")
    def follows(self, subscriber: Subscriber) -> str:
        if subscriber.all_components:
            return "All components"
        return ", ".join(c.name for c in subscriber.components.all()) or "—"

    @admin.action(description="Export the selected subscribers as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset) -> HttpResponse:
        response = HttpResponse(subscribers_csv(queryset), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="subscribers-{stamp}.csv"'
        return response

    # -- adding: webhook subscribers only ------------------------------------------------------

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.has_perm("communications.add_subscriber")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = WebhookSubscriberForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                subscriber, secret = subscriber_webhook_create(
                    actor=request.user,
                    source=Source.ADMIN,
                    url=data["url"],
                    all_components=data["all_components"],
                    components=[c.code for c in data["components"]],
                    maintenance_notices=data["maintenance_notices"],
                )
            except VigilError as exc:
                attach_errors(form, exc)
            else:
                self.log_addition(request, subscriber, [{"added": {}}])
                return TemplateResponse(
                    request,
                    "admin/communications/subscriber/webhook_created.html",
                    {
                        **self.admin_site.each_context(request),
                        "opts": self.model._meta,
                        "title": "Webhook subscriber added",
                        "subscriber": subscriber,
                        "secret": secret,
                    },
                    headers={"Cache-Control": "no-store"},
                )
        return TemplateResponse(
            request,
            "admin/communications/subscriber/add_webhook.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Add a webhook subscriber",
                "form": form,
                "kind": SubscriberKind.WEBHOOK,
            },
            status=400 if request.method == "POST" else 200,
        )


# --- suppressions --------------------------------------------------------------------------------


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["email", "detail"]


def _suppression_add(*, actor: Any, source: str, email: str, detail: str = "") -> Suppression:
    return suppression_add(
        actor=actor, source=source, email=email, reason=SuppressionReason.MANUAL, detail=detail
    )


@admin.register(Suppression)
class SuppressionAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="suppression", create=_suppression_add, delete=suppression_remove
    )
    form = SuppressionForm
    list_display = ("email", "reason", "detail", "created_by", "created_at")
    list_filter = ("reason",)
    search_fields = ("email", "detail")
    date_hierarchy = "created_at"

    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ("email", "detail")
        return ("email", "reason", "detail", "created_by", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return () if obj is None else ("email", "reason", "detail", "created_by", "created_at")
