"""From the first update to the restoration notice, as a customer sees it: updates drafted,
approved and published through the staff API appear on /status/, in the Statuspage JSON and in
the feed, drafts never do, and the restoration notice's impact is told in the page's time zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.cache import cache

from communications.models import StatusPageSettings, StatusUpdate, UpdateKind
from communications.services.components import component_create
from incidents.models import Source
from incidents.services import incident_transition
from tests.events import followed
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db

transition = followed(incident_transition)


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


def status(client, path: str = "") -> str:
    cache.clear()  # what the page renders now, not the copy a previous request left
    response = client.get("/status/" + path)
    assert response.status_code == 200, path
    return response.content.decode()


def test_a_customer_follows_an_incident_from_first_update_to_restoration(
    client, api_as, communications_lead, business_liaison
):
    settings = StatusPageSettings.objects.get(pk=1)
    settings.time_zone = "Europe/Paris"
    settings.save()
    service = ServiceFactory(slug="checkout", name="pg-shard-3", public_name="Checkout")
    lead, liaison = api_as(communications_lead), api_as(business_liaison)
    base = "/api/v1/incidents/{}/status-updates/"

    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=False):
        component_create(service=service, actor=None)
        incident = IncidentFactory(
            title="INTERNAL pg-shard-3 failover", severity=2, services=[service]
        )
        url = base.format(incident.number)
        first = lead.post(
            url,
            {
                "public_title": "Checkout errors",
                "public_status": "investigating",
                "body": "Some payments fail. <script>alert(1)</script>",
                "components": [{"component": "checkout", "status": "major_outage"}],
            },
            format="json",
        ).json()
        assert "Checkout errors" not in status(client)  # a draft is not public
        assert liaison.post(f"{url}{first['id']}/approve/").status_code == 200
        published = lead.post(f"{url}{first['id']}/publish/")
        assert published.status_code == 200, published.json()

    page = status(client)
    assert "Checkout errors" in page
    assert "<script>alert(1)" not in page
    assert "INTERNAL" not in page and "pg-shard-3" not in page
    summary = json.loads(status(client, "api/v2/summary.json"))
    assert summary["components"][0]["status"] == "major_outage"
    assert [i["name"] for i in summary["incidents"]] == ["Checkout errors"]

    with time_machine.travel(datetime(2026, 3, 2, 10, 30, tzinfo=UTC), tick=False):
        transition(
            incident=incident,
            action="resolve",
            actor=None,
            source=Source.SYSTEM,
            resolution="Failed over to pg-shard-4.",
        )
    notice = StatusUpdate.objects.get(kind=UpdateKind.RESTORATION)
    # 09:00-10:30 UTC is 10:00-11:30 in Paris (CET, UTC+1, in March before the change).
    assert "on 2 March 2026 from 10:00 to 11:30 (CET), 1 hour 30 minutes in all" in notice.body
    assert "pg-shard" not in notice.body
    liaison.post(f"{url}{notice.pk}/approve/")
    assert lead.post(f"{url}{notice.pk}/publish/").status_code == 200

    summary = json.loads(status(client, "api/v2/summary.json"))
    assert summary["components"][0]["status"] == "operational"
    assert summary["incidents"] == []  # resolved: no longer unresolved
    incident_page = status(client, f"incidents/{incident.number}")
    assert "Service restored." in incident_page
    assert "We apologise" in incident_page
    assert "Resolved: Checkout" in status(client, "history.atom")
