"""The inbound webhooks, included at the site root by ``config.urls``.

``/v2/enqueue`` is PagerDuty's own path: a PagerDuty client given Vigil's base URL (or
Vigil's base URL + ``/hooks/pagerduty``) as its API base posts there unchanged.
"""

from django.urls import path

from . import views, views_ping, views_sns

app_name = "hooks"

urlpatterns = [
    path("hooks/alertmanager/<str:key>/", views.alertmanager_hook, name="alertmanager"),
    path("hooks/grafana/<str:key>/", views.grafana_hook, name="grafana"),
    path("hooks/generic/<str:key>/", views.generic_hook, name="generic"),
    path("hooks/pagerduty/v2/enqueue", views.pagerduty_enqueue, name="pagerduty"),
    path("hooks/cloudwatch/<str:key>/", views_sns.cloudwatch_hook, name="cloudwatch"),
    # Before the senders' route, which would take "ping" for a kind.
    path("hooks/ping/<str:key>/", views_ping.ping_hook, name="ping"),
    path("hooks/<slug:kind>/<str:key>/", views.sender_hook, name="sender"),
    path("v2/enqueue", views.pagerduty_enqueue, name="pagerduty-root"),
]
