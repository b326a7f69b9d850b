"""``/api/v1/integrations/...`` (with their routing rules) and ``/api/v1/maintenance-windows/``,
included in the API's v1 routes by ``incidents.api_urls``."""

from django.urls import path

from ..api.integrations import (
    IntegrationDetailView,
    IntegrationListView,
    IntegrationRotateSecretView,
)
from ..api.maintenance import (
    MaintenanceWindowDetailView,
    MaintenanceWindowListView,
    RoutingRuleDetailView,
    RoutingRuleListView,
)

urlpatterns = [
    path("integrations/", IntegrationListView.as_view(), name="api-integration-list"),
    path("integrations/<str:id>/", IntegrationDetailView.as_view(), name="api-integration-detail"),
    path(
        "integrations/<str:id>/rotate-secret/",
        IntegrationRotateSecretView.as_view(),
        name="api-integration-rotate-secret",
    ),
    path(
        "integrations/<str:id>/routing-rules/",
        RoutingRuleListView.as_view(),
        name="api-routing-rule-list",
    ),
    path(
        "integrations/<str:id>/routing-rules/<str:rule_id>/",
        RoutingRuleDetailView.as_view(),
        name="api-routing-rule-detail",
    ),
    path(
        "maintenance-windows/",
        MaintenanceWindowListView.as_view(),
        name="api-maintenance-window-list",
    ),
    path(
        "maintenance-windows/<str:id>/",
        MaintenanceWindowDetailView.as_view(),
        name="api-maintenance-window-detail",
    ),
]
