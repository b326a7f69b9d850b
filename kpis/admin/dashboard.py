"""The KPI dashboard in the admin (§9.1, §9.2, §8.3): each KPI against its target with its trend,
the last 12 months as charts from the stored rollups, the period's volume, SLA breaches, causes,
review findings, action items and customer impact; every number links to the incidents behind
it, every table exports as CSV. Pages beside the KPI definitions' admin URLs:

* ``dashboard/`` — the dashboard (GET filters: period, severity, service, source;
  ``?format=csv&table=...`` for a table's rows);
* ``dashboard/incidents/`` — the incidents behind one number (``kpi=&which=`` or
  ``table=&key=``, the same filters; ``?format=csv``);
* ``dashboard/compute/`` — POST: compute the stored months the charts are missing.

Staff with ``kpis.view_kpidefinition`` see it; computing needs ``kpis.change_kpidefinition``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from incidents.admin.extensions import admin_index_panel_register
from incidents.models import Service, SeverityLevel

from ..models import KpiDefinition
from ..services.periods import months_back
from ..services.rollups import kpi_month_recompute, month_of
from .dashboard_data import (
    DashboardFilterForm,
    Scope,
    compute_candidates,
    kpi_rows,
    months_of,
    summary_tables,
    target_text,
    trend,
    trend_end_month,
)
from .dashboard_tables import (
    CSV_TABLES,
    DrillError,
    bad_request,
    csv_response,
    dashboard_csv_rows,
    drill_csv,
    drill_incidents,
    drill_rows,
)

VIEW_PERMISSION = "kpis.view_kpidefinition"
COMPUTE_PERMISSION = "kpis.change_kpidefinition"
PAGE_SIZE = 100


def _filter_form(request: HttpRequest, data: Any) -> DashboardFilterForm:
    return DashboardFilterForm(
        data,
        levels=list(SeverityLevel.objects.order_by("level")),
        services=list(Service.objects.order_by("name")),
    )


def _errors_text(form: DashboardFilterForm) -> str:
    return " ".join(f"{name}: {error}" for name, errors in form.errors.items() for error in errors)


def _check(request: HttpRequest, permission: str = VIEW_PERMISSION) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _csv_requested(request: HttpRequest) -> bool:
    return request.GET.get("format") == "csv"


# ----- the dashboard ----------------------------------------------------------------------------


def dashboard_view(request: HttpRequest, *, admin_site: AdminSite) -> HttpResponse:
    _check(request)
    form = _filter_form(request, request.GET)
    if _csv_requested(request):
        return _dashboard_csv(request, form)
    context: dict[str, Any] = {
        **admin_site.each_context(request),
        "title": "KPI dashboard",
        "form": form,
    }
    if not form.is_valid():
        return TemplateResponse(request, "kpis/admin/dashboard.html", context, status=400)
    scope = Scope.from_form(form)
    levels = list(form.levels.values())
    definitions = list(KpiDefinition.objects.filter(is_active=True))
    rows, _ = kpi_rows(scope, definitions)
    history = trend(scope, definitions, levels)
    tables = summary_tables(scope, levels)
    can_compute = request.user.has_perm(COMPUTE_PERMISSION)
    context.update(
        {
            "scope": scope,
            "rows": rows,
            "trend": history,
            "tables": tables,
            "can_compute": can_compute,
            "compute_url": reverse("admin:kpis_dashboard_compute"),
            "csv": {
                table: scope.url("kpis_dashboard", format="csv", table=table)
                for table in CSV_TABLES
            },
            "definitions_url": reverse("admin:kpis_kpidefinition_changelist"),
        }
    )
    return TemplateResponse(request, "kpis/admin/dashboard.html", context)


def _dashboard_csv(request: HttpRequest, form: DashboardFilterForm) -> HttpResponse:
    if not form.is_valid():
        return bad_request(_errors_text(form))
    table = request.GET.get("table", "")
    if table not in CSV_TABLES:
        return bad_request(f"table must be one of {', '.join(CSV_TABLES)}.")
    scope = Scope.from_form(form)
    levels = list(form.levels.values())
    definitions = list(KpiDefinition.objects.filter(is_active=True))
    extra: dict[str, Any] = {}
    if table == "kpis":
        _, extra["results"] = kpi_rows(scope, definitions)
    elif table == "trend":
        extra["trend_rows"] = trend(scope, definitions, levels).rows
    elif table != "incidents":
        extra["tables"] = summary_tables(scope, levels)
    header, rows = dashboard_csv_rows(table, scope=scope, **extra)
    slug = scope.period.label.replace("..", "_")
    return csv_response(filename=f"vigil-kpis-{table}-{slug}.csv", header=header, rows=rows)


# ----- the incidents behind a number ------------------------------------------------------------


def incidents_view(request: HttpRequest, *, admin_site: AdminSite) -> HttpResponse:
    _check(request)
    form = _filter_form(request, request.GET)
    csv_wanted = _csv_requested(request)
    context: dict[str, Any] = {
        **admin_site.each_context(request),
        "title": "Incidents behind a KPI figure",
        "form": form,
        "dashboard_url": reverse("admin:kpis_dashboard"),
    }
    if not form.is_valid():
        if csv_wanted:
            return bad_request(_errors_text(form))
        return TemplateResponse(request, "kpis/admin/dashboard_incidents.html", context, status=400)
    scope = Scope.from_form(form)
    definitions = {d.slug: d for d in KpiDefinition.objects.filter(is_active=True)}
    params = {name: request.GET.get(name) for name in ("kpi", "which", "table", "key")}
    try:
        incidents, label, definition = drill_incidents(
            scope=scope, definitions=definitions, **params
        )
    except DrillError as error:
        if csv_wanted:
            return bad_request(str(error))
        context["drill_error"] = str(error)
        return TemplateResponse(request, "kpis/admin/dashboard_incidents.html", context, status=400)
    zone = scope.period.start.tzinfo
    if csv_wanted:
        header, rows = drill_csv(incidents, definition, zone)
        slug = scope.period.label.replace("..", "_")
        return csv_response(filename=f"vigil-kpi-incidents-{slug}.csv", header=header, rows=rows)
    page = Paginator(incidents, PAGE_SIZE).get_page(request.GET.get("page"))
    kept = {key: value for key, value in params.items() if value}
    context.update(
        {
            "title": label,
            "scope": scope,
            "definition": definition,
            "target": target_text(definition) if definition else "",
            "page": page,
            "rows": list(drill_rows(page.object_list, definition, zone)),
            "csv_url": scope.url("kpis_dashboard_incidents", format="csv", **kept),
            "page_url": scope.url("kpis_dashboard_incidents", **kept) + "&page=",
            "dashboard_url": scope.url("kpis_dashboard"),
        }
    )
    return TemplateResponse(request, "kpis/admin/dashboard_incidents.html", context)


# ----- computing the missing months -------------------------------------------------------------


def compute_view(request: HttpRequest, *, admin_site: AdminSite) -> HttpResponse:
    _check(request, COMPUTE_PERMISSION)
    form = _filter_form(request, request.POST)
    if not form.is_valid():
        return bad_request(_errors_text(form))
    scope = Scope.from_form(form)
    months = compute_candidates(months_of(trend_end_month(scope.period)))
    for month in months:
        kpi_month_recompute(month=month)
    if months:
        shown = ", ".join(f"{month:%Y-%m}" for month in months)
        messages.success(request, f"Computed {len(months)} month(s): {shown}.")
    else:
        messages.info(request, "Every month of the charts was already stored.")
    return HttpResponseRedirect(scope.url("kpis_dashboard"))


# ----- wiring -----------------------------------------------------------------------------------


def dashboard_urls(admin_site: AdminSite) -> list:
    """The dashboard's URLs, for the KPI definitions' ``ModelAdmin.get_urls``."""

    def bind(view: Callable[..., HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
        def bound(request: HttpRequest) -> HttpResponse:
            return view(request, admin_site=admin_site)

        bound.__name__ = view.__name__
        return bound

    wrap = admin_site.admin_view
    return [
        path("dashboard/", wrap(bind(dashboard_view)), name="kpis_dashboard"),
        path("dashboard/incidents/", wrap(bind(incidents_view)), name="kpis_dashboard_incidents"),
        path(
            "dashboard/compute/",
            wrap(require_POST(bind(compute_view))),
            name="kpis_dashboard_compute",
        ),
    ]


def _index_panel(*, request: HttpRequest) -> str:
    url = reverse("admin:kpis_dashboard")
    return format_html(
        '<p class="vigil-dashboard-links"><a href="{}">Open the KPI dashboard</a>: this month'
        "'s KPIs against their targets, the last 12 months' trend, volume, SLA breaches and "
        'root causes. <a href="{}?{}">Last month</a>.</p>',
        url,
        url,
        urlencode({"period": _last_month_label()}),
    )


def _last_month_label() -> str:
    return f"{months_back(month_of(timezone.now()), 1):%Y-%m}"


admin_index_panel_register(
    key="kpis", title="KPIs", render=_index_panel, permission=VIEW_PERMISSION
)
