"""``POST /api/v1/reports/``: customer reports, support escalations, third-party notifications
and routine checks (§4.1) filed by a script, a chat bot or a support tool. The report opens an
incident or is appended to the one it names, through ``incidents.services.reports``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import Incident, IncomingReport, Source
from ..selectors import incident_get
from ..serializers.reports import (
    IncomingReportSerializer,
    ReportInputSerializer,
    ReportResultSerializer,
)
from ..services.reports import report_submit
from .base import VigilAPIView
from .errors import WRITE_ERRORS, error_responses
from .incidents import IncidentViewMixin


class CanReport(BasePermission):
    """Filing a report may open an incident: it takes the permission to log one."""

    message = "Your roles do not allow you to report incidents."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("incidents.add_incident"))


class ReportCreateView(IncidentViewMixin, VigilAPIView):
    permission_classes = [CanReport]
    permission_model = Incident

    @extend_schema(
        tags=["reports"],
        operation_id="reports_create",
        summary="Report an incident (customer report, support escalation, ...)",
        description=(
            "Opens an incident with the report's kind as detection source, its title (or the "
            "description's first line), the description as summary, the services and the "
            "severity given (Sev 3 when none), and pages the response team as any new incident "
            "does. With `incident`, the report is appended to that incident's timeline "
            "instead. Either way the reporter and the description go on the timeline. Needs "
            "the permission to log incidents."
        ),
        request=ReportInputSerializer,
        responses={201: ReportResultSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = ReportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        number = data.pop("incident", None)
        target = None
        if number:
            target = incident_get(number=number)
            if target is None:
                raise serializers.ValidationError({"incident": [f"No incident {number}."]})
        outcome = report_submit(actor=request.user, source=Source.API, incident=target, **data)
        report = IncomingReport.objects.select_related("submitted_by").get(pk=outcome.report.pk)
        return Response(
            {
                "report": IncomingReportSerializer(report).data,
                "incident": self.incident_response(outcome.incident).data,
            },
            status=status.HTTP_201_CREATED,
        )
