"""Subscribers and the suppression list for staff: the admin (filters, search, CSV export of
the selected or filtered rows, adding a webhook subscriber with its key shown once, manual
suppressions added and removed with their history) and the API (the same, with role
permissions; bad input a 400 that changes nothing)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from communications.models import Subscriber, SubscriberKind, SubscriberState, Suppression
from communications.services.components import component_create
from escalation.outbox import subscriber_webhook_secret
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

ADMIN = "/admin/communications"
API = "/api/v1"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def private_hooks(settings):
    settings.VIGIL_SUBSCRIBER_WEBHOOK_ALLOW_PRIVATE = False
    settings.VIGIL_SUBSCRIBER_WEBHOOK_KEY = "staff-test-key"


@pytest.fixture
def public_dns(monkeypatch):
    """hooks.example resolves to a public address (no network in tests)."""
    import socket

    def resolve(host, port, *args, **kwargs):
        addresses = {
            "hooks.example": "93.184.216.34",
            "inside.example": "192.168.1.10",
            "127.0.0.1": "127.0.0.1",
        }
        if host not in addresses:
            raise socket.gaierror("unknown host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addresses[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.fixture
def checkout(communications_lead):
    service = ServiceFactory(slug="checkout", name="Checkout", public_name="Checkout")
    return component_create(service=service, actor=communications_lead, at=T0 - timedelta(days=3))


@pytest.fixture
def people(checkout):
    rows = {}
    for email, state in (
        ("ann@example.org", SubscriberState.ACTIVE),
        ("bob@example.org", SubscriberState.PENDING),
        ("=HYPERLINK(1)@example.org", SubscriberState.ACTIVE),
        ("cy@other.example", SubscriberState.UNSUBSCRIBED),
    ):
        rows[email] = Subscriber.objects.create(kind=SubscriberKind.EMAIL, email=email, state=state)
    rows["bob@example.org"].all_components = False
    rows["bob@example.org"].save()
    rows["bob@example.org"].components.set([checkout])
    return rows


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- admin ---------------------------------------------------------------------------------------


def test_admin_list_filters_and_searches(communications_lead, people):
    lead = login(communications_lead)
    page = lead.get(f"{ADMIN}/subscriber/?state__exact=active").content.decode()
    assert "ann@example.org" in page and "bob@example.org" not in page
    found = lead.get(f"{ADMIN}/subscriber/?q=other.example").content.decode()
    assert "cy@other.example" in found and "ann@example.org" not in found


def test_admin_exports_the_selected_or_filtered_subscribers_as_csv(communications_lead, people):
    lead = login(communications_lead)
    selected = [people["ann@example.org"].pk, people["bob@example.org"].pk]
    response = lead.post(
        f"{ADMIN}/subscriber/", {"action": "export_csv", "_selected_action": selected}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["address"], r["state"], r["components"]) for r in rows] == [
        ("ann@example.org", "active", ""),
        ("bob@example.org", "pending", "checkout"),
    ]

    # "Select all" of a filtered list exports every row of the filter, formulas defused.
    everything = lead.post(
        f"{ADMIN}/subscriber/?state__exact=active",
        {"action": "export_csv", "select_across": "1", "_selected_action": selected[:1]},
    )
    rows = list(csv.DictReader(io.StringIO(everything.content.decode())))
    assert sorted(r["address"] for r in rows) == [
        "'=HYPERLINK(1)@example.org",
        "ann@example.org",
    ]


def test_admin_adds_a_webhook_subscriber_and_shows_its_key_once(
    communications_lead, checkout, public_dns
):
    lead = login(communications_lead)
    assert lead.get(f"{ADMIN}/subscriber/add/").status_code == 200
    response = lead.post(
        f"{ADMIN}/subscriber/add/",
        {"url": "https://hooks.example/vigil", "components": [checkout.pk]},
    )
    assert response.status_code == 200
    secret = subscriber_webhook_secret("https://hooks.example/vigil")
    assert secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    subscriber = Subscriber.objects.get()
    assert subscriber.kind == SubscriberKind.WEBHOOK
    assert subscriber.state == SubscriberState.ACTIVE
    assert not subscriber.all_components and list(subscriber.components.all()) == [checkout]
    assert subscriber.history.first().history_user == communications_lead
    # The key is not on the subscriber's own pages.
    assert secret not in lead.get(f"{ADMIN}/subscriber/{subscriber.pk}/change/").content.decode()
    assert secret not in lead.get(f"{ADMIN}/subscriber/").content.decode()


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://inside.example/hook", "not a public address"),
        ("https://127.0.0.1/hook", "not a public address"),
        ("http://hooks.example/hook", "must start with https://"),
        ("https://nowhere.example/hook", "does not resolve"),
    ],
)
def test_admin_refuses_a_webhook_vigil_will_not_send_to(
    communications_lead, public_dns, url, error
):
    response = login(communications_lead).post(
        f"{ADMIN}/subscriber/add/", {"url": url, "all_components": "on"}
    )
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Subscriber.objects.exists()


def test_roles_without_the_permission_do_not_see_subscribers(viewer, technical_lead, people):
    for user in (viewer, technical_lead):
        assert login(user).get(f"{ADMIN}/subscriber/").status_code == 403


def test_admin_suppressions_added_and_removed_with_history(communications_lead):
    lead = login(communications_lead)
    added = lead.post(
        f"{ADMIN}/suppression/add/", {"email": "Spam@Example.org", "detail": "asked by phone"}
    )
    assert added.status_code == 302
    row = Suppression.objects.get()
    assert (row.email, row.reason, row.created_by) == (
        "Spam@Example.org",
        "manual",
        communications_lead,
    )

    refused = lead.post(f"{ADMIN}/suppression/add/", {"email": "not an address"})
    assert refused.status_code == 200 and "Enter a valid email address" in refused.content.decode()
    assert Suppression.objects.count() == 1

    removed = lead.post(f"{ADMIN}/suppression/{row.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    assert not Suppression.objects.exists()
    last = Suppression.history.order_by("-history_id").first()
    assert last.history_type == "-" and last.history_user == communications_lead


# --- API -----------------------------------------------------------------------------------------


def test_api_lists_and_filters_subscribers(api_as, communications_lead, people):
    api = api_as(communications_lead)
    listed = api.get(f"{API}/subscribers/", {"state": "pending"})
    assert listed.status_code == 200
    assert [r["address"] for r in listed.json()["results"]] == ["bob@example.org"]
    assert listed.json()["results"][0]["components"] == ["checkout"]
    assert api.get(f"{API}/subscribers/", {"q": "other"}).json()["results"][0]["state"] == (
        "unsubscribed"
    )
    assert api.get(f"{API}/subscribers/", {"state": "nope"}).status_code == 400


def test_api_adds_and_removes_a_webhook_subscriber(api_as, communications_lead, public_dns):
    api = api_as(communications_lead)
    created = api.post(
        f"{API}/subscribers/",
        {"url": "https://hooks.example/h", "maintenance_notices": False},
        format="json",
    )
    assert created.status_code == 201
    body = created.json()
    assert body["kind"] == "webhook" and body["state"] == "active"
    assert body["secret"] == subscriber_webhook_secret("https://hooks.example/h")
    # A receiver checks a signature with it.
    payload = b'{"x":1}'
    signature = hmac.new(body["secret"].encode(), payload, hashlib.sha256).hexdigest()
    assert len(signature) == 64
    read = api.get(f"{API}/subscribers/{body['id']}/").json()
    assert "secret" not in read

    again = api.post(f"{API}/subscribers/", {"url": "https://hooks.example/h"}, format="json")
    assert again.status_code == 400 and Subscriber.objects.count() == 1

    assert api.delete(f"{API}/subscribers/{body['id']}/").status_code == 204
    assert not Subscriber.objects.exists()
    assert api.delete(f"{API}/subscribers/{body['id']}/").status_code == 404


@pytest.mark.parametrize(
    "data",
    [
        {"url": "https://inside.example/h"},
        {"url": "ftp://hooks.example/h"},
        {"url": "https://hooks.example/h", "all_components": False, "components": ["nope"]},
        {"url": "https://hooks.example/h", "all_components": False, "components": []},
        {"url": ""},
    ],
)
def test_api_refuses_bad_webhooks_and_stores_nothing(
    api_as, communications_lead, checkout, public_dns, data
):
    response = api_as(communications_lead).post(f"{API}/subscribers/", data, format="json")
    assert response.status_code == 400
    assert not Subscriber.objects.exists()


def test_api_permissions(api_as, viewer, business_liaison, people, public_dns):
    assert api_as(viewer).get(f"{API}/subscribers/").status_code == 403
    assert api_as(viewer).get(f"{API}/suppressions/").status_code == 403
    liaison = api_as(business_liaison)
    assert liaison.get(f"{API}/subscribers/").status_code == 200
    refused = liaison.post(f"{API}/subscribers/", {"url": "https://hooks.example/h"}, format="json")
    assert refused.status_code == 403
    target = people["ann@example.org"].pk
    assert liaison.delete(f"{API}/subscribers/{target}/").status_code == 403
    assert (
        liaison.post(f"{API}/suppressions/", {"email": "a@b.example"}, format="json").status_code
        == 403
    )
    assert Subscriber.objects.filter(pk=target).exists() and not Suppression.objects.exists()


def test_api_suppressions(api_as, communications_lead):
    api = api_as(communications_lead)
    first = api.post(
        f"{API}/suppressions/", {"email": "x@example.org", "detail": "legal"}, format="json"
    )
    assert first.status_code == 201
    assert first.json()["reason"] == "manual"
    assert first.json()["created_by"]["username"] == communications_lead.username
    again = api.post(f"{API}/suppressions/", {"email": "X@EXAMPLE.org"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert api.post(f"{API}/suppressions/", {"email": "nope"}, format="json").status_code == 400
    assert (
        api.post(
            f"{API}/suppressions/", {"email": "a@b.example", "detail": "d" * 501}, format="json"
        ).status_code
        == 400
    )
    assert Suppression.objects.count() == 1
    assert [r["email"] for r in api.get(f"{API}/suppressions/", {"q": "x@"}).json()["results"]] == [
        "x@example.org"
    ]
    assert api.delete(f"{API}/suppressions/{first.json()['id']}/").status_code == 204
    assert not Suppression.objects.exists()
