"""One way to show time: the format, the per-user zone and the "My preferences" page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from incidents import timeformat
from incidents.models import UserPreference
from tests.communications import fanout_fixtures
from tests.escalation import escalation_fixtures

components = fanout_fixtures.components
eager = fanout_fixtures.eager
page = fanout_fixtures.page
reachable_policy = escalation_fixtures.reachable_policy

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
        (
            datetime(2026, 12, 3, 23, 30, tzinfo=UTC),
            ZoneInfo("Asia/Tokyo"),
            "4 Dec 2026, 08:30 JST",
        ),
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
    mine = reverse("admin:incidents_userpreference_mine")
    index = client.get(reverse("admin:index")).content.decode()
    assert f'href="{mine}">My preferences</a>' in index

    response = client.post(mine, {"time_zone": "Asia/Tokyo"}, follow=True)
    assert response.status_code == 200
    assert UserPreference.objects.get(user=incident_manager).time_zone == "Asia/Tokyo"
    body = response.content.decode()
    assert "Times are now shown in Asia/Tokyo" in body
    assert "JST" in body


@pytest.mark.django_db
def test_an_unknown_zone_is_refused_and_nothing_is_saved(client, incident_manager):
    client.force_login(incident_manager)
    mine = reverse("admin:incidents_userpreference_mine")
    response = client.post(mine, {"time_zone": "Mars/Olympus_Mons"})
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


# --- messages: pages, escalation steps, customer e-mails ----------------------------------------


@pytest.mark.django_db
def test_pages_show_each_person_their_own_zone(reachable_policy):
    from escalation.models import Notification
    from incidents.models import Source
    from incidents.services import incident_create
    from tests.escalation.escalation_fixtures import T0
    from tests.events import followed

    manager = reachable_policy.primary["incident_manager"]
    UserPreference.objects.create(user=manager.user, time_zone="Europe/Paris")
    lead = reachable_policy.primary["technical_lead"]
    with time_machine.travel(T0, tick=False):
        incident = followed(incident_create)(
            actor=None, source=Source.SYSTEM, severity=1, title="Checkout down"
        )
    emails = Notification.objects.filter(incident=incident, channel="email")
    to_manager = emails.get(recipient=manager.email).body
    to_lead = emails.get(recipient=lead.email).body
    # T0 is 09:00 UTC on Monday 2 March 2026; a Sev 1's response is due 15 minutes later.
    assert "Detected: 2 Mar 2026, 10:00 CET" in to_manager
    assert "Response due: 2 Mar 2026, 10:15 CET" in to_manager
    assert "Detected: 2 Mar 2026, 09:00 UTC" in to_lead
    assert "Severity: Sev 1 – Critical" in to_lead
    for body in (to_manager, to_lead):
        assert "2026-03-02" not in body


@pytest.mark.django_db
@pytest.mark.usefixtures("eager")
def test_a_customer_email_shows_the_update_time_in_the_status_pages_zone(
    components, django_capture_on_commit_callbacks, communications_lead, business_liaison
):
    from tests.communications.fanout_fixtures import contact, delivered, parsed, publish_update
    from tests.factories import IncidentFactory

    checkout = components["checkout"].service
    contact("buyer@acme.example", services=[checkout])
    with time_machine.travel(datetime(2026, 7, 1, 12, 30, tzinfo=UTC), tick=False):
        incident = IncidentFactory(
            severity=1, customer_facing=True, status="investigating", services=[checkout]
        )
        publish_update(
            django_capture_on_commit_callbacks,
            incident=incident,
            author=communications_lead,
            approver=business_liaison,
        )
    received = parsed(delivered()["buyer@acme.example"])
    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    # The page's zone (Europe/Paris, summer time): one format in the text and the HTML.
    assert f"{incident.number} · 1 Jul 2026, 14:30 CEST" in text
    assert "1 Jul 2026, 14:30 CEST" in html


# --- the report ---------------------------------------------------------------------------------


@pytest.fixture
def timed_incident(db):
    """A Sev 1 (15 min to respond, 4 h to resolve): acknowledged after 10 min (met), mitigated
    (monitoring) after 1 h, resolved after 5 h (missed)."""
    from incidents.models import Source
    from incidents.services import incident_transition
    from tests.factories import IncidentFactory

    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        incident = IncidentFactory(severity=1, title="Checkout down")
        for minutes, action, params in [
            (10, "acknowledge", {}),
            (20, "investigate", {}),
            (40, "mitigate", {}),
            (60, "monitor", {}),  # mitigated: the fix is in, its effect watched
            (300, "resolve", {"resolution": "Rolled back."}),
        ]:
            clock.move_to(start + timedelta(minutes=minutes))
            incident = incident_transition(
                incident=incident, action=action, actor=None, source=Source.SYSTEM, **params
            )
    return incident


def test_the_report_names_the_severity_once_and_measures_the_targets(
    client, viewer, timed_incident
):
    client.force_login(viewer)
    url = reverse("admin:incidents_incident_report", args=[timed_incident.pk])
    html = client.get(url).content.decode()
    main = html[html.index('id="content-main"') :]
    head = main[main.index('class="vigil-report-head"') : main.index("</dl>")]
    assert head.count("Sev 1") == 1
    assert ">Sev 1 (Critical)</span>" in head
    rows = [
        ("Time to acknowledge", "10 min", "15 min", "Met"),
        ("Time to mitigate", "1 h", "none set", "No target"),
        ("Time to resolve", "5 h", "4 h", "Missed"),
    ]
    for label, took, target, verdict in rows:
        assert (
            f'<tr><th scope="row">{label}</th><td>{took}</td><td>{target}</td>'
            f'<td class="vigil-target-{verdict.lower().replace(" ", "-")}">{verdict}</td></tr>'
        ) in main
    assert "2 Mar 2026, 09:00 UTC – 2 Mar 2026, 14:00 UTC" in main
    assert "2026-03-02" not in main

    text = client.get(url + "?format=md").content.decode()
    assert "- **Severity:** Sev 1 (Critical)" in text
    assert "- Time to acknowledge: 10 min (target 15 min: met)" in text
    assert "- Time to mitigate: 1 h (no target set)" in text
    assert "- Time to resolve: 5 h (target 4 h: missed)" in text


def test_an_open_incidents_report_says_what_is_still_running(client, viewer):
    from tests.factories import IncidentFactory

    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        incident = IncidentFactory(severity=2)
        clock.move_to(start + timedelta(minutes=5))
        client.force_login(viewer)
        text = client.get(
            reverse("admin:incidents_incident_report", args=[incident.pk]) + "?format=md"
        ).content.decode()
    assert "- Time to acknowledge: not yet (target 1 h: running)" in text
    assert "- Time to resolve: not yet (target 8 h: running)" in text


# --- the admin's own rendering and its words ----------------------------------------------------


def test_read_only_times_on_the_incident_page_follow_the_users_zone(
    client, incident_manager, timed_incident
):
    UserPreference.objects.create(user=incident_manager, time_zone="Europe/Paris")
    client.force_login(incident_manager)
    url = reverse("admin:incidents_incident_change", args=[timed_incident.pk])
    html = client.get(url).content.decode()
    # Acknowledged at 09:10 UTC = 10:10 in Paris, as Django's read-only fields render it.
    assert "2 Mar 2026, 10:10 CET" in html
    assert "a.m." not in html and "p.m." not in html


def test_the_outbox_shows_what_a_message_is_not_its_template_path(
    client, superuser, reachable_policy
):
    from escalation.admin import message_kind
    from incidents.models import Source
    from incidents.services import incident_create
    from tests.events import followed

    assert message_kind("escalation/page/email.txt") == "Page"
    assert message_kind("escalation/step/sms.txt") == "Escalation step"
    assert message_kind("communications/first_update_reminder") == "First update reminder"
    assert message_kind("status_update_email") == "Status update"

    followed(incident_create)(actor=None, source=Source.SYSTEM, severity=2, title="Slow search")
    client.force_login(superuser)
    changelist = client.get(reverse("admin:escalation_notification_changelist")).content
    assert b"escalation/page/" not in changelist
    assert b"By message" in changelist
    assert b"?template=Page" in changelist
    filtered = client.get(reverse("admin:escalation_notification_changelist") + "?template=Page")
    assert filtered.status_code == 200
    notification = filtered.context["cl"].result_list[0]
    shown = client.get(
        reverse("admin:escalation_notification_change", args=[notification.pk])
    ).content.decode()
    assert "escalation/page/" not in shown
    assert '<div class="readonly">Page</div>' in shown


def test_escalation_lists_use_plain_words(client, superuser, timed_incident):
    from escalation.models import EscalationEvent

    EscalationEvent.objects.create(
        incident=timed_incident,
        step="sev1-0:30:00",
        severity=1,
        target="IT Manager",
        due_at=timed_incident.detected_at + timedelta(minutes=30),
        caught_up=True,
    )
    client.force_login(superuser)
    events = client.get(reverse("admin:escalation_escalationevent_changelist")).content.decode()
    assert "Sent late" in events
    assert "Caught up" not in events and "caught up" not in events
    assert "2 Mar 2026, 09:30 UTC" in events


def test_an_administrator_sets_someones_zone_on_their_user_page(client, superuser, make_user):
    person = make_user("Technical Lead", username="tokyo-lead")
    client.force_login(superuser)
    url = reverse("admin:auth_user_change", args=[person.pk])
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if name in ("username", "first_name", "last_name", "email", "is_active", "is_staff")
    }
    data.update(
        {
            "date_joined_0": "2026-01-01",
            "date_joined_1": "09:00:00",
            "vigil_preference-TOTAL_FORMS": "1",
            "vigil_preference-INITIAL_FORMS": "0",
            "vigil_preference-MIN_NUM_FORMS": "0",
            "vigil_preference-MAX_NUM_FORMS": "1",
            "vigil_preference-0-time_zone": "Asia/Tokyo",
            "vigil_preference-0-user": str(person.pk),
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert UserPreference.objects.get(user=person).time_zone == "Asia/Tokyo"

    data["vigil_preference-INITIAL_FORMS"] = "1"
    data["vigil_preference-0-id"] = str(UserPreference.objects.get(user=person).pk)
    data["vigil_preference-0-time_zone"] = "Not/A_Zone"
    response = client.post(url, data)
    assert response.status_code == 200  # refused, with the form shown again
    assert UserPreference.objects.get(user=person).time_zone == "Asia/Tokyo"


@pytest.mark.django_db
def test_the_one_click_acknowledge_pages_show_the_links_persons_zone(client, reachable_policy):
    from urllib.parse import urlsplit

    from incidents.models import Source
    from incidents.services import incident_create
    from tests.escalation.escalation_fixtures import T0
    from tests.events import followed

    manager = reachable_policy.primary["incident_manager"]
    UserPreference.objects.create(user=manager.user, time_zone="America/New_York")
    with time_machine.travel(T0, tick=False) as clock:
        incident = followed(incident_create)(
            actor=None, source=Source.SYSTEM, severity=2, title="Slow checkout"
        )
        notification = incident.notifications.get(contact=manager, channel="email")
        token = urlsplit(notification.ack_url).fragment
        confirm = client.post("/ack/", {"token": token}).content.decode()
        clock.shift(timedelta(minutes=7))
        done = client.post("/ack/", {"token": token, "confirm": "1"}).content.decode()
    # T0 is 09:00 UTC, 04:00 in New York (EST).
    assert "2 Mar 2026, 04:00 EST" in confirm
    assert "2026-03-02" not in confirm + done
    assert f"{incident.number} acknowledged" in done
