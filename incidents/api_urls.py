"""REST API routes under /api/: /api/v1/..., the OpenAPI schema and its browsable docs.

/api/v1/incidents/{id}/notifications/ and /escalations/ belong to the escalation app.
"""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from incidents.api import catalog
from incidents.api.incidents import (
    ACTION_VIEWS,
    IncidentDetailView,
    IncidentHistoryView,
    IncidentListView,
    IncidentRolesView,
    IncidentTimelineView,
)
from incidents.api.reports import ReportCreateView

v1 = [
    path("incidents/", IncidentListView.as_view(), name="api-incident-list"),
    path("incidents/<str:id>/", IncidentDetailView.as_view(), name="api-incident-detail"),
    path(
        "incidents/<str:id>/timeline/", IncidentTimelineView.as_view(), name="api-incident-timeline"
    ),
    path("incidents/<str:id>/roles/", IncidentRolesView.as_view(), name="api-incident-roles"),
    path("incidents/<str:id>/history/", IncidentHistoryView.as_view(), name="api-incident-history"),
    *[
        path(f"incidents/<str:id>/{action}/", view.as_view(), name=f"api-incident-{action}")
        for action, view in ACTION_VIEWS.items()
    ],
    path("reports/", ReportCreateView.as_view(), name="api-report-create"),
    path("", include("incidents.detection.api_urls")),  # integrations/
    path("services/", catalog.ServiceListView.as_view(), name="api-service-list"),
    path("services/<str:slug>/", catalog.ServiceDetailView.as_view(), name="api-service-detail"),
    path("policy/severities/", catalog.SeverityListView.as_view(), name="api-policy-severities"),
    path(
        "policy/severities/<str:level>/",
        catalog.SeverityDetailView.as_view(),
        name="api-policy-severity",
    ),
    path(
        "policy/priority-matrix/",
        catalog.PriorityMatrixView.as_view(),
        name="api-policy-priority-matrix",
    ),
    path(
        "policy/priority-matrix/<str:urgency>/<str:impact>/",
        catalog.PriorityCellView.as_view(),
        name="api-policy-priority-cell",
    ),
    path("policy/roles/", catalog.ResponseRoleListView.as_view(), name="api-policy-roles"),
    path(
        "policy/roles/<str:key>/", catalog.ResponseRoleDetailView.as_view(), name="api-policy-role"
    ),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
