"""Input and output of ``POST /api/v1/reports/``: a report from a person or a check."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..models import IncomingReport, ReportKind
from ..services.reports import DESCRIPTION_MAX
from .common import TextField, UserRefSerializer, iso, user_ref
from .incidents import NUMBER_PATTERN, IncidentSerializer


class ReportInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=ReportKind.choices,
        default=ReportKind.CUSTOMER_REPORT,
        help_text="Where the report comes from (§4.1); a new incident's detection source.",
    )
    reporter_name = TextField(
        max_length=200, required=False, allow_blank=True, help_text="Who reported it."
    )
    reporter_email = serializers.EmailField(
        max_length=254, required=False, allow_blank=True, help_text="How to reach them."
    )
    title = TextField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="A new incident's title; defaults to the description's first line.",
    )
    description = TextField(max_length=DESCRIPTION_MAX, help_text="What the reporter says.")
    services = serializers.ListField(
        child=serializers.SlugField(max_length=60),
        required=False,
        max_length=100,
        help_text="Slugs of the affected services.",
    )
    severity = serializers.IntegerField(
        min_value=1,
        max_value=4,
        required=False,
        allow_null=True,
        help_text="A new incident's severity (Sev 3 when not given); noted when appending.",
    )
    incident = serializers.RegexField(
        NUMBER_PATTERN,
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=24,
        help_text="ID of an existing incident to append the report to instead of opening one.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not (attrs.get("reporter_name") or "").strip() and not attrs.get("reporter_email"):
            raise serializers.ValidationError(
                {"reporter_name": ["Name the reporter, or give their email address."]}
            )
        return attrs


class IncomingReportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ReportKind.choices)
    channel = serializers.CharField(help_text="admin, api or email.")
    reporter_name = serializers.CharField()
    reporter_email = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    services = serializers.ListField(child=serializers.CharField())
    severity = serializers.IntegerField(allow_null=True)
    opened_incident = serializers.BooleanField(
        help_text="True when the report opened the incident, false when it was appended."
    )
    received_at = serializers.DateTimeField()
    submitted_by = UserRefSerializer(allow_null=True, help_text="The user who filed it.")

    def to_representation(self, report: IncomingReport) -> dict[str, Any]:
        return {
            "id": report.pk,
            "kind": report.kind,
            "channel": report.channel,
            "reporter_name": report.reporter_name,
            "reporter_email": report.reporter_email,
            "title": report.title,
            "description": report.description,
            "services": list(report.services),
            "severity": report.severity,
            "opened_incident": report.opened_incident,
            "received_at": iso(report.received_at),
            "submitted_by": user_ref(report.submitted_by),
        }


class ReportResultSerializer(serializers.Serializer):
    report = IncomingReportSerializer()
    incident = IncidentSerializer(help_text="The incident the report opened or was appended to.")
