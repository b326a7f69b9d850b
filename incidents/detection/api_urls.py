"""``/api/v1/integrations/...``, included in the API's v1 routes by ``incidents.api_urls``."""

from django.urls import path

from ..api.integrations import (
    IntegrationDetailView,
    IntegrationListView,
    IntegrationRotateSecretView,
)

urlpatterns = [
    path("integrations/", IntegrationListView.as_view(), name="api-integration-list"),
    path("integrations/<str:id>/", IntegrationDetailView.as_view(), name="api-integration-detail"),
    path(
        "integrations/<str:id>/rotate-secret/",
        IntegrationRotateSecretView.as_view(),
        name="api-integration-rotate-secret",
    ),
]
