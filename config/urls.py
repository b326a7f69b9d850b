from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico by themselves: Vigil's icon (an SVG, in the static files)."""
    return HttpResponseRedirect(static("incidents/favicon.svg"))


urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    # REST API (incidents.api_urls: /api/v1/..., /api/schema/, /api/docs/).
    path("api/", include("incidents.api_urls")),
    # Email providers' webhooks (django-anymail): inbound email becomes customer reports.
    path("anymail/", include("incidents.inbound_urls")),
    # Delivery tracking of customer email (/anymail/<esp>/tracking/, VIGIL_EMAIL_TRACKING_PROVIDER).
    path("anymail/", include("communications.tracking_urls")),
    # Escalation: /healthz, one-click acknowledge links, /api/v1/incidents/{id}/notifications/...
    path("", include("escalation.urls")),
    # Public communication: /api/v1/incidents/{id}/status-updates/, components, maintenance.
    path("api/v1/", include("communications.api_urls")),
    path("api/v1/", include("reviews.api_urls")),
    path("api/v1/", include("kpis.api_urls")),  # KPIs, their incidents, monthly reports
    # The public status site: /status/ (page, Statuspage-compatible JSON, feeds, badges).
    path("", include("communications.urls")),
    path("survey/", include("kpis.public.urls")),  # the customer satisfaction survey's links
    # Inbound webhooks: /hooks/alertmanager|grafana|generic/<key>/, /hooks/pagerduty/v2/enqueue.
    path("", include("incidents.detection.urls")),
    # Prometheus exposition: /metrics (off unless VIGIL_METRICS_TOKEN or VIGIL_METRICS_ALLOW).
    path("", include("kpis.metrics_urls")),
]
