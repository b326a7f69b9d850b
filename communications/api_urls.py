"""Staff API of public communication, under /api/v1/ (token or session, role permissions)."""

from django.urls import path

from . import api as updates_api
from . import api_catalog, api_maintenance

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

# The status page's catalogue (components, groups) and maintenance windows.
urlpatterns += [
    path("components/", api_catalog.ComponentListView.as_view(), name="component-list"),
    path(
        "components/<str:code>/",
        api_catalog.ComponentDetailView.as_view(),
        name="component-detail",
    ),
    path(
        "component-groups/",
        api_catalog.ComponentGroupListView.as_view(),
        name="component-group-list",
    ),
    path(
        "component-groups/<str:id>/",
        api_catalog.ComponentGroupDetailView.as_view(),
        name="component-group-detail",
    ),
    path("maintenances/", api_maintenance.MaintenanceListView.as_view(), name="maintenance-list"),
    path(
        "maintenances/<str:id>/",
        api_maintenance.MaintenanceDetailView.as_view(),
        name="maintenance-detail",
    ),
    *[
        path(f"maintenances/<str:id>/{action}/", view.as_view(), name=f"maintenance-{action}")
        for action, view in api_maintenance.STEP_VIEWS.items()
    ],
]

# Social media posts for widespread outages: list, edit, approve, send, discard.
from . import api_social  # noqa: E402

urlpatterns += api_social.urlpatterns

# Customers and their contacts (with the CSV import), enterprise direct-contact tasks. The
# import's fixed path comes before ``customers/<id>/``.
from . import api_customers, api_customers_import, api_direct_contact  # noqa: E402

urlpatterns += api_customers_import.urlpatterns
urlpatterns += api_customers.urlpatterns
urlpatterns += api_direct_contact.urlpatterns

# The stakeholder schedule (§5.2): groups, an incident's schedule, notes, sends on demand.
from . import api_stakeholders  # noqa: E402

urlpatterns += api_stakeholders.urlpatterns

# Status-page subscribers (webhooks added by staff) and the suppression list.
from . import api_subscribers  # noqa: E402

urlpatterns += api_subscribers.urlpatterns
