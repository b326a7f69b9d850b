"""The incident page as a cockpit: its header (severity, status, priority, incident manager, the
SLA countdown, who is called next), this incident's escalation schedule, closing in place with
the missing report fields, the timeline's filter and order, the live fragments htmx polls and
the page's query count."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from escalation.services import escalation_sweep
from incidents.models import Contact, EscalationContact, Incident, Kind, Source, Status
from incidents.services import (
    incident_acknowledge,
    incident_create,
    incident_note_add,
    incident_role_assign,
    incident_transition,
)
from incidents.timeformat import time_text
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import T0
from tests.events import follow_events, followed

reachable_policy = escalation_fixtures.reachable_policy

pytestmark = pytest.mark.django_db

MIN = timedelta(minutes=1)


def url(name: str, *args) -> str:
    return reverse(f"admin:incidents_incident_{name}", args=args)


def hhmm(moment) -> str:
    """A time of today as the page shows it: "09:30 UTC"."""
    return time_text(moment)


def section(html: str, start: str, end: str | None = None) -> str:
    """The page's HTML from the element with id ``start`` up to the one with id ``end``."""
    begin = html.index(f'id="{start}"')
    return html[begin : html.index(f'id="{end}"', begin)] if end else html[begin:]


def header(html: str) -> str:
    return section(html, "cockpit-facts", "cockpit-actions")


def schedule(html: str) -> str:
    begin = html.index('id="panel-escalation-schedule"')
    return html[begin : html.index("</section>", begin)]


def text(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


create = followed(incident_create)


def sev1(**kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return create(actor=None, source=Source.SYSTEM, severity=1, **kwargs)


@pytest.fixture
def grace(reachable_policy):
    """The IT Manager escalation contact, named as people say it."""
    contact = Contact.objects.get(pk=reachable_policy.level["it_manager"].pk)
    contact.name = "Grace Liu"
    contact.save()
    return contact


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


# --- the header ---------------------------------------------------------------------------------


def test_the_header_shows_the_incident_at_a_glance_with_its_sla_countdown(
    client, clock, incident_manager
):
    incident = sev1()
    incident_role_assign(
        incident=incident,
        role="incident_manager",
        user=incident_manager,
        actor=None,
        source=Source.SYSTEM,
    )
    client.force_login(incident_manager)

    clock.move_to(T0 + 3 * MIN)
    facts = header(client.get(url("change", incident.pk)).content.decode())
    assert incident.number in facts
    assert "Sev 1 · Critical" in facts
    assert ">Open<" in facts
    assert f"P{incident.priority}" in facts
    assert "Incident manager</span> " + incident_manager.get_full_name() in facts
    assert 'Acknowledge</span> <span class="vigil-countdown">12 min left' in facts
    assert "vigil-clock-running" in facts

    clock.move_to(T0 + 12 * MIN)  # the last quarter of the 15 min response target: amber
    facts = header(client.get(url("change", incident.pk)).content.decode())
    assert "3 min left" in facts
    assert "vigil-clock-approaching" in facts

    clock.move_to(T0 + 19 * MIN)  # past it: red
    facts = header(client.get(url("change", incident.pk)).content.decode())
    assert "4 min over" in facts
    assert "vigil-clock-breached" in facts

    incident_acknowledge(incident=incident, actor=incident_manager, source=Source.ADMIN)
    facts = header(client.get(url("change", incident.pk)).content.decode())
    # Acknowledged: the clock counts down to the 4 h resolution target.
    assert 'Resolve</span> <span class="vigil-countdown">3 h 41 min left' in facts
    assert ">Acknowledged<" in facts


def test_the_header_names_who_is_called_next_when_and_how(client, clock, grace, viewer):
    incident = sev1()
    client.force_login(viewer)

    # Not acknowledged: the acknowledgement timer pages the backups at the response target.
    facts = text(header(client.get(url("change", incident.pk)).content.decode()))
    assert "Next escalation" in facts
    assert f"(Backups of Incident Manager and Technical Lead) at {hhmm(T0 + 15 * MIN)}" in facts

    followed(incident_acknowledge)(incident=incident, actor=None, source=Source.SYSTEM)
    facts = text(header(client.get(url("change", incident.pk)).content.decode()))
    assert f"Next escalation Grace Liu (IT Manager) at {hhmm(T0 + 30 * MIN)} by phone" in facts

    # The live header says the same.
    live = client.get(url("live", incident.pk) + "?part=header")
    assert live.status_code == 200
    assert f"Grace Liu (IT Manager) at {hhmm(T0 + 30 * MIN)} by phone" in text(
        live.content.decode()
    )


def test_the_live_header_says_when_the_status_changed_under_the_page(client, incident_manager):
    incident = incident_create(actor=None, source=Source.SYSTEM, title="Slow", severity=3)
    client.force_login(incident_manager)
    incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)

    live = client.get(url("live", incident.pk) + "?part=header&status=open").content.decode()

    assert "Now acknowledged: reload for its actions" in live
    # The next refresh still compares with the status the page was opened in.
    assert "part=header&amp;status=open" in live
    same = client.get(url("live", incident.pk) + "?part=header&status=acknowledged")
    assert "reload for its actions" not in same.content.decode()


def test_header_facts_other_apps_register_show_for_those_allowed_and_never_break_the_page(
    client, viewer, incident_manager, caplog
):
    from incidents.admin.extensions import (
        HeaderFact,
        incident_header_fact_register,
        incident_header_fact_unregister,
    )

    incident = incident_create(actor=None, source=Source.SYSTEM, title="Slow", severity=3)

    def broken(**_):
        raise RuntimeError("boom")

    incident_header_fact_register(
        key="test-bridge",
        render=lambda *, request, incident: HeaderFact(label="Bridge", text="<b>room 4</b>"),
        permission="incidents.assign_incident_roles",
    )
    incident_header_fact_register(key="test-broken", render=broken)
    try:
        client.force_login(incident_manager)
        page = client.get(url("change", incident.pk))
        assert page.status_code == 200
        facts = header(page.content.decode())
        assert "Bridge</span> &lt;b&gt;room 4&lt;/b&gt;" in facts
        assert "test-broken" in caplog.text
        live = client.get(url("live", incident.pk) + "?part=header").content.decode()
        assert "Bridge</span> &lt;b&gt;room 4&lt;/b&gt;" in live

        client.force_login(viewer)
        assert "Bridge" not in header(client.get(url("change", incident.pk)).content.decode())
    finally:
        incident_header_fact_unregister(key="test-bridge")
        incident_header_fact_unregister(key="test-broken")


def test_a_panel_with_an_unknown_placement_is_refused():
    from incidents.admin.extensions import incident_page_panel_register

    with pytest.raises(ValueError, match="placement"):
        incident_page_panel_register(key="test-x", title="X", render=str, placement="top")


# --- the escalation schedule ----------------------------------------------------------------------


def test_the_schedule_lists_fired_planned_and_skipped_steps(client, clock, grace, viewer):
    incident = sev1()
    cto = reachable_policy_contact("cto")
    clock.move_to(T0 + 5 * MIN)
    followed(incident_acknowledge)(incident=incident, actor=None, source=Source.SYSTEM)
    clock.move_to(T0 + 31 * MIN)
    fired = escalation_sweep()
    assert [f.target for f in fired] == ["IT Manager"]
    client.force_login(viewer)

    html = client.get(url("change", incident.pk)).content.decode()
    # Beside the timeline (a "side" panel), before the details.
    side = html.index('class="vigil-workspace-side"')
    assert side < html.index('id="panel-escalation-schedule"') < html.index('id="details"')
    panel = schedule(html)
    rows = re.findall(r'<li class="vigil-schedule-(\w+)[^"]*">(.*?)</li>', panel, re.S)
    states = [(state, text(body)) for state, body in rows]
    assert [state for state, _ in states] == ["skipped", "fired", "planned", "planned", "planned"]
    assert "not needed: acknowledged in time" in states[0][1]
    assert f"{hhmm(T0 + 30 * MIN)} Grace Liu (IT Manager) by phone, Slack, email" in states[1][1]
    assert f"fired {hhmm(T0 + 31 * MIN)}" in states[1][1]
    assert "3 pending" in states[1][1]
    assert states[2][1].startswith(f"Next {hhmm(T0 + 60 * MIN)} {cto.name} (CTO)")
    # The whole policy (every severity's matrix) is no longer on the incident page.
    assert "Escalation matrix (time since detection" not in html
    assert "policy snapshot in force" not in html

    followed(incident_transition)(
        incident=incident, action="resolve", actor=None, source=Source.SYSTEM, resolution="Fixed."
    )
    panel = schedule(client.get(url("change", incident.pk)).content.decode())
    rows = re.findall(r'<li class="vigil-schedule-(\w+)', panel)
    assert rows == ["skipped", "fired", "skipped", "skipped", "skipped"]
    assert "not sent: incident resolved" in text(panel)
    facts = text(header(client.get(url("change", incident.pk)).content.decode()))
    assert "Next escalation stopped" in facts


def reachable_policy_contact(level: str) -> Contact:
    return EscalationContact.objects.select_related("contact").get(key=level).contact


# --- closing in place -----------------------------------------------------------------------------


def resolved_incident() -> Incident:
    incident = incident_create(
        actor=None, source=Source.SYSTEM, title="Payments failing", severity=2, summary=""
    )
    return incident_transition(
        incident=incident,
        action="resolve",
        actor=None,
        source=Source.SYSTEM,
        resolution="Rolled back release 42.",
    )


def test_close_opens_the_report_fields_pre_filled_with_the_missing_ones_marked(
    client, incident_manager
):
    incident = resolved_incident()
    client.force_login(incident_manager)

    html = client.get(url("change", incident.pk)).content.decode()

    close = section(html, "action-close", "timeline")
    assert html[html.rindex("<", 0, html.index('id="action-close"')) :].startswith("<details")
    assert f'action="{url("transition", incident.pk, "close")}"' in close
    assert 'name="_from" value="page"' in close
    # What is already there is pre-filled; what is missing says so, and comes first.
    assert "Rolled back release 42.</textarea>" in close
    for name in ("summary", "root_cause", "business_impact"):
        assert f'name="{name}"' in close
    missing = [m.start() for m in re.finditer("vigil-missing-tag", close)]
    assert len(missing) == 3
    assert close.index('name="resolution"') > max(missing)
    # No id is shared with the details form below.
    assert 'id="id_close_summary"' in close


def test_close_in_place_saves_the_report_and_closes_in_one_step(client, incident_manager):
    incident = resolved_incident()
    client.force_login(incident_manager)

    response = client.post(
        url("transition", incident.pk, "close"),
        {
            "_from": "page",
            "summary": "Payments failed for 20 minutes.",
            "root_cause": "A bad release.",
            "resolution": "Rolled back release 42.",
            "business_impact": "About 300 failed payments.",
            "lessons_learned": "",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == url("change", incident.pk)
    incident.refresh_from_db()
    assert incident.status == Status.CLOSED
    assert incident.root_cause == "A bad release."
    assert incident.business_impact == "About 300 failed payments."
    admin_entries = incident.timeline.filter(source=Source.ADMIN).order_by("id")
    assert [e.kind for e in admin_entries] == [Kind.UPDATE, Kind.STATUS]


def test_a_refused_close_saves_nothing_and_shows_the_errors_on_the_open_form(
    client, incident_manager
):
    incident = resolved_incident()
    client.force_login(incident_manager)
    entries = incident.timeline.count()

    response = client.post(
        url("transition", incident.pk, "close"),
        {
            "_from": "page",
            "summary": "Payments failed for 20 minutes.",
            "root_cause": "A bad release.",
            "resolution": "Rolled back release 42.",
            "business_impact": "  ",
        },
    )

    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('id="action-close"')
    assert html[html.rindex("<details", 0, start) : start + 40].count(" open") == 1
    close = section(html, "action-close", "timeline")
    assert "Nothing was saved." in close
    assert "Required to close." in close
    # What was typed is still there, to correct and send again.
    assert "A bad release.</textarea>" in close
    # The page's own forms and links lead to the incident page, not back to the close.
    assert f'action="{url("change", incident.pk)}" method="post" id="incident_form"' in html
    assert f'href="{url("change", incident.pk)}?timeline=notes' in html
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED
    assert incident.root_cause == ""
    assert incident.summary == ""
    assert incident.timeline.count() == entries


def test_a_close_refused_for_want_of_permission_changes_nothing(client, technical_lead):
    incident = resolved_incident()
    client.force_login(technical_lead)

    html = client.get(url("change", incident.pk)).content.decode()
    assert 'id="action-close"' not in html

    response = client.post(
        url("transition", incident.pk, "close"),
        {"_from": "page", "root_cause": "A bad release.", "business_impact": "Some."},
    )
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.status == Status.RESOLVED
    assert incident.root_cause == ""


def test_other_actions_that_need_input_open_in_place_too(client, incident_manager):
    incident = incident_create(actor=None, source=Source.SYSTEM, title="Slow", severity=3)
    client.force_login(incident_manager)

    actions = section(
        client.get(url("change", incident.pk)).content.decode(), "cockpit-actions", "timeline"
    )

    assert 'id="action-resolve"' in actions and 'id="action-cancel"' in actions
    response = client.post(
        url("transition", incident.pk, "resolve"), {"_from": "page", "resolution": " "}
    )
    assert response.status_code == 200
    assert "This field is required." in section(response.content.decode(), "action-resolve")
    incident.refresh_from_db()
    assert incident.status == Status.OPEN


# --- the timeline ---------------------------------------------------------------------------------


@pytest.fixture
def noted(incident_manager):
    incident = incident_create(actor=None, source=Source.SYSTEM, title="Slow", severity=3)
    incident_note_add(
        incident=incident, actor=incident_manager, source=Source.ADMIN, body="First look."
    )
    incident_acknowledge(incident=incident, actor=incident_manager, source=Source.ADMIN)
    incident_note_add(
        incident=incident,
        actor=incident_manager,
        source=Source.ADMIN,
        body="Roll back now.",
        kind=Kind.DECISION,
    )
    return incident


def entries(html: str) -> list[str]:
    return re.findall(r'<li class="vigil-entry vigil-kind-(\w+)', html)


def test_the_timeline_shows_everything_oldest_first_by_default(client, viewer, noted):
    client.force_login(viewer)

    html = section(client.get(url("change", noted.pk)).content.decode(), "timeline")

    kinds = entries(html)
    assert kinds[0] == Kind.CREATED and kinds[-1] == Kind.DECISION
    assert Kind.STATUS in kinds
    page = url("change", noted.pk)
    assert f'href="{page}?timeline=notes&amp;order=oldest#timeline"' in html
    assert f'href="{page}?timeline=all&amp;order=newest#timeline"' in html


def test_the_timeline_filtered_to_notes_and_decisions_newest_first(client, viewer, noted):
    client.force_login(viewer)

    page = client.get(url("change", noted.pk) + "?timeline=notes&order=newest")

    html = section(page.content.decode(), "timeline")
    assert entries(html) == [Kind.DECISION, Kind.NOTE]
    assert html.index("Roll back now.") < html.index("First look.")
    assert 'aria-current="true"' in html
    # The fragment htmx asks for holds the same entries.
    live = client.get(url("live", noted.pk) + "?part=timeline&timeline=notes&order=newest")
    assert live.status_code == 200
    assert entries(live.content.decode()) == [Kind.DECISION, Kind.NOTE]


def test_the_live_timeline_marks_new_entries_and_says_nothing_when_none_arrived(
    client, viewer, incident_manager, noted
):
    client.force_login(viewer)
    html = client.get(url("change", noted.pk)).content.decode()
    newest = noted.timeline.order_by("-id").values_list("pk", flat=True).first()
    poll = re.search(r'id="timeline-entries"\s+hx-get="([^"]+)"', html).group(1)
    poll = poll.replace("&amp;", "&")
    assert f"seen={newest}" in poll and f"last={newest}" in poll
    assert 'hx-trigger="every 5s"' in html

    assert client.get(poll).status_code == 204

    incident_note_add(
        incident=noted, actor=incident_manager, source=Source.ADMIN, body="Error rate falling."
    )
    live = client.get(poll)
    assert live.status_code == 200
    body = live.content.decode()
    added = noted.timeline.order_by("-id").first()
    assert (
        f'class="vigil-entry vigil-kind-note vigil-new vigil-fresh" id="entry-{added.pk}"' in body
    )
    assert "1 new" in body
    # The next poll carries the new entry as the last one seen: no highlight again.
    assert f"last={added.pk}" in body and f"seen={newest}" in body


# --- the fragments' permissions -------------------------------------------------------------------


def test_the_live_fragments_need_the_pages_permission(client, viewer, make_user, noted):
    for part in ("header", "timeline"):
        fragment = url("live", noted.pk) + f"?part={part}"
        assert client.get(fragment).status_code == 302  # to the login page

        client.force_login(make_user(is_staff=True))  # staff, but may not see incidents
        assert client.get(fragment).status_code == 403

        client.force_login(viewer)
        response = client.get(fragment)
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        client.logout()

    # A page left open after its session ended: htmx is told to stop polling.
    stopped = client.get(url("live", noted.pk) + "?part=header", headers={"HX-Request": "true"})
    assert stopped.status_code == 286

    client.force_login(viewer)
    assert client.get(url("live", noted.pk) + "?part=details").status_code == 404
    assert client.get(url("live", 999999) + "?part=header").status_code == 404


# --- the page's query count -----------------------------------------------------------------------


def test_the_page_and_its_fragments_cost_the_same_queries_whatever_the_history(
    client, clock, reachable_policy, incident_manager, django_assert_max_num_queries
):
    small = sev1(title="Small")
    big = sev1(title="Big")
    for n in range(25):
        incident_note_add(
            incident=big, actor=incident_manager, source=Source.ADMIN, body=f"Note {n}"
        )
    clock.move_to(T0 + 61 * MIN)
    escalation_sweep()  # for both: the backups, the IT Manager, the CTO, with their messages
    follow_events()
    assert big.notifications.count() > 20
    assert big.timeline.count() > 30
    client.force_login(incident_manager)
    client.get(url("change", small.pk))  # warm the content-type cache

    for page in ("change", "header", "timeline"):
        counts = []
        for incident in (small, big):
            target = (
                url("change", incident.pk)
                if page == "change"
                else url("live", incident.pk) + f"?part={page}"
            )
            with CaptureQueriesContext(connection) as queries:
                assert client.get(target).status_code == 200
            counts.append(len(queries))
        assert counts[0] == counts[1], (page, counts)

    with django_assert_max_num_queries(PAGE_QUERIES):
        client.get(url("change", big.pk))
    with django_assert_max_num_queries(HEADER_QUERIES):
        client.get(url("live", big.pk) + "?part=header")
    with django_assert_max_num_queries(TIMELINE_QUERIES):
        client.get(url("live", big.pk) + "?part=timeline")


# Measured (31 with every app's panels; the header 10 with the session, user and permissions;
# the timeline 8), with a little room: a new panel or fact must earn its queries.
PAGE_QUERIES = 34
HEADER_QUERIES = 10
TIMELINE_QUERIES = 8
