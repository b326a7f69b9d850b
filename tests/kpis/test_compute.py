"""KPIs computed from incident timestamps and the timeline: which incidents count, mean, median
and 90th percentile, per severity, service and source, first-contact resolution by either rule,
and the incidents behind each number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from incidents.models import Source
from incidents.services import incident_transition
from kpis.models import KpiDefinition, KpiPolicy
from kpis.selectors import kpi_incidents, kpi_results, period_month, period_parse
from tests.factories import ServiceFactory

from .history import incident_at

pytestmark = pytest.mark.django_db

NOV = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def results(period="2026-11", **kwargs):
    return {r.definition.slug: r for r in kpi_results(period=period_parse(period), **kwargs)}


def test_time_kpis_mean_median_p90_and_unmeasurable():
    # Detect: 1, 2, 3, ..., 10 minutes; one without an impact-start time.
    for minutes in range(1, 11):
        incident_at(
            NOV + timedelta(hours=minutes),
            impact_before=timedelta(minutes=minutes),
            ack_after=timedelta(minutes=minutes * 2),
        )
    incident_at(NOV + timedelta(days=1), impact_before=None, ack_after=None, resolve_after=None)

    figures = results()
    detect = figures["mttd"]
    assert (detect.sample, detect.unmeasurable) == (10, 1)
    assert detect.mean == pytest.approx(5.5)
    assert detect.median == pytest.approx(5)  # nearest rank: the 5th of 10
    assert detect.p90 == pytest.approx(9)  # the 9th of 10
    assert detect.target == 5 and detect.met is False  # judged on the mean

    respond = figures["time-to-respond"]
    assert (respond.sample, respond.unmeasurable) == (10, 1)
    assert respond.mean == pytest.approx(11)
    assert respond.median == pytest.approx(10)
    assert respond.met is True


def test_cancelled_duplicates_other_months_and_out_of_scope_severities_do_not_count():
    kept = incident_at(NOV, severity=1, resolve_after=timedelta(hours=3))
    incident_at(NOV, severity=2, resolve_after=timedelta(hours=9))  # out of the Sev 1 scope
    incident_at(NOV - timedelta(days=10), severity=1, resolve_after=timedelta(hours=20))  # Oct
    cancelled = incident_at(NOV, severity=1, ack_after=None, resolve_after=None)
    incident_transition(
        incident=cancelled, action="cancel", actor=None, source=Source.SYSTEM, reason="Noise."
    )
    duplicate = incident_at(NOV, severity=1, ack_after=None, resolve_after=None)
    incident_transition(
        incident=duplicate,
        action="cancel",
        actor=None,
        source=Source.SYSTEM,
        duplicate_of=kept,
    )

    resolve = results()["time-to-resolve-sev1"]
    assert (resolve.sample, resolve.unmeasurable) == (1, 0)
    assert resolve.mean == pytest.approx(180)
    assert resolve.met is True
    # The Sev 1 KPI has no sample over Sev 2 alone; the all-severity KPIs do.
    figures = results(severity=2)
    assert figures["time-to-resolve-sev1"].sample == 0
    assert figures["time-to-resolve-sev1"].met is None
    assert figures["mttd"].sample == 1


def test_filters_by_service_and_source():
    checkout = ServiceFactory(slug="checkout")
    search = ServiceFactory(slug="search")
    incident_at(NOV, services=[checkout], impact_before=timedelta(minutes=2))
    incident_at(NOV, services=[checkout, search], impact_before=timedelta(minutes=6))
    incident_at(
        NOV, services=[search], impact_before=timedelta(minutes=20), source="customer_report"
    )

    assert results(service=checkout)["mttd"].mean == pytest.approx(4)
    assert results(service=search)["mttd"].sample == 2
    assert results(source="customer_report")["mttd"].mean == pytest.approx(20)
    assert results(service=checkout, source="customer_report")["mttd"].sample == 0


def test_first_contact_resolution_by_the_default_rule():
    incident_at(NOV)  # first contact
    incident_at(NOV, escalated=True)
    incident_at(NOV, reopened=True)
    incident_at(NOV)  # first contact
    incident_at(NOV, resolve_after=None)  # not resolved: not measurable

    fcr = results()["first-contact-resolution"]
    assert (fcr.sample, fcr.unmeasurable) == (4, 1)
    assert fcr.value == pytest.approx(50)
    assert fcr.met is False
    missed = kpi_incidents(
        definition=fcr.definition, period=period_parse("2026-11"), which="missed"
    )
    assert missed.count() == 2


def test_first_contact_rule_first_technical_lead(django_user_model):
    from incidents.services import incident_role_assign

    KpiPolicy.objects.filter(pk=1).update(first_contact_rule="first_lead")
    alice = django_user_model.objects.create(username="alice")
    bob = django_user_model.objects.create(username="bob")
    one_lead = incident_at(NOV)
    incident_role_assign(
        incident=one_lead, role="technical_lead", user=alice, actor=None, source=Source.SYSTEM
    )
    handed_over = incident_at(NOV, escalated=True)
    for user in (alice, bob):
        incident_role_assign(
            incident=handed_over, role="technical_lead", user=user, actor=None, source="system"
        )
    incident_at(NOV)  # no technical lead at all: not resolved by "the first lead"

    fcr = results()["first-contact-resolution"]
    assert fcr.sample == 3
    assert fcr.value == pytest.approx(100 / 3)


def test_the_incidents_behind_a_number():
    fast = incident_at(NOV, impact_before=timedelta(minutes=2))
    slow = incident_at(NOV, impact_before=timedelta(minutes=12))
    unknown = incident_at(NOV, impact_before=None)
    definition = KpiDefinition.objects.get(slug="mttd")
    period = period_month(NOV.date())

    def numbers(which):
        return [i.number for i in kpi_incidents(definition=definition, period=period, which=which)]

    assert set(numbers("sample")) == {fast.number, slow.number}
    assert numbers("met") == [fast.number]
    assert numbers("missed") == [slow.number]
    assert numbers("unmeasurable") == [unknown.number]
    measured = {i.number: i.measured for i in kpi_incidents(definition=definition, period=period)}
    assert measured[slow.number] == timedelta(minutes=12)


def test_periods():
    assert period_parse("2026-11").start == datetime(2026, 11, 1, tzinfo=UTC)
    quarter = period_parse("2026-Q4")
    assert (quarter.start.month, quarter.end.year) == (10, 2027)
    days = period_parse("2026-11-03..2026-11-04")
    assert days.end - days.start == timedelta(days=2)
    for bad in ("2026-13", "Nov", "2026-11-05..2026-11-01", ""):
        with pytest.raises(ValueError):
            period_parse(bad)


def test_month_boundaries_follow_the_policy_time_zone():
    KpiPolicy.objects.filter(pk=1).update(time_zone="America/New_York")
    # 02:00 UTC on 1 December is still 30 November in New York.
    incident_at(datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    assert results("2026-11")["mttd"].sample == 1
    assert results("2026-12")["mttd"].sample == 0


def test_queries_do_not_grow_with_incidents(django_assert_max_num_queries):
    for hour in range(12):
        incident_at(NOV + timedelta(hours=hour), severity=1 + hour % 4)
    with django_assert_max_num_queries(16):
        kpi_results(period=period_parse("2026-11"))
