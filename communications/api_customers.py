"""Staff API of customers and enterprise direct contact, under /api/v1/:

* ``customers/`` (list with filters, add with contacts), ``customers/{id}/`` (read, edit,
  delete), ``customers/{id}/contacts/`` (add) and ``customers/{id}/contacts/{contact}/`` (edit,
  delete);
* ``customers/import/``: a CSV file as the body (``text/csv``) or uploaded as ``file``
  (``multipart/form-data``); ``?dry_run=1`` checks and reports without writing. All or nothing:
  any bad row is a 400 listing the rows (``errors`` keys ``row N.column``), nothing written;
* ``direct-contact-tasks/`` (list with filters), ``direct-contact-tasks/{id}/`` and the actions
  ``direct-contact-tasks/{id}/done/`` and ``.../not-reachable/`` (with a ``note``).

Every role group reads these; writes go through the services (``communications.services.
customers``, ``.customers_csv``, ``.direct_contact``), which check the role permissions. Errors
have the incidents API's one shape.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from django.http import Http404
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.errors import InvalidInput
from incidents.models import Source
from incidents.serializers import NUMBER_PATTERN, UserRefSerializer, user_ref
from incidents.serializers.common import TextField

from .models import (
    Customer,
    CustomerContact,
    CustomerPlan,
    DirectContactStatus,
    DirectContactTask,
)
from .services.customers import (
    MAX_CONTACTS,
    customer_contact_add,
    customer_contact_delete,
    customer_contact_update,
    customer_create,
    customer_delete,
    customer_update,
)
from .services.customers_csv import IMPORT_COLUMNS, IMPORT_MAX_BYTES, customers_import
from .services.direct_contact import NOTE_MAX_LENGTH, direct_contact_close

_ID = re.compile(r"[0-9]{1,18}")
_NUMBER = re.compile(NUMBER_PATTERN)
CUSTOMERS = ["customers"]
TASKS = ["direct contact"]
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
CONTACT_PARAMETER = OpenApiParameter("contact", OpenApiTypes.INT, OpenApiParameter.PATH)
TRUE = {"1", "true", "yes"}
FALSE = {"0", "false", "no"}


# --- serializers ---------------------------------------------------------------------------------


class CustomerContactSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField()
    phone = serializers.CharField()
    title = serializers.CharField()
    incident_email = serializers.BooleanField(help_text="False: the contact opted out.")
    opted_out_at = serializers.DateTimeField(allow_null=True)


class CustomerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    external_id = serializers.CharField()
    plan = serializers.ChoiceField(choices=CustomerPlan.choices)
    has_sla = serializers.BooleanField()
    sla_terms = serializers.CharField()
    needs_direct_contact = serializers.BooleanField(
        help_text="Enterprise with SLA commitments: gets a direct-contact task in Sev 1-2."
    )
    account_owner = UserRefSerializer(allow_null=True)
    services = serializers.ListField(child=serializers.CharField(), help_text="Service slugs.")
    notes = serializers.CharField()
    contacts = CustomerContactSerializer(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, customer: Customer) -> dict[str, Any]:
        when = serializers.DateTimeField()
        return {
            "id": customer.pk,
            "name": customer.name,
            "external_id": customer.external_id,
            "plan": customer.plan,
            "has_sla": customer.has_sla,
            "sla_terms": customer.sla_terms,
            "needs_direct_contact": customer.needs_direct_contact,
            "account_owner": user_ref(customer.account_owner),
            "services": [s.slug for s in customer.services.all()],
            "notes": customer.notes,
            "contacts": [
                {
                    "id": c.pk,
                    "name": c.name,
                    "email": c.email,
                    "phone": c.phone,
                    "title": c.title,
                    "incident_email": c.incident_email,
                    "opted_out_at": when.to_representation(c.opted_out_at),
                }
                for c in customer.contacts.all()
            ],
            "created_at": when.to_representation(customer.created_at),
            "updated_at": when.to_representation(customer.updated_at),
        }


class ContactWriteSerializer(serializers.Serializer):
    email = TextField(max_length=254, help_text="Unique within the customer.")
    name = TextField(max_length=200, required=False, allow_blank=True)
    phone = TextField(max_length=40, required=False, allow_blank=True)
    title = TextField(max_length=120, required=False, allow_blank=True)
    incident_email = serializers.BooleanField(
        required=False, help_text="Receives incident email (false: opted out)."
    )


class CustomerWriteSerializer(serializers.Serializer):
    name = TextField(max_length=200)
    external_id = TextField(max_length=100, required=False, allow_blank=True)
    plan = serializers.ChoiceField(choices=CustomerPlan.choices, required=False)
    has_sla = serializers.BooleanField(required=False)
    sla_terms = TextField(max_length=300, required=False, allow_blank=True)
    account_owner = TextField(
        max_length=254,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="Username or e-mail address of an active member of staff; null: none.",
    )
    services = serializers.ListField(
        child=TextField(max_length=120),
        max_length=200,
        required=False,
        help_text="Slugs (or names) of the services the customer uses; replaces the list.",
    )
    notes = TextField(max_length=10_000, required=False, allow_blank=True)


class CustomerCreateSerializer(CustomerWriteSerializer):
    contacts = ContactWriteSerializer(many=True, required=False, max_length=MAX_CONTACTS)


class ImportRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Row number in the file (the header is row 1).")
    customer = serializers.CharField()
    customer_action = serializers.CharField(help_text="create, update or unchanged.")
    contact = serializers.CharField()
    contact_action = serializers.CharField(
        help_text="create, update, unchanged; empty for a row without a contact."
    )


class ImportCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class ImportResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(help_text="True: nothing was written.")
    rows = serializers.IntegerField()
    customers = ImportCountsSerializer()
    contacts = ImportCountsSerializer()
    warnings = serializers.ListField(child=serializers.CharField())
    preview = ImportRowSerializer(many=True)

    def to_representation(self, result: Any) -> dict[str, Any]:
        return {
            "dry_run": result.dry_run,
            "rows": result.rows,
            "customers": {
                "created": result.customers_created,
                "updated": result.customers_updated,
                "unchanged": result.customers_unchanged,
            },
            "contacts": {
                "created": result.contacts_created,
                "updated": result.contacts_updated,
                "unchanged": result.contacts_unchanged,
            },
            "warnings": list(result.warnings),
            "preview": [
                {
                    "row": r.row,
                    "customer": r.customer,
                    "customer_action": r.customer_action,
                    "contact": r.contact,
                    "contact_action": r.contact_action,
                }
                for r in result.preview
            ],
        }


class CustomerRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class DirectContactTaskSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.CharField(help_text="The incident's public ID.")
    incident_title = serializers.CharField()
    customer = CustomerRefSerializer()
    sla_terms = serializers.CharField()
    owner = UserRefSerializer(allow_null=True, help_text="Null: nobody was assigned.")
    due_at = serializers.DateTimeField()
    overdue = serializers.BooleanField(help_text="Open and past its due time.")
    status = serializers.ChoiceField(choices=DirectContactStatus.choices)
    note = serializers.CharField()
    closed_by = UserRefSerializer(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    reminders_sent = serializers.IntegerField()
    created_at = serializers.DateTimeField()

    def to_representation(self, task: DirectContactTask) -> dict[str, Any]:
        when = serializers.DateTimeField()
        return {
            "id": task.pk,
            "incident": task.incident.number,
            "incident_title": task.incident.title,
            "customer": {"id": task.customer_id, "name": task.customer.name},
            "sla_terms": task.sla_terms,
            "owner": user_ref(task.owner),
            "due_at": when.to_representation(task.due_at),
            "overdue": task.status == DirectContactStatus.OPEN and task.due_at < timezone.now(),
            "status": task.status,
            "note": task.note,
            "closed_by": user_ref(task.closed_by),
            "closed_at": when.to_representation(task.closed_at),
            "reminders_sent": task.reminders_sent,
            "created_at": when.to_representation(task.created_at),
        }


class CloseSerializer(serializers.Serializer):
    note = TextField(
        max_length=NOTE_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="What was said, or tried (required for not reachable).",
    )


# --- helpers -------------------------------------------------------------------------------------


def _customers_qs():
    return Customer.objects.select_related("account_owner").prefetch_related("services", "contacts")


def _customer_or_404(id: str) -> Customer:
    found = _customers_qs().filter(pk=int(id)).first() if _ID.fullmatch(id) else None
    if found is None:
        raise Http404
    return found


def _contact_or_404(customer: Customer, contact: str) -> CustomerContact:
    found = (
        CustomerContact.objects.filter(customer=customer, pk=int(contact)).first()
        if _ID.fullmatch(contact)
        else None
    )
    if found is None:
        raise Http404
    return found


def _tasks_qs():
    return DirectContactTask.objects.select_related("incident", "customer", "owner", "closed_by")


def _task_or_404(id: str) -> DirectContactTask:
    found = _tasks_qs().filter(pk=int(id)).first() if _ID.fullmatch(id) else None
    if found is None:
        raise Http404
    return found


def _flag(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise InvalidInput({name: "Expected 1 or 0 (true or false)."})


def _owner_value(data: dict[str, Any]) -> dict[str, Any]:
    if "account_owner" in data and data["account_owner"] is None:
        data["account_owner"] = ""
    return data


# --- customers -----------------------------------------------------------------------------------


class CustomerPagination(VigilCursorPagination):
    ordering = ("id",)


class CustomerListView(VigilAPIView, GenericAPIView):
    permission_model = Customer
    queryset = Customer.objects.none()  # names the model for the schema generator
    pagination_class = CustomerPagination
    serializer_class = CustomerSerializer

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_list",
        summary="List customers with their contacts",
        parameters=[
            OpenApiParameter(
                "plan", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=CustomerPlan.values
            ),
            OpenApiParameter("has_sla", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["1", "0"]),
            OpenApiParameter(
                "service",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Only customers using the service with this slug.",
            ),
            OpenApiParameter(
                "q",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Name, external id or contact address contains.",
            ),
        ],
        responses={200: CustomerSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        customers = _customers_qs()
        plan = request.query_params.get("plan")
        if plan is not None:
            if plan not in CustomerPlan.values:
                raise InvalidInput({"plan": f"One of {', '.join(CustomerPlan.values)}."})
            customers = customers.filter(plan=plan)
        has_sla = _flag(request, "has_sla")
        if has_sla is not None:
            customers = customers.filter(has_sla=has_sla)
        for name, lookup in (("service", "services__slug"), ("q", None)):
            value = request.query_params.get(name)
            if value is None:
                continue
            if len(value) > 200 or "\x00" in value:
                raise InvalidInput({name: "At most 200 characters, no NUL."})
            if lookup:
                customers = customers.filter(**{lookup: value})
            else:
                by_contact = CustomerContact.objects.filter(email__icontains=value)
                customers = customers.filter(
                    Q(name__icontains=value)
                    | Q(external_id__icontains=value)
                    | Q(pk__in=by_contact.values("customer_id"))
                )
        page = self.paginate_queryset(customers)
        return self.get_paginated_response(CustomerSerializer(page, many=True).data)

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_create",
        summary="Add a customer (with its contacts)",
        description=(
            "Names are unique (case-insensitive), and so are external ids. An unknown service or "
            "account owner, an invalid address or a text over its limit is a 400 naming the "
            "field, nothing stored. Needs the add-customer permission (and add-contact for "
            "contacts)."
        ),
        request=CustomerCreateSerializer,
        responses={201: CustomerSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = CustomerCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = _owner_value(dict(serializer.validated_data))
        data["contacts"] = [dict(c) for c in data.get("contacts", [])]
        customer = customer_create(actor=request.user, source=Source.API, **data)
        return Response(
            CustomerSerializer(_customer_or_404(str(customer.pk))).data,
            status=status.HTTP_201_CREATED,
        )


class CustomerDetailView(VigilAPIView):
    permission_model = Customer

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_retrieve",
        summary="Read a customer",
        parameters=[ID_PARAMETER],
        responses={200: CustomerSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(CustomerSerializer(_customer_or_404(id)).data)

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_partial_update",
        summary="Edit a customer",
        description="Only the fields given change; `services` replaces the list.",
        parameters=[ID_PARAMETER],
        request=CustomerWriteSerializer,
        responses={200: CustomerSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str) -> Response:
        customer = _customer_or_404(id)
        serializer = CustomerWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        customer_update(
            customer=customer,
            actor=request.user,
            source=Source.API,
            **_owner_value(dict(serializer.validated_data)),
        )
        return Response(CustomerSerializer(_customer_or_404(id)).data)

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_destroy",
        summary="Delete a customer and its contacts",
        description="Refused (400) while a direct-contact task names the customer.",
        parameters=[ID_PARAMETER],
        request=None,
        responses={204: None, **error_responses(*WRITE_ERRORS)},
    )
    def delete(self, request: Request, id: str) -> Response:
        customer_delete(customer=_customer_or_404(id), actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CustomerContactListView(VigilAPIView):
    permission_model = CustomerContact

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_contacts_create",
        summary="Add a contact to a customer",
        description="One contact per address and customer (400 for a second).",
        parameters=[ID_PARAMETER],
        request=ContactWriteSerializer,
        responses={201: CustomerSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, id: str) -> Response:
        customer = _customer_or_404(id)
        serializer = ContactWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer_contact_add(
            customer=customer, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(
            CustomerSerializer(_customer_or_404(id)).data, status=status.HTTP_201_CREATED
        )


class CustomerContactDetailView(VigilAPIView):
    permission_model = CustomerContact

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_contacts_partial_update",
        summary="Edit a customer's contact",
        description="Turning `incident_email` off records the opt-out.",
        parameters=[ID_PARAMETER, CONTACT_PARAMETER],
        request=ContactWriteSerializer,
        responses={200: CustomerSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str, contact: str) -> Response:
        customer = _customer_or_404(id)
        row = _contact_or_404(customer, contact)
        serializer = ContactWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        customer_contact_update(
            contact=row, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(CustomerSerializer(_customer_or_404(id)).data)

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_contacts_destroy",
        summary="Delete a customer's contact",
        parameters=[ID_PARAMETER, CONTACT_PARAMETER],
        request=None,
        responses={204: None, **error_responses(*WRITE_ERRORS)},
    )
    def delete(self, request: Request, id: str, contact: str) -> Response:
        row = _contact_or_404(_customer_or_404(id), contact)
        customer_contact_delete(contact=row, actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- import --------------------------------------------------------------------------------------


class CSVParser(BaseParser):
    """A ``text/csv`` body, handed over as bytes (the service decodes and checks it)."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read() if stream is not None else b""


class CustomerImportView(VigilAPIView):
    permission_model = Customer
    parser_classes = [CSVParser, MultiPartParser]

    @extend_schema(
        tags=CUSTOMERS,
        operation_id="customers_import",
        summary="Import customers and contacts from CSV",
        description=(
            "The file as the body (`Content-Type: text/csv`) or uploaded as `file` "
            "(`multipart/form-data`). UTF-8 (a BOM is fine), comma, semicolon or tab "
            f"separated; columns {', '.join(f'`{c}`' for c in IMPORT_COLUMNS)} (only "
            "`customer` is required), one row per contact; at most "
            f"{IMPORT_MAX_BYTES // 1024} KiB. All or nothing: any bad row is a 400 whose "
            "`errors` name each row and column (`row 3.contact_email`), nothing written. "
            "`?dry_run=1` checks the file and says what would change, writing nothing. Needs "
            "the add and change permissions of customers and contacts."
        ),
        parameters=[
            OpenApiParameter("dry_run", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["1", "0"])
        ],
        request={
            "text/csv": OpenApiTypes.STR,
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
        },
        responses={200: ImportResultSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        dry_run = bool(_flag(request, "dry_run"))
        data = request.data
        filename = ""
        if request.content_type.split(";")[0].strip().lower() == "text/csv":
            # DRF hands an empty body over as an empty form, not to the parser.
            data = data if isinstance(data, bytes) else b""
        else:
            upload = request.FILES.get("file")
            if upload is None:
                raise InvalidInput({"file": "Upload the CSV file as the field `file`."})
            if upload.size > IMPORT_MAX_BYTES:
                raise InvalidInput({"file": f"The file is larger than {IMPORT_MAX_BYTES} bytes."})
            filename = (upload.name or "")[:200]
            data = upload.read()
        result = customers_import(
            actor=request.user, source=Source.API, data=data, dry_run=dry_run, filename=filename
        )
        return Response(ImportResultSerializer(result).data)


# --- direct-contact tasks ------------------------------------------------------------------------


class TaskPagination(VigilCursorPagination):
    ordering = ("-id",)


class DirectContactTaskListView(VigilAPIView, GenericAPIView):
    permission_model = DirectContactTask
    queryset = DirectContactTask.objects.none()  # names the model for the schema generator
    pagination_class = TaskPagination
    serializer_class = DirectContactTaskSerializer

    @extend_schema(
        tags=TASKS,
        operation_id="direct_contact_tasks_list",
        summary="List enterprise direct-contact tasks, newest first",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=DirectContactStatus.values,
            ),
            OpenApiParameter(
                "owner",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="`me`, `none` (unassigned) or a user id.",
            ),
            OpenApiParameter(
                "incident",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="The incident's public ID.",
            ),
            OpenApiParameter(
                "overdue",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["1", "0"],
                description="1: open and past due; 0: the others.",
            ),
        ],
        responses={200: DirectContactTaskSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        tasks = _tasks_qs()
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in DirectContactStatus.values:
                raise InvalidInput({"status": f"One of {', '.join(DirectContactStatus.values)}."})
            tasks = tasks.filter(status=wanted)
        owner = request.query_params.get("owner")
        if owner is not None:
            if owner == "me":
                tasks = tasks.filter(owner=request.user)
            elif owner == "none":
                tasks = tasks.filter(owner__isnull=True)
            elif _ID.fullmatch(owner):
                tasks = tasks.filter(owner_id=int(owner))
            else:
                raise InvalidInput({"owner": "me, none or a user id."})
        number = request.query_params.get("incident")
        if number is not None:
            if not _NUMBER.fullmatch(number):
                raise InvalidInput({"incident": "A public incident ID."})
            tasks = tasks.filter(incident__number=number)
        overdue = _flag(request, "overdue")
        if overdue is not None:
            late = {"status": DirectContactStatus.OPEN, "due_at__lt": timezone.now()}
            tasks = tasks.filter(**late) if overdue else tasks.exclude(**late)
        page = self.paginate_queryset(tasks)
        return self.get_paginated_response(DirectContactTaskSerializer(page, many=True).data)


class DirectContactTaskDetailView(VigilAPIView):
    permission_model = DirectContactTask

    @extend_schema(
        tags=TASKS,
        operation_id="direct_contact_tasks_retrieve",
        summary="Read a direct-contact task",
        parameters=[ID_PARAMETER],
        responses={200: DirectContactTaskSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(DirectContactTaskSerializer(_task_or_404(id)).data)


def _close_view(outcome: str, summary: str, description: str) -> type[VigilAPIView]:
    class DirectContactCloseView(VigilAPIView):
        permission_model = DirectContactTask

        @extend_schema(
            tags=TASKS,
            operation_id=f"direct_contact_tasks_{outcome}",
            summary=summary,
            description=description
            + " By the task's owner or a holder of the change-task permission (the incident "
            "manager, the communications lead); 403 otherwise. 409 when the task is already "
            "closed. Recorded on the incident's timeline.",
            parameters=[ID_PARAMETER],
            request=CloseSerializer,
            responses={200: DirectContactTaskSerializer, **error_responses(*WRITE_ERRORS, 409)},
        )
        def post(self, request: Request, id: str) -> Response:
            task = _task_or_404(id)
            serializer = CloseSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            direct_contact_close(
                task=task,
                actor=request.user,
                source=Source.API,
                outcome=outcome,
                note=serializer.validated_data.get("note", ""),
            )
            return Response(DirectContactTaskSerializer(_task_or_404(id)).data)

    name = "".join(part.capitalize() for part in outcome.split("_"))
    DirectContactCloseView.__name__ = f"DirectContact{name}View"
    DirectContactCloseView.__qualname__ = DirectContactCloseView.__name__
    return DirectContactCloseView


DirectContactDoneView = _close_view(
    "done", "Record that the customer was contacted", "A note is optional."
)
DirectContactNotReachableView = _close_view(
    "not_reachable",
    "Record that the customer could not be reached",
    "A `note` saying what was tried is required (400 without).",
)


urlpatterns = [
    path("customers/", CustomerListView.as_view(), name="customer-list"),
    path("customers/import/", CustomerImportView.as_view(), name="customer-import"),
    path("customers/<str:id>/", CustomerDetailView.as_view(), name="customer-detail"),
    path(
        "customers/<str:id>/contacts/",
        CustomerContactListView.as_view(),
        name="customer-contact-list",
    ),
    path(
        "customers/<str:id>/contacts/<str:contact>/",
        CustomerContactDetailView.as_view(),
        name="customer-contact-detail",
    ),
    path(
        "direct-contact-tasks/",
        DirectContactTaskListView.as_view(),
        name="direct-contact-task-list",
    ),
    path(
        "direct-contact-tasks/<str:id>/",
        DirectContactTaskDetailView.as_view(),
        name="direct-contact-task-detail",
    ),
    path(
        "direct-contact-tasks/<str:id>/done/",
        DirectContactDoneView.as_view(),
        name="direct-contact-task-done",
    ),
    path(
        "direct-contact-tasks/<str:id>/not-reachable/",
        DirectContactNotReachableView.as_view(),
        name="direct-contact-task-not-reachable",
    ),
]
