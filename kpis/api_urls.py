"""The KPI API under /api/v1/: the KPIs, the incidents behind them, the monthly reports."""

from django.urls import path

from . import api

app_name = "kpis-api"

urlpatterns = [
    path("kpis/", api.KpiListView.as_view(), name="kpi-list"),
    path("kpis/<str:slug>/incidents/", api.KpiIncidentsView.as_view(), name="kpi-incidents"),
    path("reports/monthly/", api.MonthlyReportListView.as_view(), name="monthly-report-list"),
    path(
        "reports/monthly/<str:month>/",
        api.MonthlyReportDetailView.as_view(),
        name="monthly-report-detail",
    ),
    path(
        "reports/monthly/<str:month>/regenerate/",
        api.MonthlyReportRegenerateView.as_view(),
        name="monthly-report-regenerate",
    ),
]
