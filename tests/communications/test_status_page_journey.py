"""A customer watches an incident on /status/ from its first update to the restoration notice,
while staff work through the API: only what is published appears, as soon as it is committed,
and the internal title never does."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from communications.models import StatusUpdate, UpdateKind
from communications.public import site
from communications.services.components import component_create
from incidents.models import Source
from incidents.services import incident_transition
from tests.events import followed
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db
transition = followed(incident_transition)
INTERNAL = "INTERNAL db-7 replica lag after Bob's deploy"


@pytest.fixture(autouse=True)
def empty_site_cache():
    cache.clear()
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0
    yield
    cache.clear()


def url(incident, *parts) -> str:
    tail = "".join(f"{part}/" for part in parts)
    return f"/api/v1/incidents/{incident.number}/status-updates/{tail}"


def test_from_first_update_to_restoration_notice(
    client, api_as, communications_lead, business_liaison, django_capture_on_commit_callbacks
):
    checkout = component_create(
        service=ServiceFactory(slug="checkout", name="checkout-svc", public_name="Checkout"),
        actor=None,
    )
    incident = IncidentFactory(title=INTERNAL, severity=1, services=[checkout.service])
    lead, liaison = api_as(communications_lead), api_as(business_liaison)
    assert "All Systems Operational" in client.get("/status/").content.decode()

    def staff(api, path, data=None):
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(path, data, format="json")
        assert response.status_code in (200, 201), response.json()
        return response.json()

    first = staff(
        lead,
        url(incident),
        {
            "public_title": "Checkout errors",
            "public_status": "investigating",
            "body": "Some payments **fail**; we are investigating.",
            "components": [{"component": "checkout", "status": "partial_outage"}],
        },
    )
    staff(liaison, url(incident, first["id"], "approve"))
    # Approved is not published: the page does not change.
    assert "Checkout errors" not in client.get("/status/").content.decode()
    staff(lead, url(incident, first["id"], "publish"))

    page = client.get("/status/").content.decode()
    assert "Partial System Outage" in page
    assert "Checkout errors" in page and "<strong>fail</strong>" in page
    assert "Partial outage" in page

    transition(
        incident=incident, action="acknowledge", actor=None, source=Source.SYSTEM
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        transition(
            incident=incident, action="investigate", actor=None, source=Source.SYSTEM
        )  # fmt: skip
        transition(
            incident=incident, action="resolve", actor=None, source=Source.SYSTEM,
            resolution="Rolled back Bob's deploy.",
        )  # fmt: skip
    notice = StatusUpdate.objects.get(kind=UpdateKind.RESTORATION)
    # The notice is a draft until approved and published: still the incident as it was.
    assert "Service restored" not in client.get("/status/").content.decode()
    staff(liaison, url(incident, notice.pk, "approve"))
    staff(lead, url(incident, notice.pk, "publish"))

    page = client.get("/status/").content.decode()
    assert "All Systems Operational" in page
    assert "Active incidents" not in page
    assert "Resolved: Checkout" in page  # recent incidents
    incident_page = client.get(f"/status/incidents/{incident.number}").content.decode()
    assert "Service restored." in incident_page and "Checkout errors" not in incident_page
    assert incident_page.index("Service restored.") < incident_page.index("we are investigating")
    assert "Resolved" in incident_page
    assert "Resolved: Checkout" in client.get("/status/history").content.decode()

    for path, artifact in site.site_render().items():
        text = artifact.body.decode(errors="replace")
        assert "INTERNAL" not in text and "Bob" not in text, path
