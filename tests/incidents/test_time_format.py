"""One way to show time: the format, the per-user zone and the "My preferences" page."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from incidents import timeformat
from incidents.models import UserPreference

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def render(source: str, **context) -> str:
    return Template("{% load vigil_time %}" + source).render(Context(context))


# --- the format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        # Winter and summer in Paris: the abbreviation follows daylight saving time.
        (datetime(2026, 12, 3, 13, 5, tzinfo=UTC), PARIS, "3 Dec 2026, 14:05 CET"),
        (datetime(2026, 7, 3, 13, 5, tzinfo=UTC), PARIS, "3 Jul 2026, 15:05 CEST"),
        (datetime(2026, 12, 3, 13, 5, tzinfo=UTC), NEW_YORK, "3 Dec 2026, 08:05 EST"),
        (datetime(2026, 7, 3, 13, 5, tzinfo=UTC), NEW_YORK, "3 Jul 2026, 09:05 EDT"),
        (datetime(2026, 12, 3, 13, 5, tzinfo=UTC), ZoneInfo("UTC"), "3 Dec 2026, 13:05 UTC"),
        # A zone without an abbreviation shows its offset; the date follows the zone.
        (
            datetime(2026, 12, 3, 1, 5, tzinfo=UTC),
            ZoneInfo("America/Sao_Paulo"),
            "2 Dec 2026, 22:05 UTC-03",
        ),
        (datetime(2026, 12, 3, 23, 30, tzinfo=UTC), ZoneInfo("Asia/Tokyo"), "4 Dec 2026, 08:30 JST"),
    ],
)
def test_when_in_each_zone_and_season(moment, zone, expected):
    with timezone.override(zone):
        assert render("{{ m|when }}", m=moment) == expected
    assert timeformat.when(moment, zone=zone) == expected


def test_when_across_the_spring_forward_change():
    """Paris moves from CET to CEST at 01:00 UTC on 29 March 2026."""
    before = datetime(2026, 3, 29, 0, 59, tzinfo=UTC)
    after = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    with timezone.override(PARIS):
        assert render("{{ a|when }} / {{ b|when }}", a=before, b=after) == (
            "29 Mar 2026, 01:59 CET / 29 Mar 2026, 03:00 CEST"
        )


def test_when_with_seconds_a_date_and_nothing():
    moment = datetime(2026, 12, 3, 13, 5, 9, tzinfo=UTC)
    with timezone.override(PARIS):
        assert render('{{ m|when:"seconds" }}', m=moment) == "3 Dec 2026, 14:05:09 CET"
        assert render("{{ m|when_time }}", m=moment) == "14:05 CET"
    assert render("{{ d|when }}", d=date(2026, 1, 2)) == "2 Jan 2026"
    assert render('{{ m|when|default:"–" }}', m=None) == "–"


@time_machine.travel(datetime(2026, 12, 3, 13, 17, tzinfo=UTC), tick=False)
def test_when_relative_today_other_days_and_the_future():
    with timezone.override(PARIS):
        assert (
            render("{{ m|when_relative }}", m=datetime(2026, 12, 3, 13, 5, tzinfo=UTC))
            == "14:05 CET (12 min ago)"
        )
        assert (
            render("{{ m|when_relative }}", m=datetime(2026, 12, 3, 13, 42, tzinfo=UTC))
            == "14:42 CET (in 25 min)"
        )
        assert (
            render("{{ m|when_relative }}", m=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
            == "1 Dec 2026, 10:00 CET (2 d 4 h ago)"
        )
        assert (
            render("{{ m|when_relative }}", m=datetime(2026, 12, 3, 13, 16, 30, tzinfo=UTC))
            == "14:16 CET (just now)"
        )


@time_machine.travel(datetime(2026, 12, 3, 23, 30, tzinfo=UTC), tick=False)
def test_when_relative_today_is_the_zones_today():
    """23:00 UTC on the 3rd is already the 4th in Paris: "today" is decided in the zone."""
    moment = datetime(2026, 12, 3, 23, 10, tzinfo=UTC)
    with timezone.override(PARIS):
        assert timeformat.when_relative(moment) == "00:10 CET (20 min ago)"
    with timezone.override(NEW_YORK):
        assert timeformat.when_relative(moment) == "18:10 EST (20 min ago)"
    yesterday = datetime(2026, 12, 3, 22, 50, tzinfo=UTC)
    with timezone.override(PARIS):
        assert timeformat.when_relative(yesterday) == "3 Dec 2026, 23:50 CET (40 min ago)"


# --- the per-user zone --------------------------------------------------------------------------


@pytest.mark.django_db
def test_my_preferences_page_saves_a_zone_and_the_admin_shows_it(client, incident_manager):
    client.force_login(incident_manager)
    page = reverse("admin:incidents_userpreference_mine")
    index = client.get(reverse("admin:index")).content.decode()
    assert f'href="{page}">My preferences</a>' in index

    response = client.post(page, {"time_zone": "Asia/Tokyo"}, follow=True)
    assert response.status_code == 200
    assert UserPreference.objects.get(user=incident_manager).time_zone == "Asia/Tokyo"
    body = response.content.decode()
    assert "Times are now shown in Asia/Tokyo" in body
    assert "JST" in body


@pytest.mark.django_db
def test_an_unknown_zone_is_refused_and_nothing_is_saved(client, incident_manager):
    client.force_login(incident_manager)
    page = reverse("admin:incidents_userpreference_mine")
    response = client.post(page, {"time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not UserPreference.objects.exists()


@pytest.mark.django_db
def test_the_zone_is_applied_to_admin_pages_from_sign_in(client, make_user, make_incident):
    user = make_user("Incident Manager", username="tokyo")
    UserPreference.objects.create(user=user, time_zone="Asia/Tokyo")
    other = make_user("Incident Manager", username="utc")
    with time_machine.travel(datetime(2026, 12, 3, 13, 5, tzinfo=UTC), tick=False):
        incident = make_incident(severity=2, title="Tokyo test")
        url = reverse("admin:incidents_incident_report", args=[incident.pk])
        client.force_login(user)
        assert "3 Dec 2026, 22:05 JST" in client.get(url).content.decode()
        client.force_login(other)
        assert "3 Dec 2026, 13:05 UTC" in client.get(url).content.decode()
