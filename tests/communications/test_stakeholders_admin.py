"""The stakeholder schedule in the admin: the incident page's panel (each group's schedule, a
note for a group, "Send now"), its POSTs guarded by CSRF and permissions, the groups' admin with
members inline and history, the sends' read-only list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from communications.models import (
    SendKind,
    StakeholderGroup,
    StakeholderNote,
    StakeholderSend,
)
from communications.services.stakeholders import stakeholder_sweep
from incidents.models import Incident, Source
from incidents.services import incident_create
from tests.events import followed

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def group(name: str) -> StakeholderGroup:
    return StakeholderGroup.objects.get(name=name)


def sev1() -> Incident:
    return followed(incident_create)(
        actor=None, source=Source.SYSTEM, title="Checkout is down", severity=1
    )


def page(client, incident: Incident) -> str:
    return client.get(
        reverse("admin:incidents_incident_change", args=[incident.pk])
    ).content.decode()


def panel(html: str) -> str:
    start = html.index('id="panel-stakeholders"')
    return html[start : html.index("</section>", start)]


def row(html: str, name: str) -> str:
    start = html.index(f'data-group="{name}"')
    return html[start : html.index("</tr>", start)]


def note_url(incident: Incident) -> str:
    return reverse("admin:communications_stakeholder_note", args=[incident.pk])


def send_url(incident: Incident) -> str:
    return reverse("admin:communications_stakeholder_send", args=[incident.pk])


def test_the_incident_page_shows_each_groups_schedule(client, viewer, clock):
    incident = sev1()
    clock.move_to(T0 + 30 * MIN)
    stakeholder_sweep()
    client.force_login(viewer)

    html = panel(page(client, incident))

    assert "Stakeholder updates" in page(client, incident)
    assert "every 2 hours" in row(html, "Executive team")
    assert "12:00" in row(html, "Executive team")
    support = row(html, "Customer support")
    assert "every 30 minutes" in support and "11:00" in support and "10:30" in support
    assert "On demand" in row(html, "Partners")
    # A viewer reads; no forms.
    assert "<form" not in html


def test_a_late_send_is_flagged(client, viewer, clock):
    incident = sev1()
    clock.move_to(T0 + 100 * MIN)
    stakeholder_sweep()
    client.force_login(viewer)
    assert 'data-late="1"' in row(panel(page(client, incident)), "Customer support")


def test_the_communications_lead_writes_a_note_and_sends_partners_an_update(
    communications_lead, clock
):
    incident = sev1()
    client = Client(enforce_csrf_checks=True)
    client.force_login(communications_lead)
    html = panel(page(client, incident))
    assert "Save note" in html and "Send now" in html
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    response = client.post(
        note_url(incident),
        {"group": group("Partners").pk, "body": "Order API down.", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response["Location"].endswith("#panel-stakeholders")
    assert StakeholderNote.objects.get().body == "Order API down."

    response = client.post(
        send_url(incident), {"group": group("Partners").pk, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    send = StakeholderSend.objects.get(kind=SendKind.ON_DEMAND)
    assert (send.group.name, send.sent_by) == ("Partners", communications_lead)
    html = page(client, incident)
    assert "Update sent to Partners (1 recipient(s))." in html


def test_posts_without_the_csrf_token_are_refused(communications_lead, clock):
    incident = sev1()
    client = Client(enforce_csrf_checks=True)
    client.force_login(communications_lead)
    response = client.post(note_url(incident), {"group": group("Partners").pk, "body": "x"})
    assert response.status_code == 403
    assert not StakeholderNote.objects.exists()


def test_a_viewer_cannot_write_notes_or_send(client, viewer, clock):
    incident = sev1()
    client.force_login(viewer)
    assert (
        client.post(note_url(incident), {"group": group("Partners").pk, "body": "x"}).status_code
        == 403
    )
    assert client.post(send_url(incident), {"group": group("Partners").pk}).status_code == 403
    assert not StakeholderNote.objects.exists() and not StakeholderSend.objects.exists()


def test_refused_input_shows_a_clear_error(client, communications_lead, clock):
    incident = sev1()
    client.force_login(communications_lead)

    response = client.post(
        note_url(incident), {"group": group("Partners").pk, "body": "  "}, follow=True
    )
    assert (
        "Note not saved: Write what the group&#x27;s next update should say."
        in response.content.decode()
    )
    response = client.post(note_url(incident), {"group": "nope", "body": "x"}, follow=True)
    assert "Note not saved: choose a stakeholder group." in response.content.decode()
    response = client.post(send_url(incident), {"group": group("Partners").pk}, follow=True)
    assert "Not sent: Nothing has been written for Partners yet" in response.content.decode()
    assert client.get(note_url(incident)).status_code == 405
    assert not StakeholderNote.objects.exists() and not StakeholderSend.objects.exists()


def test_groups_are_edited_with_members_inline_and_history(client, communications_lead):
    client.force_login(communications_lead)
    partners = group("Partners")
    url = reverse("admin:communications_stakeholdergroup_change", args=[partners.pk])
    member = partners.members.get()
    form = {
        "name": "Partners",
        "position": 4,
        "channel": "email",
        "extra_channels": "[]",
        "intervals": '{"1": 0}',
        "content": "service_impact",
        "active": "on",
        "members-TOTAL_FORMS": 2,
        "members-INITIAL_FORMS": 1,
        "members-MIN_NUM_FORMS": 0,
        "members-MAX_NUM_FORMS": 1000,
        "members-0-id": member.pk,
        "members-0-group": partners.pk,
        "members-0-address": "partners@example.com",
        "members-1-group": partners.pk,
        "members-1-address": "alliances@example.com",
    }
    response = client.post(url, form)
    assert response.status_code == 200
    assert "Sev 1: give whole minutes between 5 and 1440" in response.content.decode()
    assert group("Partners").intervals == {}

    form["intervals"] = '{"1": 60}'
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    partners = group("Partners")
    assert partners.intervals == {"1": 60}
    assert sorted(partners.members.values_list("address", flat=True)) == [
        "alliances@example.com",
        "partners@example.com",
    ]
    latest = partners.history.latest()
    assert latest.history_user == communications_lead and latest.intervals == {"1": 60}


def test_the_sends_are_listed_read_only(client, superuser, clock):
    incident = sev1()
    clock.move_to(T0 + 30 * MIN)
    stakeholder_sweep()
    client.force_login(superuser)
    html = client.get(reverse("admin:communications_stakeholdersend_changelist")).content.decode()
    assert incident.number in html and "Customer support" in html
    assert client.get(reverse("admin:communications_stakeholdersend_add")).status_code == 403


def test_every_running_schedule_is_listed_the_next_due_first(client, viewer, clock):
    first, second = sev1(), sev1()
    clock.move_to(T0 + 100 * MIN)
    client.force_login(viewer)
    url = reverse("admin:communications_stakeholderschedule_changelist")
    html = client.get(url, {"state": "running"}).content.decode()
    assert first.number in html and second.number in html
    assert html.index("Customer support") < html.index("Executive team")
    assert 'alt="True"' in html  # support's update, due at 10:30, is late
    assert client.get(reverse("admin:communications_stakeholderschedule_add")).status_code == 403
