"""Public subscriptions through the public pages and the delivered email: double opt-in,
the same answer whatever the address, links that work once (and expire, for confirmation),
unsubscribe by page and by RFC 8058 one-click, the manage page, a customer contact's opt-out,
bad input and rate limits (nothing stored, nothing sent)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client

from communications.models import (
    Customer,
    CustomerContact,
    Subscriber,
    SubscriberState,
    Suppression,
)
from communications.public import site
from communications.services.components import component_create
from communications.services.links import contact_optout_url
from escalation.models import Notification, NotificationStatus
from escalation.services import notification_send
from incidents import ratelimit
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

SUBSCRIBE = "/status/subscribe/"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LINK = re.compile(r"https?://\S+/status/subscriptions/(confirm|manage|unsubscribe)/[^/\s]+/")


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings):
    """Each test counts its own requests: hits are kept in process memory (a local cache, even
    where the suite runs with Redis, whose counts would outlive the test), emptied around it."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "subscription-tests",
        }
    }
    ratelimit._stores.clear()
    yield
    ratelimit._stores.clear()


@pytest.fixture
def components(communications_lead):
    made = {}
    for slug, name in (("checkout", "Checkout"), ("api", "Public API"), ("search", "Search")):
        service = ServiceFactory(slug=slug, name=name, public_name=name)
        made[slug] = component_create(
            service=service, actor=communications_lead, at=T0 - timedelta(days=3)
        )
    hidden = ServiceFactory(slug="internal", name="Internal", public_name="Internal")
    component = component_create(service=hidden, actor=communications_lead)
    component.showcase = False
    component.save()
    return made


def deliver() -> list:
    """Send every queued notification as the worker would; the new emails."""
    before = len(mail.outbox)
    for pk in Notification.objects.filter(status=NotificationStatus.PENDING).values_list(
        "pk", flat=True
    ):
        assert notification_send(notification_id=pk).result == "sent"
    return mail.outbox[before:]


def links(message) -> dict[str, str]:
    return {match.group(1): match.group(0) for match in LINK.finditer(message.body)}


def path(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def subscribe(client: Client, email: str, **extra):
    data = {"email": email, "scope": "all", "maintenance": "1", **extra}
    return client.post(SUBSCRIBE, data)


def subscribed(client: Client, email: str) -> dict[str, str]:
    """Subscribe and confirm through the pages; the manage and unsubscribe links of the
    'already subscribed' email that a second request brings."""
    assert subscribe(client, email).status_code == 200
    (confirmation,) = deliver()
    confirm = path(links(confirmation)["confirm"])
    assert client.post(confirm).status_code == 200
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=1)):
        assert subscribe(client, email).status_code == 200
        (already,) = deliver()
    found = links(already)
    return {"manage": path(found["manage"]), "unsubscribe": path(found["unsubscribe"])}


# --- double opt-in -------------------------------------------------------------------------------


def test_double_opt_in_through_the_pages_and_the_delivered_email(client, components):
    form = client.get(SUBSCRIBE)
    assert form.status_code == 200
    page = form.content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'value="checkout"' in page and 'value="internal"' not in page  # shown ones only
    assert "<script" not in page and 'name="viewport"' in page

    answer = client.post(
        SUBSCRIBE,
        {"email": " Ann@Example.org ", "scope": "some", "components": ["checkout", "api"]},
    )
    assert answer.status_code == 200
    assert "Check your inbox" in answer.content.decode()
    subscriber = Subscriber.objects.get()
    assert subscriber.state == SubscriberState.PENDING
    assert subscriber.email == "Ann@Example.org"
    assert not subscriber.all_components and not subscriber.maintenance_notices
    assert sorted(c.code for c in subscriber.components.all()) == ["api", "checkout"]

    (email,) = deliver()
    assert email.to == ["Ann@Example.org"]
    assert email.subject == "Confirm your subscription to Service status"
    assert email.extra_headers["Auto-Submitted"] == "auto-generated"
    html, mimetype = email.alternatives[0]
    assert mimetype == "text/html"
    confirm_url = links(email)["confirm"]
    assert confirm_url.startswith("http://localhost:8000/status/subscriptions/confirm/")
    assert confirm_url in html

    # Opening the link (a mail scanner would) shows a button and changes nothing.
    shown = client.get(path(confirm_url))
    assert shown.status_code == 200
    assert "Confirm subscription" in shown.content.decode()
    assert "Checkout" in shown.content.decode()
    assert shown["Referrer-Policy"] == "no-referrer"
    subscriber.refresh_from_db()
    assert subscriber.state == SubscriberState.PENDING

    done = Client(enforce_csrf_checks=True).post(path(confirm_url))  # no session, no CSRF
    assert done.status_code == 200
    assert "You are subscribed" in done.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.state == SubscriberState.ACTIVE
    assert subscriber.confirmed_at is not None
    assert subscriber.token_version == 2

    again = client.post(path(confirm_url))
    assert again.status_code == 410
    assert "Already confirmed" in again.content.decode()


def test_the_subscribe_form_needs_its_csrf_token(components):
    browser = Client(enforce_csrf_checks=True)
    refused = browser.post(SUBSCRIBE, {"email": "ann@example.org", "scope": "all"})
    assert refused.status_code == 403
    assert not Subscriber.objects.exists()

    browser.get(SUBSCRIBE)
    token = browser.cookies["csrftoken"].value
    accepted = browser.post(
        SUBSCRIBE, {"email": "ann@example.org", "scope": "all", "csrfmiddlewaretoken": token}
    )
    assert accepted.status_code == 200
    assert Subscriber.objects.count() == 1


def test_the_same_answer_whatever_the_address(client, components):
    """New, pending, subscribed, unsubscribed and suppressed addresses get the same page; only
    the mailbox's owner can tell them apart (by what arrives)."""
    subscribed(client, "active@example.org")
    unsubscribed = subscribed(client, "gone@example.org")
    client.post(unsubscribed["unsubscribe"])
    subscribe(client, "pending@example.org")
    Suppression.objects.create(email="Bounced@Example.org", reason="bounced")
    deliver()
    mail.outbox.clear()

    pages = {}
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2)):
        for address in (
            "new@example.org",
            "pending@example.org",
            "active@example.org",
            "gone@example.org",
            "bounced@example.org",
        ):
            response = subscribe(client, address)
            assert response.status_code == 200
            pages[address] = response.content.decode().replace(address, "ADDRESS")
        sent = {message.to[0]: message.subject for message in deliver()}

    assert len(set(pages.values())) == 1
    assert sent == {
        "new@example.org": "Confirm your subscription to Service status",
        "pending@example.org": "Confirm your subscription to Service status",
        "active@example.org": "You are already subscribed to Service status",
        "gone@example.org": "Confirm your subscription to Service status",
    }
    assert not Subscriber.objects.filter(email__iexact="bounced@example.org").exists()
    states = dict(Subscriber.objects.values_list("email", "state"))
    assert states["gone@example.org"] == SubscriberState.PENDING  # until confirmed again
    assert states["active@example.org"] == SubscriberState.ACTIVE


def test_a_subscribed_address_keeps_its_choices_when_someone_subscribes_it_again(
    client, components
):
    manage = subscribed(client, "ann@example.org")["manage"]
    client.post(manage, {"action": "save", "scope": "some", "components": ["api"]})
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=3)):
        subscribe(client, "ann@example.org", scope="all")
    subscriber = Subscriber.objects.get()
    assert not subscriber.all_components
    assert [c.code for c in subscriber.components.all()] == ["api"]


def test_one_subscription_email_per_address_per_resend_window(client, components, settings):
    settings.VIGIL_SUBSCRIBE_RESEND_MINUTES = 15
    with time_machine.travel(T0, tick=False) as clock:
        subscribe(client, "ann@example.org")
        clock.move_to(T0 + timedelta(minutes=5))
        subscribe(client, "ann@example.org", scope="some", components=["search"])
        first = deliver()
        clock.move_to(T0 + timedelta(minutes=16))
        subscribe(client, "ann@example.org")
        second = deliver()
    assert len(first) == 1 and len(second) == 1
    assert first[0].extra_headers["Message-ID"] != second[0].extra_headers["Message-ID"]
    assert Subscriber.objects.count() == 1
    assert Notification.objects.count() == 2


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"email": ""}, "Enter an email address"),
        ({"email": "not-an-email"}, "Enter a valid email address"),
        ({"email": "ann@localhost"}, "Enter a valid email address"),
        ({"email": "ann@example"}, "Enter a valid email address"),
        ({"email": "ann smith@example.org"}, "Enter a valid email address"),
        ({"email": "ann@example.org\r\nBcc: all@example.org"}, "Enter a valid email address"),
        ({"email": "a" * 65 + "@example.org"}, "Enter a valid email address"),
        ({"email": "a" * 60 + "@" + "b" * 190 + ".example.org"}, "at most 254 characters"),
        ({"email": "<script>@example.org"}, "Enter a valid email address"),
        ({"email": "ann@example.org", "scope": "some"}, "Choose at least one component"),
        (
            {"email": "ann@example.org", "scope": "some", "components": ["checkout", "nope"]},
            "Unknown components: nope",
        ),
        (
            {"email": "ann@example.org", "scope": "some", "components": ["internal"]},
            "Unknown components: internal",
        ),
    ],
)
def test_bad_input_is_a_400_and_nothing_is_stored(client, components, data, error):
    response = client.post(SUBSCRIBE, {"scope": "all", **data})
    assert response.status_code == 400
    page = response.content.decode()
    assert error in page
    assert "<script>@" not in page  # what was typed is shown escaped
    assert not Subscriber.objects.exists()
    assert not Notification.objects.exists()


# --- rate limits ---------------------------------------------------------------------------------


def test_a_loop_from_one_client_stores_and_sends_nothing_beyond_the_limit(
    client, components, settings
):
    settings.VIGIL_SUBSCRIBE_IP_RATE = "5/hour"
    codes = [subscribe(client, f"user{n}@example.org").status_code for n in range(1000)]
    assert codes[:5] == [200] * 5
    assert set(codes[5:]) == {429}
    assert Subscriber.objects.count() == 5
    assert len(deliver()) == 5
    refused = subscribe(client, "late@example.org")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many requests" in refused.content.decode()
    # Invalid requests count too: the form is not a free oracle either.
    assert client.post(SUBSCRIBE, {"email": "bad"}).status_code == 429


def test_a_loop_for_one_address_stores_and_sends_nothing_beyond_the_limit(components, settings):
    settings.VIGIL_SUBSCRIBE_IP_RATE = ""
    settings.VIGIL_SUBSCRIBE_ADDRESS_RATE = "3/day"
    settings.VIGIL_SUBSCRIBE_RESEND_MINUTES = 0
    codes = []
    for n in range(1000):
        client = Client(REMOTE_ADDR=f"198.51.{n // 250}.{n % 250 + 1}")
        email = "Ann@example.org" if n % 2 else "ann@EXAMPLE.org"  # one address, any case
        codes.append(subscribe(client, email, scope="some", components=["api"]).status_code)
    assert codes[:3] == [200] * 3
    assert set(codes[3:]) == {429}
    assert Subscriber.objects.count() == 1
    assert Notification.objects.count() == 3
    assert len(deliver()) == 3


# --- links ---------------------------------------------------------------------------------------


def test_an_expired_confirmation_link_changes_nothing(client, components):
    with time_machine.travel(T0, tick=False) as clock:
        subscribe(client, "ann@example.org")
        confirm = path(links(deliver()[0])["confirm"])
        clock.move_to(T0 + timedelta(hours=47))
        assert client.get(confirm).status_code == 200
        clock.move_to(T0 + timedelta(hours=48, seconds=1))
        for response in (client.get(confirm), client.post(confirm)):
            assert response.status_code == 410
            assert "expired" in response.content.decode()
    subscriber = Subscriber.objects.get()
    assert subscriber.state == SubscriberState.PENDING and subscriber.token_version == 1


def test_tampered_links_are_refused_and_change_nothing(client, components):
    manage = subscribed(client, "ann@example.org")["manage"]
    token = manage.rstrip("/").rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for url in (
        f"/status/subscriptions/unsubscribe/{tampered}/",
        f"/status/subscriptions/manage/{tampered}/",
        f"/status/subscriptions/confirm/{tampered}/",
        # A valid manage token is not an unsubscribe or confirm token (a salt per action).
        f"/status/subscriptions/unsubscribe/{token}/",
        f"/status/subscriptions/confirm/{token}/",
        "/status/subscriptions/unsubscribe/garbage/",
        "/status/subscriptions/unsubscribe/" + "x" * 600 + "/",
    ):
        for response in (client.get(url), client.post(url, {"action": "unsubscribe"})):
            assert response.status_code == 400, url
            assert "This link does not work" in response.content.decode()
    assert Subscriber.objects.get().state == SubscriberState.ACTIVE


def test_unsubscribe_needs_the_button_not_just_a_visit(client, components):
    unsubscribe = subscribed(client, "ann@example.org")["unsubscribe"]
    shown = client.get(unsubscribe)
    assert shown.status_code == 200
    assert "<form" in shown.content.decode() and "Unsubscribe" in shown.content.decode()
    assert Subscriber.objects.get().state == SubscriberState.ACTIVE

    done = Client(enforce_csrf_checks=True).post(unsubscribe, {"confirm": "1"})
    assert done.status_code == 200
    assert "You are unsubscribed" in done.content.decode()
    subscriber = Subscriber.objects.get()
    assert subscriber.state == SubscriberState.UNSUBSCRIBED
    assert subscriber.unsubscribed_at is not None

    reused = client.post(unsubscribe)
    assert reused.status_code == 410
    assert "This address is unsubscribed" in reused.content.decode()


def test_rfc_8058_one_click_unsubscribes_without_csrf_and_answers_200(components):
    links_ = subscribed(Client(), "ann@example.org")
    provider = Client(enforce_csrf_checks=True)
    body = "List-Unsubscribe=One-Click"
    form = "application/x-www-form-urlencoded"

    first = provider.post(links_["unsubscribe"], body, content_type=form)
    assert first.status_code == 200
    assert Subscriber.objects.get().state == SubscriberState.UNSUBSCRIBED
    # The provider may repeat it: still 200, nothing more changes.
    version = Subscriber.objects.get().token_version
    assert provider.post(links_["unsubscribe"], body, content_type=form).status_code == 200
    assert Subscriber.objects.get().token_version == version
    # Every link mailed before stops working, the manage page included.
    assert provider.get(links_["manage"]).status_code == 410


def test_a_link_of_an_earlier_subscription_does_not_touch_the_new_one(client, components):
    old = subscribed(client, "ann@example.org")
    client.post(old["unsubscribe"], {"confirm": "1"})
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=5)):
        subscribe(client, "ann@example.org")
        client.post(path(links(deliver()[0])["confirm"]))
    assert Subscriber.objects.get().state == SubscriberState.ACTIVE
    for url in (old["unsubscribe"], old["manage"]):
        response = client.post(url, {"action": "unsubscribe"})
        assert response.status_code == 410
        assert "earlier subscription" in response.content.decode()
    assert Subscriber.objects.get().state == SubscriberState.ACTIVE


# --- manage --------------------------------------------------------------------------------------


def test_the_manage_page_changes_choices_and_unsubscribes(client, components):
    manage = subscribed(client, "ann@example.org")["manage"]
    shown = client.get(manage)
    assert shown.status_code == 200
    page = shown.content.decode()
    assert "ann@example.org" in page  # the address the link was mailed to, nothing else
    assert 'value="all" checked' in page

    saved = client.post(
        manage, {"action": "save", "scope": "some", "components": ["search", "checkout"]}
    )
    assert saved.status_code == 200 and "Your choices are saved" in saved.content.decode()
    subscriber = Subscriber.objects.get()
    assert not subscriber.all_components and not subscriber.maintenance_notices
    assert sorted(c.code for c in subscriber.components.all()) == ["checkout", "search"]

    refused = client.post(manage, {"action": "save", "scope": "some", "components": ["nope"]})
    assert refused.status_code == 400
    assert sorted(c.code for c in Subscriber.objects.get().components.all()) == [
        "checkout",
        "search",
    ]

    # The link keeps working for the next change.
    client.post(manage, {"action": "save", "scope": "all", "maintenance": "1"})
    subscriber.refresh_from_db()
    assert subscriber.all_components and subscriber.maintenance_notices

    gone = client.post(manage, {"action": "unsubscribe"})
    assert gone.status_code == 200 and "You are unsubscribed" in gone.content.decode()
    assert Subscriber.objects.get().state == SubscriberState.UNSUBSCRIBED
    assert client.get(manage).status_code == 410


# --- customer contacts ---------------------------------------------------------------------------


def test_a_customer_contact_opts_out_by_the_link(components):
    customer = Customer.objects.create(name="Acme")
    contact = CustomerContact.objects.create(customer=customer, email="ops@acme.example")
    url = path(contact_optout_url(contact))
    browser = Client()

    shown = browser.get(url)
    assert shown.status_code == 200 and "Stop incident email" in shown.content.decode()
    contact.refresh_from_db()
    assert contact.incident_email

    done = Client(enforce_csrf_checks=True).post(url, {"confirm": "1"})
    assert done.status_code == 200
    contact.refresh_from_db()
    assert not contact.incident_email and contact.opted_out_at is not None
    assert contact.token_version == 2

    assert browser.post(url).status_code == 410
    one_click = browser.post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert one_click.status_code == 200  # the provider's repeat: done already
    assert browser.get(url[:-5] + "xxxx/").status_code == 400


# --- the status page ------------------------------------------------------------------------------


def test_the_status_page_links_to_the_subscribe_form(components):
    files = site.site_render()
    for name in ("index.html", "history.html"):
        assert 'href="http://localhost:8000/status/subscribe/"' in files[name].body.decode()
