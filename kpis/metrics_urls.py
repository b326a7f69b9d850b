"""/metrics: the Prometheus exposition (off unless VIGIL_METRICS_TOKEN or VIGIL_METRICS_ALLOW)."""

from django.urls import path

from . import metrics

app_name = "kpis-metrics"

urlpatterns = [
    path("metrics", metrics.metrics, name="metrics"),
]
