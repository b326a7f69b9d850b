"""The monthly report (§9.2 monthly reports, §8.3 monthly metrics review): generated on the 1st
for the previous month by beat, regenerable on demand, kept as Markdown and ``data``, laid out
as a page in the admin and as PDF with the charts, e-mailed once per month to the KPI policy's
report recipients through the outbox.

``MonthlyReport.data`` (JSON, returned as-is by the API) has this shape; times are minutes,
percentages 0-100, scores out of 5, rates fractions 0-1, floats rounded to 2 decimals, ``None``
where there is nothing to measure::

    {
      "schema": 1,
      "month": "2026-11", "label": "November 2026",
      "period": {"start": ISO datetime, "end": ISO datetime (exclusive), "time_zone": "UTC"},
      "generated_at": ISO datetime (UTC), "version": 3,
      "first_contact_rule": {"value": "no_escalation", "label": "..."},
      "kpis": [                                   # one per active KPI, in position order
        {"slug", "name", "measure", "unit" ("minutes" | "percent" | "score"),
         "higher_is_better": bool, "severities": [1] ([] = all),
         "statistic": "mean" | "median" | "p90", "statistic_label",
         "target", "value" (the judged statistic), "mean", "median", "p90",
         "met": bool | None, "sample": int, "unmeasurable": int,
         "previous": {"month": "2026-10", "value", "met", "sample"},
         "change": value - previous value | None,
         "trend": "better" | "worse" | "same" | None}
      ],
      "trend": {                                  # the 12 months up to the report's, oldest first
        "months": ["2025-12", ..., "2026-11"],
        "kpis": [{"slug", "name", "unit", "statistic", "target",
                  "values": [judged statistic | None per month], "mean": [...],
                  "median": [...], "p90": [...], "sample": [...], "unmeasurable": [...]}]
      },
      "volume": {
        "total": int,
        "by_severity": [{"severity": 1, "label": "Sev 1 (Critical)", "count"}],
        "by_service": [{"slug", "name", "count"}],          # most first
        "by_source": [{"source", "label", "count"}],        # most first
        "trend": {"months": [...12], "by_severity": [{"severity", "counts": [...12]}],
                  "totals": [...12]}
      },
      "breaches": {"response": int, "resolution": int},
      "causes": [{"category", "label", "count"}],           # most first
      "wrong_areas": [{"area", "label", "count"}],
      "actions": {"total", "done", "wont_do", "open", "overdue", "done_on_time",
                  "completion_rate", "on_time_rate"},
      "customer_impact": {"customer_facing", "affected_users", "impact_hours"},
      "survey": {"invited", "rated", "commented", "response_rate", "mean",
                 "distribution": {"1": n, ..., "5": n}}
    }
"""

from .csv import TABLES, report_csv
from .generate import (
    EmailOutcome,
    MonthlyRun,
    idempotency_key,
    last_ended_month,
    monthly_report_email,
    monthly_report_generate,
    monthly_report_run,
    report_recipients,
)
from .markdown import report_markdown, report_sections
from .render import (
    PdfUnavailable,
    monthly_report_pdf,
    report_filename,
    report_html_sections,
)

__all__ = [
    "TABLES",
    "EmailOutcome",
    "MonthlyRun",
    "PdfUnavailable",
    "idempotency_key",
    "last_ended_month",
    "monthly_report_email",
    "monthly_report_generate",
    "monthly_report_pdf",
    "monthly_report_run",
    "report_csv",
    "report_filename",
    "report_html_sections",
    "report_markdown",
    "report_recipients",
    "report_sections",
]
