"""The KPI API: /api/v1/kpis/ (figures of known incidents, filters, by severity), the incidents
behind a number, the monthly reports (list, JSON, Markdown, PDF, regenerate); bad input is a 400
naming the field that computes and changes nothing; 401 anonymous, 403 without the role."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from kpis.models import KpiMonth, KpiPolicy, MonthlyReport, SurveyInvitation
from kpis.services.reports import PdfUnavailable, monthly_report_generate
from tests.factories import ServiceFactory

from .history import incident_at

pytestmark = pytest.mark.django_db

NOV = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
MID_NOVEMBER = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
MID_DECEMBER = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def incidents(db):
    """November: A (Sev 1, checkout: detect 2, respond 6, resolve 180 minutes, first contact),
    B (Sev 2, a customer report: 6, 20, 60, escalated), C (Sev 1, nothing measurable yet);
    October: D, never counted in November."""
    checkout = ServiceFactory(slug="checkout", name="Checkout")
    a = incident_at(
        NOV,
        severity=1,
        impact_before=timedelta(minutes=2),
        ack_after=timedelta(minutes=6),
        resolve_after=timedelta(hours=3),
        services=[checkout],
        title="Checkout down",
    )
    b = incident_at(
        NOV + timedelta(days=1),
        severity=2,
        impact_before=timedelta(minutes=6),
        ack_after=timedelta(minutes=20),
        resolve_after=timedelta(hours=1),
        source="customer_report",
        escalated=True,
        title="Slow search",
    )
    c = incident_at(
        NOV + timedelta(days=2),
        severity=1,
        impact_before=None,
        ack_after=None,
        resolve_after=None,
        title="Payments failing",
    )
    incident_at(NOV - timedelta(days=10), impact_before=timedelta(minutes=50))
    return {"a": a, "b": b, "c": c}


@pytest.fixture
def viewer_api(api_as, viewer):
    return api_as(viewer)


def kpis(response) -> dict[str, dict]:
    assert response.status_code == 200, response.content
    return {row["slug"]: row for row in response.json()["kpis"]}


def error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == status
    if field:
        assert body["code"] == "invalid"
        assert list(body["errors"]) == [field]
        assert body["errors"][field][0]
    return body


# --- /api/v1/kpis/ ------------------------------------------------------------------------------


def test_every_kpi_matches_the_known_incidents(viewer_api, incidents):
    response = viewer_api.get("/api/v1/kpis/", {"period": "2026-11"})

    body = response.json()
    assert body["period"] == {
        "label": "2026-11",
        "start": "2026-11-01T00:00:00+00:00",
        "end": "2026-12-01T00:00:00+00:00",
    }
    assert body["filters"] == {"severity": None, "service": None, "source": None}
    assert "by_severity" not in body
    figures = kpis(response)
    assert list(figures) == [
        "mttd",
        "time-to-respond",
        "time-to-resolve-sev1",
        "first-contact-resolution",
        "customer-satisfaction",
    ]
    detect = figures["mttd"]
    assert detect == {
        "slug": "mttd",
        "name": "Mean time to detect",
        "measure": "detect",
        "unit": "minutes",
        "statistic": "mean",
        "higher_is_better": False,
        "value": 4.0,
        "mean": 4.0,
        "median": 2.0,
        "p90": 6.0,
        "target": 5.0,
        "met": True,
        "sample_size": 2,
        "unmeasurable": 1,
        "severities": [],
        "incidents_url": "http://testserver/api/v1/kpis/mttd/incidents/?period=2026-11",
    }
    respond = figures["time-to-respond"]
    assert (respond["value"], respond["median"], respond["p90"]) == (13.0, 6.0, 20.0)
    assert (respond["sample_size"], respond["unmeasurable"], respond["met"]) == (2, 1, True)
    resolve = figures["time-to-resolve-sev1"]
    assert (resolve["value"], resolve["target"], resolve["met"]) == (180.0, 240.0, True)
    assert (resolve["sample_size"], resolve["unmeasurable"], resolve["severities"]) == (1, 1, [1])
    first_contact = figures["first-contact-resolution"]
    assert (first_contact["unit"], first_contact["value"], first_contact["met"]) == (
        "percent",
        50.0,
        False,
    )
    assert (first_contact["sample_size"], first_contact["unmeasurable"]) == (2, 1)
    satisfaction = figures["customer-satisfaction"]
    assert (satisfaction["unit"], satisfaction["value"], satisfaction["met"]) == (
        "score",
        None,
        None,
    )
    assert (satisfaction["sample_size"], satisfaction["target"]) == (0, 4.0)


def test_a_kpi_judged_on_another_statistic_says_which(viewer_api, incidents):
    from kpis.models import KpiDefinition

    KpiDefinition.objects.filter(slug="time-to-respond").update(statistic="p90")

    respond = kpis(viewer_api.get("/api/v1/kpis/", {"period": "2026-11"}))["time-to-respond"]

    assert (respond["statistic"], respond["value"], respond["met"]) == ("p90", 20.0, False)


FILTER_CASES = (
    ({"severity": "1"}, {"mttd": (2.0, 1, 1), "time-to-resolve-sev1": (180.0, 1, 1)}),
    ({"severity": "2"}, {"mttd": (6.0, 1, 0), "time-to-resolve-sev1": (None, 0, 0)}),
    ({"service": "checkout"}, {"mttd": (2.0, 1, 0), "first-contact-resolution": (100, 1, 0)}),
    (
        {"source": "customer_report"},
        {"time-to-respond": (20.0, 1, 0), "first-contact-resolution": (0, 1, 0)},
    ),
    ({"severity": "1", "source": "customer_report"}, {"mttd": (None, 0, 0)}),
    ({"period": "2026-10"}, {"mttd": (50.0, 1, 0), "time-to-resolve-sev1": (None, 0, 0)}),
    ({"period": "2026-11-04..2026-11-30"}, {"mttd": (6.0, 1, 1)}),
    ({"period": "2026-Q4"}, {"mttd": (pytest.approx(58 / 3, abs=0.01), 3, 1)}),
)


def test_filters_narrow_the_incidents_and_are_echoed(viewer_api, incidents):
    for params, expected in FILTER_CASES:
        response = viewer_api.get("/api/v1/kpis/", {"period": "2026-11", **params})

        figures = kpis(response)
        for slug, (value, sample, unmeasurable) in expected.items():
            row = figures[slug]
            got = (row["value"], row["sample_size"], row["unmeasurable"])
            assert got == (value, sample, unmeasurable), (params, slug)
        body = response.json()
        assert body["period"]["label"] == params.get("period", "2026-11")
        assert body["filters"] == {
            "severity": int(params["severity"]) if "severity" in params else None,
            "service": params.get("service"),
            "source": params.get("source"),
        }
        link = figures["mttd"]["incidents_url"]
        for name, value in params.items():
            assert f"{name}={value}" in link


def test_the_period_defaults_to_this_month_in_the_policys_time_zone(viewer_api, incidents):
    KpiPolicy.objects.filter(pk=1).update(time_zone="Europe/Paris")

    # 23:30 UTC on 30 November is already 1 December in Paris.
    with time_machine.travel(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), tick=False):
        december = viewer_api.get("/api/v1/kpis/").json()
    with time_machine.travel(datetime(2026, 11, 30, 22, 30, tzinfo=UTC), tick=False):
        november = viewer_api.get("/api/v1/kpis/")

    assert december["period"] == {
        "label": "2026-12",
        "start": "2026-12-01T00:00:00+01:00",
        "end": "2027-01-01T00:00:00+01:00",
    }
    assert november.json()["period"]["label"] == "2026-11"
    assert kpis(november)["mttd"]["sample_size"] == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "2026-13"}, "period"),
        ({"period": "november"}, "period"),
        ({"period": "2026-11-30..2026-11-01"}, "period"),
        ({"severity": "9"}, "severity"),
        ({"severity": "one"}, "severity"),
        ({"service": "no-such-service"}, "service"),
        ({"service": "not a slug"}, "service"),
        ({"source": "carrier_pigeon"}, "source"),
        ({"by": "service"}, "by"),
        ({"by": "severity", "severity": "1"}, "by"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it_and_computes_nothing(viewer_api, incidents, params, field):
    with CaptureQueriesContext(connection) as queries:
        response = viewer_api.get("/api/v1/kpis/", params)

    body = error(response, 400, field)
    assert field in body["detail"]
    assert not [q for q in queries.captured_queries if "incidents_incident" in q["sql"]]
    assert not KpiMonth.objects.exists()


def test_anonymous_is_401_and_without_the_permission_or_staff_403(
    api_as, make_user, viewer, incidents
):
    assert error(APIClient().get("/api/v1/kpis/"), 401)["code"] == "not_authenticated"
    no_role = make_user(username="nobody")
    body = error(api_as(no_role).get("/api/v1/kpis/"), 403)
    assert body["detail"] == "Your roles do not allow you to view the KPIs."
    viewer.is_staff = False
    viewer.save(update_fields=["is_staff"])
    error(api_as(viewer).get("/api/v1/kpis/"), 403)
    error(api_as(viewer).get("/api/v1/kpis/mttd/incidents/"), 403)


def test_by_severity_gives_each_level_in_a_bounded_number_of_queries(
    viewer_api, incidents, django_assert_max_num_queries
):
    with django_assert_max_num_queries(80):
        response = viewer_api.get("/api/v1/kpis/", {"period": "2026-11", "by": "severity"})

    body = response.json()
    assert kpis(response)["mttd"]["sample_size"] == 2
    levels = {row["severity"]: {k["slug"]: k for k in row["kpis"]} for row in body["by_severity"]}
    assert list(levels) == [1, 2, 3, 4]
    assert (levels[1]["mttd"]["value"], levels[1]["mttd"]["unmeasurable"]) == (2.0, 1)
    assert (levels[2]["mttd"]["value"], levels[2]["mttd"]["met"]) == (6.0, False)
    assert levels[2]["time-to-respond"]["value"] == 20.0
    # The Sev 1 resolution KPI has no sample over Sev 2: nothing to judge.
    assert levels[2]["time-to-resolve-sev1"]["sample_size"] == 0
    assert levels[2]["time-to-resolve-sev1"]["met"] is None
    assert all(k["sample_size"] == 0 for k in levels[3].values())
    assert levels[1]["mttd"]["incidents_url"].endswith("?period=2026-11&severity=1")


# --- /api/v1/kpis/{slug}/incidents/ -------------------------------------------------------------


def rows(response) -> list[tuple]:
    assert response.status_code == 200, response.content
    return [(r["number"], r["value"], r["met"]) for r in response.json()["results"]]


def test_the_incidents_behind_each_number(viewer_api, incidents):
    a, b, c = incidents["a"].number, incidents["b"].number, incidents["c"].number
    url = "/api/v1/kpis/mttd/incidents/"

    sample = viewer_api.get(url, {"period": "2026-11"})
    assert rows(sample) == [(b, 6.0, False), (a, 2.0, True)]  # latest detected first
    first = sample.json()["results"][0]
    assert first == {
        "number": b,
        "title": "Slow search",
        "severity": 2,
        "status": "resolved",
        "detected_at": "2026-11-04T10:00:00Z",
        "value": 6.0,
        "met": False,
        "url": f"http://testserver/api/v1/incidents/{b}/",
    }
    assert viewer_api.get(first["url"]).json()["id"] == b
    assert rows(viewer_api.get(url, {"period": "2026-11", "which": "unmeasurable"})) == [
        (c, None, None)
    ]
    assert rows(viewer_api.get(url, {"period": "2026-11", "which": "met"})) == [(a, 2.0, True)]
    assert rows(viewer_api.get(url, {"period": "2026-11", "which": "missed"})) == [(b, 6.0, False)]
    assert rows(viewer_api.get(url, {"period": "2026-11", "severity": "1"})) == [(a, 2.0, True)]
    fcr = "/api/v1/kpis/first-contact-resolution/incidents/"
    assert rows(viewer_api.get(fcr, {"period": "2026-11", "which": "missed"})) == [(b, 0, False)]
    assert rows(viewer_api.get(fcr, {"period": "2026-11", "which": "met"})) == [(a, 100, True)]
    resolve = "/api/v1/kpis/time-to-resolve-sev1/incidents/"
    assert rows(viewer_api.get(resolve, {"period": "2026-11"})) == [(a, 180.0, True)]


def test_satisfaction_and_its_incidents_from_the_survey_ratings(viewer_api, incidents):
    a, b, c = incidents["a"], incidents["b"], incidents["c"]
    for incident, email, rating in [
        (a, "ana@acme.test", 5),
        (a, "bo@acme.test", 3),
        (b, "cy@acme.test", 2),
        (c, "di@acme.test", None),
    ]:
        SurveyInvitation.objects.create(
            incident=incident,
            email=email,
            sent_at=NOV + timedelta(days=3),
            expires_at=NOV + timedelta(days=17),
            rating=rating,
            rated_at=NOV + timedelta(days=4) if rating else None,
        )

    row = kpis(viewer_api.get("/api/v1/kpis/", {"period": "2026-11"}))["customer-satisfaction"]
    assert (row["value"], row["sample_size"], row["unmeasurable"], row["met"]) == (
        3.33,
        3,
        1,
        False,
    )
    url = "/api/v1/kpis/customer-satisfaction/incidents/"
    first = viewer_api.get(url, {"period": "2026-11", "page_size": 1})
    second = viewer_api.get(first.json()["next"])
    assert rows(first) + rows(second) == [(b.number, 2.0, False), (a.number, 4.0, True)]
    assert second.json()["next"] is None
    assert rows(viewer_api.get(url, {"period": "2026-11", "which": "unmeasurable"})) == [
        (c.number, None, None)
    ]


def test_the_kpi_list_links_to_its_incidents(viewer_api, incidents):
    link = kpis(viewer_api.get("/api/v1/kpis/", {"period": "2026-11", "severity": "1"}))["mttd"]

    assert rows(viewer_api.get(link["incidents_url"])) == [(incidents["a"].number, 2.0, True)]


def test_incidents_bad_input(viewer_api, incidents):
    body = error(viewer_api.get("/api/v1/kpis/no-such-kpi/incidents/"), 404)
    assert body["code"] == "not_found"
    error(viewer_api.get("/api/v1/kpis/mttd/incidents/", {"which": "worst"}), 400, "which")
    error(viewer_api.get("/api/v1/kpis/mttd/incidents/", {"period": "2026-00"}), 400, "period")
    error(viewer_api.get("/api/v1/kpis/mttd/incidents/", {"cursor": "forged"}), 400, "cursor")


def test_incidents_are_cursor_paginated_in_a_pinned_number_of_queries(
    viewer_api, incidents, django_assert_num_queries
):
    for day in range(5, 9):
        incident_at(NOV + timedelta(days=day), impact_before=timedelta(minutes=day))
    url = "/api/v1/kpis/mttd/incidents/"

    # The token (two), the user's permissions (two), the definition, the policy (its time
    # zone, its first-contact rule) and the page: none per incident. The time zone is kept per
    # process once read, while the policy is unchanged.
    with django_assert_num_queries(8):
        page = viewer_api.get(url, {"period": "2026-11", "page_size": 4})
    with django_assert_num_queries(7):
        viewer_api.get(url, {"period": "2026-11", "page_size": 1})

    seen = [row[0] for row in rows(page)]
    assert len(seen) == 4
    second = viewer_api.get(page.json()["next"])
    seen += [row[0] for row in rows(second)]
    assert second.json()["next"] is None
    assert len(seen) == len(set(seen)) == 6
    assert seen[-2:] == [incidents["b"].number, incidents["a"].number]


# --- /api/v1/reports/monthly/ --------------------------------------------------------------------


def stored_report(month: date, **fields) -> MonthlyReport:
    values = {
        "markdown": f"# Incident report {month:%B %Y}\n\nAll five targets met.\n",
        "data": {"schema": 1, "month": f"{month:%Y-%m}", "kpis": [{"slug": "mttd", "value": 4}]},
        "generated_at": datetime.combine(next_month_of(month), datetime.min.time(), UTC),
        "version": 1,
        **fields,
    }
    return MonthlyReport.objects.create(month=month, **values)


def next_month_of(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def test_reports_list_latest_first_with_links(viewer_api, django_assert_max_num_queries):
    stored_report(date(2026, 9, 1))
    stored_report(
        date(2026, 10, 1),
        version=2,
        emailed_at=datetime(2026, 11, 1, 6, tzinfo=UTC),
        emailed_to=["cto@example.com"],
    )
    MonthlyReport.objects.create(month=date(2026, 8, 1))  # a row never generated: not listed

    # The token (two), the user's permissions (two) and the page.
    with django_assert_max_num_queries(5):
        response = viewer_api.get("/api/v1/reports/monthly/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["month"] for r in results] == ["2026-10", "2026-09"]
    october = results[0]
    base = "http://testserver/api/v1/reports/monthly/2026-10/"
    assert october == {
        "month": "2026-10",
        "version": 2,
        "generated_at": "2026-11-01T00:00:00Z",
        "emailed_at": "2026-11-01T06:00:00Z",
        "links": {
            "self": base,
            "markdown": f"{base}?format=md",
            "pdf": f"{base}?format=pdf",
            "regenerate": f"{base}regenerate/",
        },
    }


def test_a_report_as_json_and_as_markdown(viewer_api):
    report = stored_report(date(2026, 10, 1), emailed_to=["cto@example.com"])

    body = viewer_api.get("/api/v1/reports/monthly/2026-10/").json()
    assert body["data"] == report.data
    assert body["markdown"] == report.markdown
    assert (body["month"], body["version"], body["emailed_to"]) == (
        "2026-10",
        1,
        ["cto@example.com"],
    )
    assert body["generated_by"] is None

    for request in (
        {"path": "/api/v1/reports/monthly/2026-10/", "data": {"format": "md"}},
        {"path": "/api/v1/reports/monthly/2026-10/", "HTTP_ACCEPT": "text/markdown"},
    ):
        response = viewer_api.get(**request)
        assert response.status_code == 200
        assert response["Content-Type"] == "text/markdown; charset=utf-8"
        assert response.content.decode() == report.markdown
        assert 'filename="vigil-report-2026-10.md"' in response["Content-Disposition"]


@time_machine.travel(MID_NOVEMBER, tick=False)
@pytest.mark.parametrize(
    ("month", "message"),
    [
        ("2026-11", "The report of 2026-11 is generated on 2026-12-01"),
        ("2027-03", "The report of 2027-03 is generated on 2027-04-01"),
        ("2026-09", "No report has been generated for 2026-09"),
    ],
)
def test_a_month_not_generated_is_a_404_saying_when_it_will_be(viewer_api, month, message):
    for fmt in ("json", "md", "pdf"):
        response = viewer_api.get(f"/api/v1/reports/monthly/{month}/", {"format": fmt})
        body = error(response, 404)
        assert response["Content-Type"] == "application/json"
        assert body["detail"].startswith(message)


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "26-11", "november"])
def test_a_malformed_month_is_a_400(viewer_api, month):
    error(viewer_api.get(f"/api/v1/reports/monthly/{month}/"), 400, "month")


def test_an_unknown_format_is_a_400(viewer_api):
    stored_report(date(2026, 10, 1))

    error(viewer_api.get("/api/v1/reports/monthly/2026-10/", {"format": "docx"}), 400, "format")


def test_reports_need_the_view_permission(api_as, make_user):
    stored_report(date(2026, 10, 1))
    no_role = api_as(make_user(username="nobody"))

    for path in ("/api/v1/reports/monthly/", "/api/v1/reports/monthly/2026-10/"):
        assert error(no_role.get(path), 403)["detail"] == (
            "Your roles do not allow you to view the monthly reports."
        )
        error(APIClient().get(path), 401)


@pytest.fixture
def october_report(incidents):
    """October's report, generated for real in mid-November (D is its one incident)."""
    with time_machine.travel(MID_NOVEMBER, tick=False):
        return monthly_report_generate(month=date(2026, 10, 1))


def test_a_report_as_pdf(viewer_api, monkeypatch):
    # The PDF itself (WeasyPrint, the charts) is tested with the report; laying one out takes
    # seconds, so here the API's part: which report, the type, the file name.
    report = stored_report(date(2026, 10, 1))
    laid_out = []

    def pdf(*, report):
        laid_out.append(report.month)
        return b"%PDF-1.7 the report"

    monkeypatch.setattr("kpis.api.monthly_report_pdf", pdf)

    response = viewer_api.get("/api/v1/reports/monthly/2026-10/", {"format": "pdf"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content == b"%PDF-1.7 the report"
    assert response["Content-Disposition"] == 'attachment; filename="vigil-report-2026-10.pdf"'
    accepted = viewer_api.get("/api/v1/reports/monthly/2026-10/", HTTP_ACCEPT="application/pdf")
    assert accepted.content == b"%PDF-1.7 the report"
    assert laid_out == [report.month, report.month]


def test_without_weasyprint_the_pdf_is_a_json_503(viewer_api, monkeypatch):
    stored_report(date(2026, 10, 1))

    def pdf(*, report):
        raise PdfUnavailable("No Pango.")

    monkeypatch.setattr("kpis.api.monthly_report_pdf", pdf)

    response = viewer_api.get("/api/v1/reports/monthly/2026-10/", {"format": "pdf"})

    assert error(response, 503)["code"] == "pdf_unavailable"
    assert response["Content-Type"] == "application/json"
    assert viewer_api.get("/api/v1/reports/monthly/2026-10/", {"format": "md"}).status_code == 200


def test_regenerating_a_report_bumps_its_version(api_as, incident_manager, october_report):
    api = api_as(incident_manager)

    with time_machine.travel(MID_DECEMBER, tick=False):
        response = api.post("/api/v1/reports/monthly/2026-10/regenerate/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["month"], body["version"]) == ("2026-10", 2)
    assert body["generated_at"] == "2026-12-15T12:00:00Z"
    assert body["generated_by"]["username"] == "im"
    assert body["data"]["month"] == "2026-10"
    assert body["data"]["volume"]["total"] == 1
    assert body["markdown"]
    assert MonthlyReport.objects.get(month=date(2026, 10, 1)).version == 2


@time_machine.travel(MID_DECEMBER, tick=False)
def test_regenerating_a_month_never_generated_generates_it(api_as, incident_manager, incidents):
    response = api_as(incident_manager).post("/api/v1/reports/monthly/2026-11/regenerate/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["version"], body["emailed_at"], body["emailed_to"]) == (1, None, [])
    mttd = next(k for k in body["data"]["kpis"] if k["slug"] == "mttd")
    assert (mttd["value"], mttd["sample"], mttd["unmeasurable"]) == (4.0, 2, 1)


@time_machine.travel(MID_NOVEMBER, tick=False)
@pytest.mark.parametrize(
    ("month", "field"),
    [("2026-11", "month"), ("2027-01", "month"), ("2026-13", "month")],
)
def test_regenerating_a_month_not_ended_or_malformed_is_a_400(
    api_as, incident_manager, month, field
):
    response = api_as(incident_manager).post(f"/api/v1/reports/monthly/{month}/regenerate/")

    body = error(response, 400, field)
    if month != "2026-13":
        assert "has not ended yet" in body["detail"]
    assert not MonthlyReport.objects.exists()


def test_regenerating_needs_its_permission(api_as, viewer, october_report):
    response = api_as(viewer).post("/api/v1/reports/monthly/2026-10/regenerate/")

    body = error(response, 403)
    assert body["detail"] == "Your roles do not allow you to regenerate monthly reports."
    assert MonthlyReport.objects.get().version == 1
    error(APIClient().post("/api/v1/reports/monthly/2026-10/regenerate/"), 401)


def test_the_schema_documents_the_kpi_api(db):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    for path in (
        "/api/v1/kpis/",
        "/api/v1/kpis/{slug}/incidents/",
        "/api/v1/reports/monthly/",
        "/api/v1/reports/monthly/{month}/",
        "/api/v1/reports/monthly/{month}/regenerate/",
    ):
        assert path in schema["paths"], path
    report = schema["paths"]["/api/v1/reports/monthly/{month}/"]["get"]["responses"]
    assert set(report["200"]["content"]) == {"application/json", "text/markdown", "application/pdf"}
    assert set(report["404"]["content"]) == {"application/json"}
    value = schema["components"]["schemas"]["KpiResult"]["properties"]["value"]
    assert (
        "minutes"
        in schema["components"]["schemas"]["KpiResult"]["properties"]["unit"]["description"]
    )
    assert value["nullable"] is True
