"""Escalation routes: the /healthz watchdog, one-click acknowledge links, and the incident's
notification and escalation lists in the API."""

from django.urls import path

from . import ack, api, health

app_name = "escalation"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    # A link's key travels in the URL's fragment, never in the path (see ``ack``).
    path("ack/", ack.acknowledge_link, name="ack"),
    path("ack/<str:token>/", ack.acknowledge_link_retired, name="ack-retired"),
    path(
        "api/v1/incidents/<str:number>/notifications/",
        api.IncidentNotificationList.as_view(),
        name="incident-notifications",
    ),
    path(
        "api/v1/incidents/<str:number>/escalations/",
        api.IncidentEscalationList.as_view(),
        name="incident-escalations",
    ),
]
