#!/usr/bin/env python
"""Benchmark: KPI computation and the stored monthly rollups, on PostgreSQL.

Seeds (bulk, like ``bench/admin_list.py``, whose seeder it reuses) ``--incidents`` incidents at
100 a day, most with an impact-start time, then measures in the same run:

1. **One month's KPIs, live.** ``kpi_results`` for the last whole month (every seeded KPI:
   counts, means, medians and 90th percentiles, first-contact resolution, satisfaction) against
   a baseline of ONE aggregate query over the same month (count and mean resolution time).
   Shows what the full set of KPIs costs over the simplest figure of the month.
2. **Twelve months for the charts.** The trend read from the stored rollups (``kpi_trend``)
   against computing the twelve months live (``kpi_results`` per month): why the dashboard
   reads rollups.
3. **Recomputing one month** (``kpi_month_recompute``: every KPI per severity, per service and
   both, and the month's summary), against (1).
4. **The dashboard page** ``/admin/kpis/kpidefinition/dashboard/`` against the admin index
   ``/admin/``, with query counts.

Medians of ``--repeat`` runs each, after a warm-up.

    python bench/kpis.py [--database-url postgres://postgres@127.0.0.1:5432/vigil_bench_kpis]
                         [--incidents 50000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.admin_list import Seeder, configure, plan, recreate_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vigil_bench_kpis"
        ),
        help="PostgreSQL database to (re)create for the bench; it is dropped first.",
    )
    parser.add_argument("--incidents", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    return parser.parse_args()


@contextlib.contextmanager
def counting(connection):
    """The queries run inside the block, counted as the database sees them (an execute wrapper,
    whatever the DEBUG setting)."""
    executed: list[str] = []

    def wrapper(execute, sql, params, many, context):
        executed.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield executed


def timed(function, repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls after one warm-up call."""
    function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> int:
    args = parse_args()
    configure(args.database_url)
    print(f"Database: {args.database_url} (recreated)")
    recreate_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F
    from django.test import Client
    from django.test.utils import override_settings
    from django.utils import timezone

    from incidents.models import Incident
    from kpis.selectors import kpi_results, kpi_trend, period_month
    from kpis.services.periods import months_back
    from kpis.services.rollups import kpi_month_recompute, kpi_months_refresh, month_of

    call_command("migrate", verbosity=0)
    now = timezone.now().replace(microsecond=0)
    started = time.perf_counter()
    seeder = Seeder(now)
    seeder.insert(plan(args.incidents, now))
    with connection.cursor() as cursor:
        # Most incidents get an impact-start time 0-14 minutes before detection; one in eight
        # has none ("not measurable" for time to detect).
        cursor.execute(
            "UPDATE incidents_incident SET impact_started_at = detected_at"
            " - (id % 15) * interval '1 minute' WHERE id % 8 <> 0"
        )
    print(f"Seeded {Incident.objects.count():,} incidents in {time.perf_counter() - started:.1f} s")

    last_month = months_back(month_of(now), 1)
    period = period_month(last_month)
    in_month = Incident.objects.filter(detected_at__gte=period.start, detected_at__lt=period.end)
    print(f"Last whole month {period.label}: {in_month.count():,} incidents")

    def baseline():
        in_month.aggregate(
            n=Count("pk"),
            resolve=Avg(
                ExpressionWrapper(F("resolved_at") - F("detected_at"), output_field=DurationField())
            ),
        )

    def live_month():
        kpi_results(period=period)

    started = time.perf_counter()
    refreshed = kpi_months_refresh(now=now)
    print(f"Nightly refresh of {refreshed} months: {time.perf_counter() - started:.1f} s")

    def live_trend():
        for n in range(12):
            kpi_results(period=period_month(months_back(month_of(now), n)))

    def stored_trend():
        kpi_trend(end_month=month_of(now))

    def recompute():
        kpi_month_recompute(month=last_month)

    base_ms = timed(baseline, args.repeat)
    live_ms = timed(live_month, args.repeat)
    stored_ms = timed(stored_trend, args.repeat)
    live_trend_ms = timed(live_trend, max(3, args.repeat // 2))
    recompute_ms = timed(recompute, max(3, args.repeat // 2))

    with counting(connection) as live_queries:
        live_month()
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    page = {}
    with override_settings(STORAGES=storages):
        client = Client()
        client.force_login(seeder.admin)
        pages = (("dashboard", "/admin/kpis/kpidefinition/dashboard/"), ("index", "/admin/"))
        for name, url in pages:
            response = client.get(url)
            if response.status_code != 200:
                print(f"  {url} answered {response.status_code}: not measured")
                continue
            with counting(connection) as queries:
                client.get(url)
            page[name] = (timed(lambda url=url: client.get(url), args.repeat), len(queries))

    print()
    print(f"Median of {args.repeat} runs (ms), ratios against a baseline in this run:")
    print(f"  one aggregate query over {period.label} (baseline): {base_ms:9.1f}")
    print(
        f"  kpi_results({period.label}), {len(live_queries)} queries: {live_ms:9.1f}"
        f"   = {live_ms / base_ms:5.1f}x the baseline"
    )
    print(
        f"  12-month trend, live (12 x kpi_results):        {live_trend_ms:9.1f}"
        f"   = {live_trend_ms / stored_ms:5.1f}x the stored trend"
    )
    print(f"  12-month trend from stored rollups:             {stored_ms:9.1f}")
    print(
        f"  kpi_month_recompute({period.label}):               {recompute_ms:9.1f}"
        f"   = {recompute_ms / live_ms:5.1f}x the live month"
    )
    if len(page) == 2:
        (dash_ms, dash_q), (index_ms, index_q) = page["dashboard"], page["index"]
        print(
            f"  /admin/kpis/kpidefinition/dashboard/ ({dash_q} queries):        {dash_ms:9.1f}"
            f"   = {dash_ms / index_ms:5.1f}x /admin/ ({index_q} queries, {index_ms:.1f} ms)"
        )
    print(f"Load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
