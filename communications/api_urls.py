"""Staff API of public communication, under /api/v1/ (token or session, role permissions)."""

from django.urls import path

from . import api as updates_api

app_name = "communications-api"

urlpatterns: list = [
    path(
        "incidents/<str:id>/status-updates/",
        updates_api.StatusUpdateListView.as_view(),
        name="status-update-list",
    ),
    path(
        "incidents/<str:id>/status-updates/<int:pk>/",
        updates_api.StatusUpdateDetailView.as_view(),
        name="status-update-detail",
    ),
    path(
        "incidents/<str:id>/status-updates/<int:pk>/approve/",
        updates_api.StatusUpdateApproveView.as_view(),
        name="status-update-approve",
    ),
    path(
        "incidents/<str:id>/status-updates/<int:pk>/publish/",
        updates_api.StatusUpdatePublishView.as_view(),
        name="status-update-publish",
    ),
    path(
        "policy/communication/",
        updates_api.CommunicationPolicyView.as_view(),
        name="communication-policy",
    ),
]
