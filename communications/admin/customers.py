"""Customers and enterprise direct contact in the admin.

* **Customers** with their contacts inline, filtered by plan, SLA, service and account owner;
  every write is a service call (``communications.services.customers``), the same the API
  makes. A CSV import page (upload, preview of what would change, import; all or nothing) and
  an export of the selected customers in the import's format.
* **Direct-contact tasks**: a list (filters: status, owner, overdue) read-only here; closed from
  the incident page's panel, where each open task has its done / not-reachable form, and shown
  to their owner on the admin index. Both panels are added through the core's extension points
  (``incidents.admin.extensions``).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import (
    NoRevertMixin,
    ReadOnlyAdminMixin,
    ServiceRejected,
    ServiceWriteAdminMixin,
    WriteServices,
)
from incidents.admin.extensions import admin_index_panel_register, incident_page_panel_register
from incidents.errors import VigilError
from incidents.models import Incident, Source

from ..models import Customer, CustomerContact, DirectContactStatus, DirectContactTask
from ..services.customers import (
    customer_contact_add,
    customer_contact_delete,
    customer_contact_update,
    customer_create,
    customer_delete,
    customer_update,
)
from ..services.customers_csv import ImportResult, customers_import
from ..services.customers_csv_format import (
    IMPORT_COLUMNS,
    IMPORT_MAX_BYTES,
    IMPORT_MAX_ROWS,
    ImportRejected,
    customers_export_rows,
)
from ..services.direct_contact import (
    CLOSE_PERMISSION,
    NOTE_MAX_LENGTH,
    direct_contact_close,
    direct_contact_may_close,
)

CONTACT_FIELDS = ("name", "email", "phone", "title", "incident_email")
VIEW_TASKS = "communications.view_directcontacttask"
INDEX_ROWS = 20


# --- customers ---------------------------------------------------------------------------------


class CustomerContactInline(admin.TabularInline):
    model = CustomerContact
    fields = (*CONTACT_FIELDS, "opted_out_at")
    readonly_fields = ("opted_out_at",)
    extra = 1


class CustomerForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = [
            "name",
            "external_id",
            "plan",
            "has_sla",
            "sla_terms",
            "account_owner",
            "services",
            "notes",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner = self.fields.get("account_owner")
        if owner is not None:
            owner.queryset = get_user_model().objects.filter(is_active=True, is_staff=True)


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text=(
            f"UTF-8, comma or semicolon separated, at most {IMPORT_MAX_ROWS} rows and "
            f"{IMPORT_MAX_BYTES // 1024} KiB. Columns: {', '.join(IMPORT_COLUMNS)}."
        ),
    )


@admin.register(Customer)
class CustomerAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="customer", create=customer_create, update=customer_update, delete=customer_delete
    )
    form = CustomerForm
    inlines = [CustomerContactInline]
    list_display = (
        "name",
        "external_id",
        "plan",
        "has_sla",
        "sla_terms",
        "account_owner",
        "service_list",
        "contact_count",
    )
    list_filter = (
        "plan",
        "has_sla",
        ("services", admin.RelatedOnlyFieldListFilter),
        ("account_owner", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("name", "external_id", "contacts__email", "contacts__name")
    filter_horizontal = ("services",)
    list_select_related = ("account_owner",)
    actions = ["export_csv"]
    change_list_template = "admin/communications/customer/change_list.html"

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .prefetch_related("services")
            .annotate(contacts_total=Count("contacts", distinct=True))
        )

    @admin.display(description="Services")
    def service_list(self, customer: Customer) -> str:
        return ", ".join(s.name for s in customer.services.all()) or "—"

    @admin.display(description="Contacts", ordering="contacts_total")
    def contact_count(self, customer: Customer) -> int:
        return customer.contacts_total

    # The contacts inline is written through the contact services, after the customer's; what
    # they did is left on the formset for the admin's change message.
    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        customer = form.instance
        try:
            for formset in formsets:
                formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
                for inline in formset.forms:
                    self._save_contact(request, customer, formset, inline)
        except VigilError as exc:
            raise ServiceRejected(exc) from exc

    def _save_contact(self, request: HttpRequest, customer: Customer, formset, inline) -> None:
        contact = inline.instance
        if formset.can_delete and formset._should_delete_form(inline):
            if contact.pk:
                customer_contact_delete(contact=contact, actor=request.user, source=Source.ADMIN)
                formset.deleted_objects.append(contact)
            return
        if not inline.has_changed():
            return
        values = {n: inline.cleaned_data[n] for n in CONTACT_FIELDS}
        if contact.pk is None:
            added = customer_contact_add(
                customer=customer, actor=request.user, source=Source.ADMIN, **values
            )
            formset.new_objects.append(added)
        else:
            changed = {n: values[n] for n in inline.changed_data if n in values}
            saved = customer_contact_update(
                contact=contact, actor=request.user, source=Source.ADMIN, **changed
            )
            formset.changed_objects.append((saved, list(changed)))

    # -- export ---------------------------------------------------------------------------------

    @admin.action(description="Export the selected customers as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset) -> HttpResponse:
        customers = queryset.select_related("account_owner").prefetch_related(
            "services", "contacts"
        )
        out = io.StringIO()
        writer = csv.writer(out)
        for row in customers_export_rows(customers.order_by("name", "pk")):
            writer.writerow(row)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="customers-{stamp}.csv"'
        return response

    # -- import ---------------------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="communications_customer_import",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        extra_context = dict(extra_context or {})
        extra_context["vigil_import_url"] = (
            reverse("admin:communications_customer_import")
            if self.has_add_permission(request) and self.has_change_permission(request)
            else None
        )
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload → preview (a dry run) → import. The previewed file travels back with the
        confirmation, and is checked again when imported."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import customers from CSV",
            "columns": IMPORT_COLUMNS,
            "max_rows": IMPORT_MAX_ROWS,
            "max_kib": IMPORT_MAX_BYTES // 1024,
        }
        form = ImportForm()
        status = 200
        if request.method == "POST" and "confirm" in request.POST:
            filename = request.POST.get("filename", "")[:200]
            try:
                data = base64.b64decode(request.POST.get("payload", "").encode(), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                data = b""
            result = self._import(request, context, data=data, filename=filename, dry_run=False)
            if result is not None:
                self.message_user(request, f"Imported {filename}: {result.summary()}")
                return HttpResponseRedirect(reverse("admin:communications_customer_changelist"))
            status = 400
        elif request.method == "POST":
            form = ImportForm(request.POST, request.FILES)
            status = 400
            if form.is_valid():
                upload = form.cleaned_data["file"]
                filename = upload.name[:200]
                if upload.size > IMPORT_MAX_BYTES:
                    # Not read at all.
                    message = f"The file is larger than {IMPORT_MAX_BYTES} bytes."
                    context.update(problems=[(0, "", message)], problems_total=1)
                    result = None
                else:
                    data = upload.read()
                    result = self._import(
                        request, context, data=data, filename=filename, dry_run=True
                    )
                if result is not None:
                    status = 200
                    context["result"] = result
                    context["payload"] = base64.b64encode(data).decode("ascii")
                    context["filename"] = filename
        context["form"] = form
        return TemplateResponse(
            request, "admin/communications/customer/import.html", context, status=status
        )

    def _import(
        self, request: HttpRequest, context: dict[str, Any], **kwargs: Any
    ) -> ImportResult | None:
        """Run the import (or its dry run); a refusal goes into ``context`` as problems."""
        try:
            return customers_import(actor=request.user, source=Source.ADMIN, **kwargs)
        except ImportRejected as rejected:
            context["problems"] = rejected.problems
            context["problems_total"] = rejected.total
        except VigilError as exc:
            context["problems"] = [(0, "", exc.message)]
            context["problems_total"] = 1
        return None


# --- direct-contact tasks ----------------------------------------------------------------------


class OverdueFilter(admin.SimpleListFilter):
    title = "due"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return (("yes", "Overdue (open, past due)"), ("no", "Not overdue"))

    def queryset(self, request, queryset):
        overdue = Q(status=DirectContactStatus.OPEN, due_at__lt=timezone.now())
        if self.value() == "yes":
            return queryset.filter(overdue)
        if self.value() == "no":
            return queryset.exclude(overdue)
        return queryset


def _overdue(task: DirectContactTask, now=None) -> bool:
    return task.status == DirectContactStatus.OPEN and task.due_at < (now or timezone.now())


@admin.register(DirectContactTask)
class DirectContactTaskAdmin(ReadOnlyAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    list_display = (
        "incident_link",
        "customer",
        "sla_terms",
        "owner",
        "due_at",
        "overdue",
        "status",
        "reminders_sent",
        "closed_by",
        "closed_at",
    )
    list_filter = ("status", OverdueFilter, ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("customer__name", "incident__number", "note")
    list_select_related = ("incident", "customer", "owner", "closed_by")
    fields = (
        "incident",
        "customer",
        "sla_terms",
        "owner",
        "due_at",
        "status",
        "note",
        "closed_by",
        "closed_at",
        "reminders_sent",
        "next_reminder_at",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, task: DirectContactTask) -> str:
        url = reverse("admin:incidents_incident_change", args=[task.incident_id])
        return format_html('<a href="{}#panel-direct-contact">{}</a>', url, task.incident.number)

    @admin.display(description="Overdue", boolean=True)
    def overdue(self, task: DirectContactTask) -> bool:
        return _overdue(task)

    def get_urls(self):
        return [
            path(
                "<int:task_id>/close/",
                self.admin_site.admin_view(require_POST(self.close_view)),
                name="communications_directcontacttask_close",
            ),
            *super().get_urls(),
        ]

    def close_view(self, request: HttpRequest, task_id: int) -> HttpResponse:
        """Done / not reachable, from the incident page's panel (the service decides who may)."""
        task = get_object_or_404(
            DirectContactTask.objects.select_related("incident", "customer"), pk=task_id
        )
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = ""
        back = back or (
            reverse("admin:incidents_incident_change", args=[task.incident_id])
            + "#panel-direct-contact"
        )
        try:
            direct_contact_close(
                task=task,
                actor=request.user,
                source=Source.ADMIN,
                outcome=request.POST.get("outcome", ""),
                note=request.POST.get("note", ""),
            )
        except VigilError as exc:
            self.message_user(request, f"Nothing changed: {exc.message}", messages.ERROR)
        else:
            task.refresh_from_db()
            self.message_user(
                request,
                f"Direct contact with {task.customer}: {task.get_status_display().lower()}.",
            )
        return HttpResponseRedirect(back)


# --- panels ------------------------------------------------------------------------------------


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    tasks = list(
        DirectContactTask.objects.filter(incident=incident)
        .select_related("customer", "owner", "closed_by")
        .order_by("due_at", "pk")
    )
    now = timezone.now()
    rows = [
        {
            "task": task,
            "overdue": _overdue(task, now),
            "may_close": task.status == DirectContactStatus.OPEN
            and direct_contact_may_close(task=task, user=request.user),
            "close_url": reverse("admin:communications_directcontacttask_close", args=[task.pk]),
        }
        for task in tasks
    ]
    return render_to_string(
        "admin/communications/directcontacttask/incident_panel.html",
        {
            "rows": rows,
            "incident": incident,
            "note_max": NOTE_MAX_LENGTH,
            "next": request.get_full_path(),
        },
        request=request,
    )


def index_panel(*, request: HttpRequest) -> Any:
    mine = Q(owner=request.user)
    if request.user.has_perm(CLOSE_PERMISSION):
        # Tasks nobody owns are for those who may close anyone's.
        mine |= Q(owner__isnull=True)
    tasks = DirectContactTask.objects.filter(mine, status=DirectContactStatus.OPEN).select_related(
        "incident", "customer", "owner"
    )
    total = tasks.count()
    if not total:
        return None
    now = timezone.now()
    rows = [
        {"task": task, "overdue": _overdue(task, now)}
        for task in tasks.order_by("due_at", "pk")[:INDEX_ROWS]
    ]
    return render_to_string(
        "admin/communications/directcontacttask/index_panel.html",
        {"rows": rows, "more": total - len(rows)},
        request=request,
    )


incident_page_panel_register(
    key="direct-contact",
    title="Enterprise direct contact",
    render=incident_panel,
    permission=VIEW_TASKS,
)
admin_index_panel_register(
    key="direct-contact",
    title="Your direct-contact tasks",
    render=index_panel,
    permission=VIEW_TASKS,
)
