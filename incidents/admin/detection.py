"""Detection in the admin: integrations (with each sender's URL and configuration snippet),
the §7.2 alert rules, and the alerts and raw deliveries Vigil received (read-only).

Integrations hold credentials: by default only superusers see them (no role group holds
their permissions). They are added, changed and deleted through the integration services, the
API's too; their secret is never typed here, only rotated (a list action with a confirmation
page). Alert rules are policy, edited here through the catalogue services and audited like
the other tables.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from ..detection.heartbeat import heartbeat_state
from ..detection.intake import delivery_retry
from ..detection.integrations import (
    integration_create,
    integration_delete,
    integration_rotate_secret,
    integration_snippet,
    integration_update,
    integration_urls,
)
from ..errors import VigilError
from ..models import (
    Alert,
    AlertRule,
    DeliveryStatus,
    Integration,
    IntegrationKind,
    Source,
    WebhookDelivery,
)
from ..services.catalog import alert_rule_create, alert_rule_delete, alert_rule_update
from ..timeformat import when, when_relative
from . import display as ui
from .common import NoRevertMixin, ReadOnlyAdminMixin, ServiceWriteAdminMixin, WriteServices
from .maintenance import MAINTENANCE_ACTIONS, RoutingRulesAdminMixin


def _incident_link(incident) -> str:
    if incident is None:
        return "–"
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    return format_html('<a href="{}">{}</a>', url, incident.number)


def _ago(moment) -> str:
    """A list's "when": how long ago, the local time on hover (the columns stay narrow)."""
    if moment is None:
        return "never"
    return format_html(
        '<time class="nowrap" datetime="{}" title="{}">{} ago</time>',
        moment.isoformat(),
        when(moment),
        ui.duration_text((timezone.now() - moment).total_seconds()),
    )


def _url_label(name: str) -> str:
    """``webhook_url`` → "Webhook URL", ``events_url_alias`` → "Events URL alias"."""
    label = name.replace("_url", " URL").replace("_", " ")
    return label[:1].upper() + label[1:]


def _shown(field: str) -> str:
    return "secret_shown" if field == "secret" else field


def _report(modeladmin, request, done: int, failures: list[str], verb: str) -> None:
    if done:
        modeladmin.message_user(request, f"{done} integration(s) {verb}.", messages.SUCCESS)
    for failure in failures:
        modeladmin.message_user(request, failure, messages.ERROR)


@admin.register(Integration)
class IntegrationAdmin(
    RoutingRulesAdminMixin, ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin
):
    write_services = WriteServices(
        instance="integration",
        create=integration_create,
        update=integration_update,
        delete=integration_delete,
    )
    list_display = (
        "name",
        "kind",
        "service",
        "severity_badge",
        "enabled",
        "auto_resolve",
        "last_delivery",
        "last_signal",
        "heartbeat",
    )
    list_filter = ("kind", "enabled", "auto_resolve", "require_timestamp")
    list_select_related = ("service", "default_severity", "heartbeat_incident")
    search_fields = ("name", "=key")
    readonly_fields = (
        "key",
        "sender_urls",
        "snippet",
        "last_signal_at",
        "heartbeat",
        "created_at",
        "updated_at",
    )
    actions = ("rotate_secret", "enable", "disable", *MAINTENANCE_ACTIONS)
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled"]}),
        (
            "Incidents from this sender",
            {
                "fields": ["service", "default_severity", "auto_resolve", "group_by"],
                "description": (
                    "Routing rules (at the bottom of a saved integration's page) may send an "
                    "alert elsewhere: the first enabled rule by position whose every label "
                    "matches one of its values (case-insensitive) gives the alert's service "
                    "and default severity."
                ),
            },
        ),
        (
            "Sender configuration",
            {
                "fields": [
                    "key",
                    "auth",
                    "auth_header",
                    "secret",
                    "require_timestamp",
                    "sender_urls",
                    "snippet",
                ]
            },
        ),
        (
            "Heartbeat",
            {
                "fields": [
                    "heartbeat_minutes",
                    "heartbeat_alertname",
                    "heartbeat_severity",
                    "last_signal_at",
                    "heartbeat",
                ]
            },
        ),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Integration]:
        latest = WebhookDelivery.objects.filter(integration=OuterRef("pk")).order_by("-received_at")
        return (
            super()
            .get_queryset(request)
            .annotate(last_received=Subquery(latest.values("received_at")[:1]))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Integration | None = None):
        # The sender's URL is made from the kind and key: changing the kind would break it.
        # The secret changes only by rotation (the action), never by typing; a new
        # integration may start with one of the administrator's choosing (or none).
        if obj is not None:
            return ("kind", "secret_shown", *self.readonly_fields)
        return self.readonly_fields

    def get_fieldsets(self, request: HttpRequest, obj: Integration | None = None):
        if obj is None:
            return self.fieldsets
        return [
            (name, {**options, "fields": [_shown(f) for f in options["fields"]]})
            for name, options in self.fieldsets
        ]

    @admin.display(description="Secret")
    def secret_shown(self, obj: Integration) -> str:
        if not obj.secret:
            if obj.kind == IntegrationKind.PAGERDUTY:
                return "none (the routing key is the credential)"
            return "none (the URL key alone)"
        return format_html(
            '<code style="user-select: all">{}</code><div class="vigil-muted">Change it with the '
            '"Rotate the secret" action of the list.</div>',
            obj.secret,
        )

    @admin.display(description="Severity", ordering="default_severity_id")
    def severity_badge(self, obj: Integration) -> str:
        return ui.severity_badge(obj.default_severity)

    @admin.display(description="Last delivery", ordering="last_received")
    def last_delivery(self, obj: Integration) -> str:
        return _ago(getattr(obj, "last_received", None))

    @admin.display(description="Last signal", ordering="last_signal_at")
    def last_signal(self, obj: Integration) -> str:
        return _ago(obj.last_signal_at)

    @admin.display(description="Heartbeat")
    def heartbeat(self, obj: Integration) -> str:
        state = heartbeat_state(obj)
        if state.status == "off":
            return format_html('<span class="vigil-muted">{}</span>', "off")
        if state.status == "waiting":
            return format_html(
                '<span class="vigil-beat-waiting">{}</span>', "waiting for the first signal"
            )
        if state.status == "healthy":
            return format_html('<span class="vigil-beat-healthy">{}</span>', "healthy")
        since = when_relative(state.since) if state.since else "–"
        silent = format_html('<span class="vigil-beat-silent">silent since {}</span>', since)
        if state.incident is None:
            return silent
        return format_html("{} {}", silent, _incident_link(state.incident))

    @admin.display(description="Sender URL")
    def sender_urls(self, obj: Integration) -> str:
        if obj.pk is None:
            return "Shown once the integration is saved."
        rows = integration_urls(obj)
        return format_html(
            "<br>".join(["{}: <code>{}</code>"] * len(rows)),
            *[item for name, url in rows.items() for item in (_url_label(name), url)],
        )

    @admin.display(description="Configuration snippet")
    def snippet(self, obj: Integration) -> str:
        if obj.pk is None:
            return "Shown once the integration is saved."
        # Scrolled inside its block, never wrapped: the YAML and shell in it keep their lines.
        return format_html('<pre class="vigil-snippet">{}</pre>', integration_snippet(obj))

    @admin.action(description="Rotate the secret of selected integrations", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Integration]):
        """After a confirmation page (the old secrets stop working at once), one
        ``integration_rotate_secret`` call per integration; reports how many were rotated."""
        if not request.POST.get("post"):
            return TemplateResponse(
                request,
                "admin/incidents/integration/rotate_secret_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Rotate integration secrets",
                    "subtitle": None,
                    "opts": self.opts,
                    "queryset": queryset,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "media": self.media,
                },
            )
        done, failures = 0, []
        for integration in queryset.order_by("pk"):
            try:
                integration_rotate_secret(
                    integration=integration, actor=request.user, source=Source.ADMIN
                )
                done += 1
            except VigilError as exc:
                failures.append(f"{integration}: {exc.message}")
        _report(self, request, done, failures, "given a new secret (update the senders)")

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        done, failures = 0, []
        for integration in queryset:
            try:
                integration_update(
                    integration=integration,
                    actor=request.user,
                    source=Source.ADMIN,
                    enabled=enabled,
                )
                done += 1
            except VigilError as exc:
                failures.append(f"{integration}: {exc.message}")
        _report(self, request, done, failures, "enabled" if enabled else "disabled")

    @admin.action(description="Enable selected integrations", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Integration]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected integrations", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Integration]) -> None:
        self._set_enabled(request, queryset, False)


@admin.register(AlertRule)
class AlertRuleAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="rule",
        create=alert_rule_create,
        update=alert_rule_update,
        delete=alert_rule_delete,
    )
    list_display = (
        "name",
        "key",
        "matches",
        "threshold_shown",
        "severity_badge",
        "action",
        "enabled",
        "position",
    )
    list_filter = ("enabled", "action", "severity")
    list_select_related = ("severity",)
    ordering = ("position", "id")
    fieldsets = [
        (None, {"fields": ["name", "key", "description", "enabled", "position"]}),
        ("Match", {"fields": ["match_label", "match_values"]}),
        ("Threshold", {"fields": ["threshold", "unit", "value_keys"]}),
        ("Outcome", {"fields": ["severity", "action"]}),
    ]

    @admin.display(description="Matches")
    def matches(self, obj: AlertRule) -> str:
        values = ", ".join(obj.match_values or []) or "–"
        return f"metric={obj.key} or {obj.match_label} in ({values})"

    @admin.display(description="Threshold", ordering="threshold")
    def threshold_shown(self, obj: AlertRule) -> str:
        if obj.threshold is None:
            return "–"
        return f"{obj.threshold.normalize():f} {obj.unit}".strip()

    @admin.display(description="Severity", ordering="severity_id")
    def severity_badge(self, obj: AlertRule) -> str:
        return ui.severity_badge(obj.severity)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "received_at",
        "title",
        "status",
        "severity_id",
        "integration",
        "incident_link",
        "maintenance",
        "count",
        "last_received_at",
    )
    list_filter = ("status", "integration", "severity", "action")
    list_select_related = ("integration", "incident", "maintenance")
    search_fields = ("=fingerprint", "=incident__number", "title")
    search_help_text = "An exact fingerprint or incident ID, or words of the title."
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    fields = (
        "title",
        "status",
        "integration",
        "incident",
        "group",
        "fingerprint",
        "severity",
        "rule",
        "action",
        "value",
        "starts_at",
        "starts_at_estimated",
        "ends_at",
        "received_at",
        "last_received_at",
        "count",
        "acknowledged_at",
        "resolved_at",
        "maintenance",
        "labels",
        "annotations",
        "raw",
    )

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: Alert) -> str:
        return _incident_link(obj.incident)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "received_at",
        "integration",
        "status",
        "alert_count",
        "attempts",
        "processed_at",
        "error_excerpt",
    )
    list_filter = ("status", "integration")
    list_select_related = ("integration",)
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    actions = ("process_again",)
    fields = (
        "integration",
        "received_at",
        "status",
        "attempts",
        "processed_at",
        "error",
        "alert_count",
        "dedup_key",
        "remote_addr",
        "headers",
        "body",
    )

    @admin.display(description="Error")
    def error_excerpt(self, obj: WebhookDelivery) -> str:
        return (obj.error[:80] + "…") if len(obj.error) > 80 else obj.error

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incidents.change_webhookdelivery")

    @admin.action(description="Process selected deliveries again", permissions=["retry"])
    def process_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        queued, skipped = 0, 0
        for delivery in queryset:
            if delivery.status == DeliveryStatus.PROCESSED:
                skipped += 1
                continue
            delivery_retry(delivery=delivery)
            queued += 1
        if queued:
            self.message_user(request, f"{queued} delivery(ies) queued again.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} delivery(ies) already processed: nothing to do.",
                messages.WARNING,
            )


__all__ = [
    "AlertAdmin",
    "AlertRuleAdmin",
    "IntegrationAdmin",
    "WebhookDeliveryAdmin",
]
