"""The acknowledgement timer (§2.1 response targets) and the one-click acknowledge link."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
import time_machine
from django.contrib.staticfiles import finders
from django.core import signing
from django.templatetags.static import static
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from escalation.models import AckLinkUse, EscalationEvent, IncidentEscalation
from escalation.services import ack_link_read, escalation_sweep
from escalation.services.ack_links import ACK_SALT
from incidents.models import Incident, Kind, Source, Status
from incidents.services import (
    incident_acknowledge,
    incident_change_severity,
    incident_create,
    incident_transition,
)
from tests.escalation import escalation_fixtures
from tests.escalation.escalation_fixtures import T0, ack_token
from tests.events import follow_events, followed

reachable_policy = escalation_fixtures.reachable_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def create(severity: int = 2, **kwargs) -> Incident:
    kwargs.setdefault("title", "Checkout is down")
    return incident_create(actor=None, source=Source.SYSTEM, severity=severity, **kwargs)


# Escalation follows the incidents' events after each action commits.
create = followed(create)
incident_acknowledge = followed(incident_acknowledge)
incident_change_severity = followed(incident_change_severity)
incident_transition = followed(incident_transition)


def ack_pages(incident: Incident):
    return incident.notifications.filter(idempotency_key__startswith=f"ack-timeout:{incident.pk}:")


# --- the timer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "target", "label"),
    [
        (1, timedelta(minutes=15), "15 min"),
        (2, timedelta(hours=1), "1 h"),
        (3, timedelta(hours=4), "4 h"),
    ],
)
def test_backups_are_paged_at_exactly_the_response_target(
    reachable_policy, clock, severity, target, label
):
    incident = create(severity)

    clock.move_to(T0 + target - timedelta(seconds=1))
    escalation_sweep()
    assert not ack_pages(incident).exists()
    assert not EscalationEvent.objects.filter(incident=incident, step="ack-timeout").exists()

    clock.move_to(T0 + target)
    fired = escalation_sweep()

    assert [f.step for f in fired if f.step == "ack-timeout"] == ["ack-timeout"]
    event = EscalationEvent.objects.get(incident=incident, step="ack-timeout")
    assert event.due_at == T0 + target and event.fired_at == T0 + target
    assert not event.caught_up
    assert event.target == "Backups of Incident Manager and Technical Lead"
    backups = {
        reachable_policy.backup["incident_manager"],
        reachable_policy.backup["technical_lead"],
    }
    assert {n.contact for n in ack_pages(incident)} == backups
    channels = IncidentEscalation.objects.get(incident=incident).policy_snapshot["severities"][
        str(severity)
    ]["channels"]
    assert ack_pages(incident).count() == 2 * len(channels)
    assert set(ack_pages(incident).values_list("channel", flat=True)) == set(channels)
    assert all(n.template.startswith("escalation/ack_timeout/") for n in ack_pages(incident))
    entry = incident.timeline.get(kind=Kind.ESCALATION, data__step="ack-timeout")
    assert entry.message.startswith(
        f"Not acknowledged within the {label} response target (Sev {severity}): "
        "paged the backup contacts – Incident Manager"
    )

    clock.shift(timedelta(minutes=5))
    escalation_sweep()
    assert EscalationEvent.objects.filter(incident=incident, step="ack-timeout").count() == 1
    assert ack_pages(incident).count() == 2 * len(channels)


def test_acknowledging_in_time_stops_the_timer(reachable_policy, clock):
    incident = create(2)
    clock.shift(timedelta(minutes=59))
    incident_acknowledge(
        incident=incident, actor=reachable_policy.primary["incident_manager"].user, source="admin"
    )
    assert IncidentEscalation.objects.get(incident=incident).ack_due_at is None

    clock.shift(timedelta(minutes=2))
    escalation_sweep()
    assert not ack_pages(incident).exists()


def test_taking_action_counts_as_acknowledgement(reachable_policy, clock):
    incident = create(2)
    incident_transition(incident=incident, action="investigate", actor=None, source=Source.SYSTEM)
    clock.shift(timedelta(hours=1))
    escalation_sweep()
    assert not EscalationEvent.objects.filter(incident=incident, step="ack-timeout").exists()


def test_a_raise_brings_the_timer_forward(reachable_policy, clock):
    incident = create(3)  # 4 h response target
    clock.shift(timedelta(minutes=10))
    incident_change_severity(incident=incident, severity=1, actor=None, source=Source.SYSTEM)
    assert IncidentEscalation.objects.get(incident=incident).ack_due_at == T0 + timedelta(
        minutes=15
    )

    clock.move_to(T0 + timedelta(minutes=15))
    escalation_sweep()
    event = EscalationEvent.objects.get(incident=incident, step="ack-timeout")
    assert event.severity == 1
    assert set(ack_pages(incident).values_list("channel", flat=True)) == {"phone", "slack", "email"}


# --- the link: the key stays out of the address; POST reviews, POST confirm acknowledges -----


ACK_PATH = "/ack/"


def link_for(incident: Incident, contact, channel: str = "email") -> str:
    """The key of the acknowledge link the contact got on ``channel`` (after the ``#``)."""
    notification = incident.notifications.get(contact=contact, channel=channel)
    return urlsplit(notification.ack_url).fragment


def review(client, token: str):
    """What the link page posts once its script has read the key from the fragment."""
    return client.post(ACK_PATH, {"token": token})


def acknowledge(client, token: str):
    """The confirmation page's button."""
    return client.post(ACK_PATH, {"token": token, "confirm": "1"})


def test_the_route_is_the_fixed_path_the_links_use():
    assert reverse("escalation:ack") == ACK_PATH


def test_links_in_notifications_keep_their_key_out_of_the_address(reachable_policy, clock):
    incident = create(1)
    links = 0
    for notification in incident.notifications.filter(channel__in=["email", "sms", "slack"]):
        url = notification.ack_url
        assert url, notification
        parts = urlsplit(url)
        # Everything before the "#" is what a browser sends, and what a server or proxy logs.
        assert parts.path == ACK_PATH and not parts.query
        assert ack_link_read(parts.fragment)["n"] == notification.context["ack_nonce"]
        if notification.channel != "slack":  # Slack carries it as a button (test_message_safety)
            assert url in notification.body
        assert f"{ACK_PATH}{parts.fragment}" not in notification.body
        links += 1
    assert links == 6  # Sev 1: email and Slack (the call has no link) to each of three


def test_the_link_page_without_its_key_reveals_nothing_and_cannot_acknowledge(
    client, reachable_policy, clock
):
    incident = create(2)
    manager = reachable_policy.primary["incident_manager"]

    response = client.get(ACK_PATH)

    assert response.status_code == 200
    page = response.content.decode()
    assert incident.number not in page and incident.title not in page
    assert manager.user.get_username() not in page
    # The page's script reads the key from the fragment and posts it in the body.
    assert f'<script src="{static("escalation/ack.js")}" defer></script>' in page
    assert 'id="ack-open"' in page and 'name="token"' in page
    assert "<noscript>" in page
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    for refused in (client.post(ACK_PATH), client.post(ACK_PATH, {"confirm": "1"})):
        assert refused.status_code == 400
        assert "Nothing was changed" in refused.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.OPEN and incident.acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_posting_the_key_shows_a_confirmation_and_changes_nothing(client, reachable_policy, clock):
    incident = create(2)
    manager = reachable_policy.primary["incident_manager"]
    token = link_for(incident, manager)

    response = review(client, token)

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Acknowledge {incident.number}?" in page
    assert f'<form method="post" action="{ACK_PATH}">' in page
    assert f'<input type="hidden" name="token" value="{token}">' in page
    assert '<input type="hidden" name="confirm" value="1">' in page
    assert manager.user.get_username() in page
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    incident.refresh_from_db()
    assert incident.status == Status.OPEN and incident.acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_confirming_acknowledges_as_the_contacts_user_once(client, reachable_policy, clock):
    incident = create(2)
    manager = reachable_policy.primary["incident_manager"]
    token = link_for(incident, manager, "slack")
    clock.shift(timedelta(minutes=7))

    response = acknowledge(client, token)
    follow_events()

    assert response.status_code == 200
    assert f"{incident.number} acknowledged" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED
    assert incident.acknowledged_at == T0 + timedelta(minutes=7)
    status_entry = incident.timeline.get(kind=Kind.STATUS)
    assert status_entry.actor == manager.user and status_entry.source == Source.EMAIL
    link_entry = incident.timeline.get(kind=Kind.NOTIFICATION, data__has_key="ack_link")
    assert link_entry.actor == manager.user
    assert "one-click link sent to" in link_entry.message and "by slack" in link_entry.message
    use = AckLinkUse.objects.get()
    assert (use.incident, use.user, use.contact, use.channel, use.outcome) == (
        incident,
        manager.user,
        manager,
        "slack",
        "acknowledged",
    )
    notification = incident.notifications.get(contact=manager, channel="slack")
    assert use.nonce == notification.context["ack_nonce"]
    assert IncidentEscalation.objects.get(incident=incident).ack_due_at is None

    again = acknowledge(client, token)
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    assert AckLinkUse.objects.count() == 1
    assert review(client, token).status_code == 410


def test_another_link_after_acknowledgement_reports_it_and_changes_nothing(
    client, reachable_policy, clock
):
    incident = create(2)
    first = link_for(incident, reachable_policy.primary["incident_manager"])
    second = link_for(incident, reachable_policy.primary["technical_lead"])
    acknowledge(client, first)
    acknowledged_at = Incident.objects.get(pk=incident.pk).acknowledged_at

    assert "Already acknowledged" in review(client, second).content.decode()
    response = acknowledge(client, second)

    assert response.status_code == 200
    assert "was already acknowledged" in response.content.decode()
    assert Incident.objects.get(pk=incident.pk).acknowledged_at == acknowledged_at
    assert incident.timeline.filter(kind=Kind.STATUS).count() == 1
    assert AckLinkUse.objects.get(nonce__isnull=False, outcome="already").user == (
        reachable_policy.primary["technical_lead"].user
    )


def test_an_expired_link_is_refused(client, settings, reachable_policy, clock):
    settings.VIGIL_ACK_LINK_MAX_AGE = 24 * 3600
    incident = create(3)
    token = link_for(incident, reachable_policy.primary["incident_manager"])

    clock.shift(timedelta(hours=24, seconds=1))
    for response in (review(client, token), acknowledge(client, token)):
        assert response.status_code == 410
        assert "expired" in response.content.decode()

    incident.refresh_from_db()
    assert incident.acknowledged_at is None and incident.status == Status.OPEN
    assert not AckLinkUse.objects.exists()


def test_a_link_just_inside_its_lifetime_works(client, settings, reachable_policy, clock):
    settings.VIGIL_ACK_LINK_MAX_AGE = 3600
    incident = create(3)
    token = link_for(incident, reachable_policy.primary["incident_manager"])
    clock.shift(timedelta(minutes=59))
    assert acknowledge(client, token).status_code == 200


@pytest.mark.parametrize("tamper", ["flip", "truncate", "other_salt", "garbage"])
def test_a_tampered_link_is_refused_with_a_clear_page(client, reachable_policy, clock, tamper):
    incident = create(2)
    token = link_for(incident, reachable_policy.primary["incident_manager"])
    if tamper == "flip":
        payload, rest = token.split(":", 1)
        token = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + ":" + rest
    elif tamper == "truncate":
        token = token[:-5]
    elif tamper == "other_salt":
        # A token for another incident, signed without Vigil's salt for these links.
        token = signing.dumps({"i": incident.pk, "c": None, "u": 1, "n": "x"}, salt="other")
    else:
        token = "not-a-token"

    for response in (review(client, token), acknowledge(client, token)):
        assert response.status_code == 400
        page = response.content.decode()
        assert "This acknowledge link cannot be used" in page
        assert "not valid" in page and "Nothing was changed" in page

    incident.refresh_from_db()
    assert incident.acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_a_forged_payload_signed_with_the_salt_but_not_the_key_is_refused(client, clock, db):
    incident = create(2)
    forged = signing.dumps(
        {"i": incident.pk, "c": None, "u": 1, "n": "n"}, key="not-the-secret", salt=ACK_SALT
    )
    assert acknowledge(client, forged).status_code == 400


def test_a_contact_without_a_login_is_told_to_log_in(client, clock):
    # The seeded contacts have no Vigil login.
    incident = create(4)
    notification = incident.notifications.filter(channel="email").first()
    token = ack_token(notification.body)

    for response in (review(client, token), acknowledge(client, token)):
        assert response.status_code == 403
        assert "Log in to Vigil and acknowledge the incident there" in response.content.decode()
    assert Incident.objects.get(pk=incident.pk).acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_a_user_without_the_acknowledge_permission_is_refused(client, reachable_policy, clock):
    # Escalation levels' users are Viewers in these tests; the CTO is escalated to at 2 h.
    incident = create(2)
    clock.shift(timedelta(hours=2))
    escalation_sweep()
    cto = reachable_policy.level["cto"]
    token = link_for(incident, cto)

    response = acknowledge(client, token)
    assert response.status_code == 403
    assert "is not allowed to acknowledge incidents" in response.content.decode()
    assert Incident.objects.get(pk=incident.pk).acknowledged_at is None


def test_a_cancelled_incident_has_nothing_to_acknowledge(client, reachable_policy, clock):
    incident = create(2)
    token = link_for(incident, reachable_policy.primary["incident_manager"])
    incident_transition(
        incident=incident, action="cancel", actor=None, source=Source.SYSTEM, reason="False alarm."
    )

    response = acknowledge(client, token)
    assert response.status_code == 409
    assert "nothing to acknowledge" in response.content.decode()
    assert not AckLinkUse.objects.exists()


def test_other_methods_are_not_allowed(client, reachable_policy, clock):
    assert client.put(ACK_PATH).status_code == 405
    assert client.delete(ACK_PATH).status_code == 405


def test_links_with_the_key_in_the_path_no_longer_acknowledge(client, reachable_policy, clock):
    """Links sent before the key moved to the fragment (``/ack/<key>/``, valid 24 h) are
    refused with a page that leads to the incident; they change nothing."""
    incident = create(2)
    token = link_for(incident, reachable_policy.primary["incident_manager"])
    old = f"{ACK_PATH}{token}/"

    for response in (client.get(old), client.post(old), client.post(old, {"token": token})):
        assert response.status_code == 410
        page = response.content.decode()
        assert "no longer acknowledges" in page
        assert incident.number in page
        assert incident.get_absolute_url() in page
        assert "Nothing was changed" in page
    assert client.get(f"{ACK_PATH}not-a-token/").status_code == 410
    incident.refresh_from_db()
    assert incident.acknowledged_at is None
    assert not AckLinkUse.objects.exists()


def test_the_link_page_script_posts_the_fragment_and_clears_it(tmp_path):
    """Runs the page's script (the static file a browser loads) in Node with the few DOM
    objects it touches."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js to run the acknowledge page's script")
    script = finders.find("escalation/ack.js")
    assert script, "escalation/ack.js is not a static file"
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS)

    def run(fragment: str) -> dict:
        done = subprocess.run(
            [node, str(harness), script, fragment],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(done.stdout)

    key = "eyJpIjoxfQ:1vwz8C:oF2AcVaFSb88vjvclHvqOkFfua5bXkjNDBQFijqG-Cw"
    assert run(f"#{key}") == {"submitted": [key], "address": "/ack/", "missing": False}
    assert run("#eyJp%3A1v") == {"submitted": ["eyJp:1v"], "address": "/ack/", "missing": False}
    assert run("") == {"submitted": [], "address": None, "missing": True}


def test_the_api_lists_notifications_without_their_links(api_as, reachable_policy, clock, viewer):
    incident = create(2)
    tokens = [urlsplit(n.ack_url).fragment for n in incident.notifications.exclude(ack_url="")]
    assert tokens

    response = api_as(viewer).get(f"/api/v1/incidents/{incident.number}/notifications/")

    assert response.status_code == 200
    listed = response.content.decode()
    assert incident.number in listed
    assert not any(token in listed or token.split(":", 1)[0] in listed for token in tokens)


def test_an_error_report_does_not_show_the_posted_key(client, reachable_policy, clock, caplog):
    incident = create(2)
    token = link_for(incident, reachable_policy.primary["incident_manager"])
    client.raise_request_exception = False

    with mock.patch("escalation.ack.ack_link_use", side_effect=RuntimeError("a bug")):
        response = acknowledge(client, token)

    assert response.status_code == 500
    [record] = [r for r in caplog.records if r.name == "django.request"]
    shown = SafeExceptionReporterFilter().get_post_parameters(record.request)
    assert shown["token"] != token and set(shown["token"]) == {"*"}


NODE_HARNESS = """
const fs = require("fs");
const vm = require("vm");
const [scriptPath, hash] = process.argv.slice(2);
const submitted = [];
const token = { value: "" };
const form = { elements: { token }, submit() { submitted.push(token.value); } };
const missing = { hidden: true };
let address = null;
const window = {
  location: { hash, pathname: "/ack/", search: "" },
  history: { replaceState(state, title, url) { address = url; } },
};
const document = {
  getElementById(id) { return { "ack-open": form, "ack-missing": missing }[id] || null; },
};
vm.runInNewContext(fs.readFileSync(scriptPath, "utf8"), { window, document });
console.log(JSON.stringify({ submitted, address, missing: !missing.hidden }));
"""


# --- concurrent clicks (PostgreSQL) ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("same_link", [True, False])
def test_links_posted_at_the_same_moment_acknowledge_once(reachable_policy, same_link):
    import threading

    from django.db import connections
    from django.test import Client

    incident = create(2)
    first = link_for(incident, reachable_policy.primary["incident_manager"])
    second = first if same_link else link_for(incident, reachable_policy.primary["technical_lead"])
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def click(token: str) -> None:
        try:
            barrier.wait(10)
            statuses.append(acknowledge(Client(), token).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=click, args=(token,)) for token in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(statuses) == ([200, 410] if same_link else [200, 200])
    incident.refresh_from_db()
    assert incident.status == Status.ACKNOWLEDGED
    assert incident.timeline.filter(kind=Kind.STATUS).count() == 1
    outcomes = sorted(AckLinkUse.objects.values_list("outcome", flat=True))
    assert outcomes == (["acknowledged"] if same_link else ["acknowledged", "already"])
    assert incident.timeline.filter(kind=Kind.NOTIFICATION, data__has_key="ack_link").count() == 1


def test_outbox_admin_hides_the_link_so_a_reader_cannot_acknowledge_as_the_recipient(
    client, reachable_policy, clock, viewer
):
    incident = create(2)
    notification = incident.notifications.filter(channel="email").exclude(body="").first()
    token = ack_token(notification.body)
    client.force_login(viewer)

    page = client.get(
        reverse("admin:escalation_notification_change", args=[notification.pk])
    ).content.decode()

    assert "[one-click link hidden]" in page
    assert token not in page
    assert token.split(":", 1)[0] not in page
