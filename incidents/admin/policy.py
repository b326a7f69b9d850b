"""Policy as data (§2.1, §2.2, §3.1, §5.1) and the service catalogue, edited here through the
catalogue services (``incidents.services.catalog``), the same ones the API calls: the same
permission checks and validation, and every save leaves a history record naming its author."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from ..models import (
    Channel,
    Contact,
    EscalationContact,
    IncidentPolicy,
    Level,
    PriorityMatrixCell,
    ResponseRole,
    Service,
    SeverityLevel,
)
from ..services.catalog import (
    contact_create,
    contact_delete,
    contact_update,
    escalation_contact_create,
    escalation_contact_delete,
    escalation_contact_update,
    priority_cell_update,
    response_role_create,
    response_role_update,
    service_create,
    service_update,
    severity_level_update,
)
from ..services.policy import incident_policy_update
from . import display as ui
from .common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from .forms import SeverityLevelForm


def _incident_policy_update(*, policy: IncidentPolicy, **kwargs):
    return incident_policy_update(**kwargs)


def _level_order(field: str) -> Case:
    """High, Medium, Low, as the procedure's matrix reads, rather than alphabetically."""
    return Case(
        *(When(**{field: level}, then=Value(rank)) for rank, level in enumerate(Level.values)),
        output_field=IntegerField(),
    )


@admin.register(SeverityLevel)
class SeverityLevelAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(instance="severity", update=severity_level_update)
    form = SeverityLevelForm
    list_display = ("badge", "name", "response", "resolution", "channels", "business_impact")
    list_display_links = ("badge", "name")
    ordering = ("level",)
    fieldsets = [
        (None, {"fields": ["level", "name", "definition", "business_impact", "examples"]}),
        ("Targets (§2.1)", {"fields": ["response_target", "resolution_target"]}),
        ("Immediate notification (§5.1)", {"fields": ["notification_channels"]}),
        (
            "New incidents (§2.2)",
            {
                "fields": [("default_impact", "default_urgency")],
                "description": "A new incident of this level starts with this impact and "
                "urgency unless others are given; in the priority matrix they make the "
                "priority this level goes with.",
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: SeverityLevel | None = None):
        # Incidents point at the level number; renumbering would silently re-rank them.
        return ("level",) if obj is not None else ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the procedure defines exactly four levels

    def has_delete_permission(self, request: HttpRequest, obj: SeverityLevel | None = None):
        return False

    @admin.display(description="Level", ordering="level")
    def badge(self, obj: SeverityLevel) -> str:
        return ui.severity_badge(obj)

    @admin.display(description="Response target", ordering="response_target")
    def response(self, obj: SeverityLevel) -> str:
        return ui.target_text(obj.response_target)

    @admin.display(description="Resolution target", ordering="resolution_target")
    def resolution(self, obj: SeverityLevel) -> str:
        return ui.target_text(obj.resolution_target)

    @admin.display(description="Notification channels")
    def channels(self, obj: SeverityLevel) -> str:
        labels = dict(Channel.choices)
        return " + ".join(labels.get(value, value) for value in obj.notification_channels)


@admin.register(IncidentPolicy)
class IncidentPolicyAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(instance="policy", update=_incident_policy_update)
    list_display = (
        "__str__",
        "declarer_is_incident_manager",
        "acknowledger_takes_role",
        "severity_reason",
        "priority_tolerance",
    )
    fieldsets = [
        ("Ownership", {"fields": ["declarer_is_incident_manager", "acknowledger_takes_role"]}),
        ("Severity and priority", {"fields": ["severity_reason", "priority_tolerance"]}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row, seeded

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(PriorityMatrixCell)
class PriorityMatrixCellAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(instance="cell", update=priority_cell_update)
    list_display = ("urgency", "impact", "priority")
    list_editable = ("priority",)
    list_display_links = None
    fields = ("urgency", "impact", "priority")
    readonly_fields = ("urgency", "impact")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PriorityMatrixCell]:
        return PriorityMatrixCell.objects.annotate(
            urgency_rank=_level_order("urgency"), impact_rank=_level_order("impact")
        )

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["urgency_rank", "impact_rank"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the matrix is always 3 × 3

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="contact", create=contact_create, update=contact_update, delete=contact_delete
    )
    list_display = ("name", "phone", "email", "slack_handle", "user")
    list_select_related = ("user",)
    search_fields = ("name", "email", "phone", "slack_handle")
    raw_id_fields = ("user",)


@admin.register(ResponseRole)
class ResponseRoleAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="role", create=response_role_create, update=response_role_update
    )
    list_display = ("name", "primary_contact", "backup_contact", "group", "responsibility_items")
    list_select_related = ("primary_contact", "backup_contact", "group")
    ordering = ("position", "name")
    fields = (
        "name",
        "key",
        "position",
        "responsibilities",
        "primary_contact",
        "backup_contact",
        "group",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: ResponseRole | None = None):
        # The key ties the role to code and to every incident's assignments.
        return ("key",) if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: ResponseRole | None = None):
        return False

    @admin.display(description="Responsibilities")
    def responsibility_items(self, obj: ResponseRole) -> str:
        return format_html(
            '<ul class="vigil-plain-list">{}</ul>',
            format_html_join("", "<li>{}</li>", ((item,) for item in obj.responsibility_list)),
        )


@admin.register(EscalationContact)
class EscalationContactAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="escalation_contact",
        create=escalation_contact_create,
        update=escalation_contact_update,
        delete=escalation_contact_delete,
    )
    list_display = ("name", "key", "contact", "position")
    list_select_related = ("contact",)
    ordering = ("position", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: EscalationContact | None = None):
        return ("key",) if obj is not None else ()


@admin.register(Service)
class ServiceAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    # Past incidents name their services; a retired service is marked inactive instead, so
    # the page has no delete (the API's delete refuses services that incidents name).
    write_services = WriteServices(instance="service", create=service_create, update=service_update)
    list_display = (
        "name",
        "slug",
        "kind",
        "tier",
        "customer_facing",
        "public_name",
        "owner",
        "is_active",
    )
    list_filter = ("kind", "tier", "customer_facing", "is_active")
    list_select_related = ("owner",)
    search_fields = ("name", "slug", "public_name")
    prepopulated_fields = {"slug": ("name",)}
    raw_id_fields = ("owner",)
