"""Staff API of the customer CSV import, under /api/v1/: ``customers/import/`` takes a CSV
file as the body (``text/csv``) or uploaded as ``file`` (``multipart/form-data``);
``?dry_run=1`` checks and reports without writing. All or nothing: any bad row is a 400 listing
the rows (``errors`` keys ``row N.column``), nothing written. The import goes through
``communications.services.customers_csv``, which checks the role permissions.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import WRITE_ERRORS, error_responses
from incidents.errors import InvalidInput
from incidents.models import Source

from .api_customers import CUSTOMERS, query_flag
from .models import Customer
from .services.customers_csv import customers_import
from .services.customers_csv_format import IMPORT_COLUMNS, IMPORT_MAX_BYTES

# --- serializers ---------------------------------------------------------------------------------


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


# --- view ----------------------------------------------------------------------------------------


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
        dry_run = bool(query_flag(request, "dry_run"))
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


urlpatterns = [
    path("customers/import/", CustomerImportView.as_view(), name="customer-import"),
]
