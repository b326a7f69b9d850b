"""Staff API of customers and their contacts, under /api/v1/: ``customers/`` (list with
filters, add with contacts), ``customers/{id}/`` (read, edit, delete),
``customers/{id}/contacts/`` (add) and ``customers/{id}/contacts/{contact}/`` (edit, delete).

The CSV import is in ``api_customers_import`` and the enterprise direct-contact tasks in
``api_direct_contact``. Every role group reads these; writes go through the services
(``communications.services.customers``), which check the role permissions. Errors have the
incidents API's one shape.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.errors import InvalidInput
from incidents.models import Source
from incidents.serializers import UserRefSerializer, user_ref
from incidents.serializers.common import TextField

from .models import Customer, CustomerContact, CustomerPlan
from .services.customers import (
    MAX_CONTACTS,
    customer_contact_add,
    customer_contact_delete,
    customer_contact_update,
    customer_create,
    customer_delete,
    customer_update,
)

ID_RE = re.compile(r"[0-9]{1,18}")
CUSTOMERS = ["customers"]
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


# --- helpers -------------------------------------------------------------------------------------


def _customers_qs():
    return Customer.objects.select_related("account_owner").prefetch_related("services", "contacts")


def _customer_or_404(id: str) -> Customer:
    found = _customers_qs().filter(pk=int(id)).first() if ID_RE.fullmatch(id) else None
    if found is None:
        raise Http404
    return found


def _contact_or_404(customer: Customer, contact: str) -> CustomerContact:
    found = (
        CustomerContact.objects.filter(customer=customer, pk=int(contact)).first()
        if ID_RE.fullmatch(contact)
        else None
    )
    if found is None:
        raise Http404
    return found


def query_flag(request: Request, name: str) -> bool | None:
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
        has_sla = query_flag(request, "has_sla")
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


urlpatterns = [
    path("customers/", CustomerListView.as_view(), name="customer-list"),
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
]
