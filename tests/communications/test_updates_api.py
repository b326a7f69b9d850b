"""Status updates through the staff API: draft -> approved -> published, the business liaison's
approval where the policy needs it, immutability once published, sanitized bodies, components'
status intervals, roles, bad input, the restoration notice on resolve, query counts."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache

from communications.models import (
    CommunicationPolicy,
    ComponentStatus,
    ComponentStatusInterval,
    FirstUpdateClock,
    StatusUpdate,
    UpdateKind,
    UpdateState,
)
from communications.services.components import component_create
from communications.services.updates import TITLE_PROMPT
from incidents.models import Kind, Source
from incidents.services import incident_transition
from tests.events import follow_events, followed
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db

transition = followed(incident_transition)


def url(incident, *parts) -> str:
    tail = "".join(f"{part}/" for part in parts)
    return f"/api/v1/incidents/{incident.number}/status-updates/{tail}"


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def checkout(db):
    service = ServiceFactory(slug="checkout", name="checkout-svc-internal", public_name="Checkout")
    return component_create(service=service, actor=None)


@pytest.fixture
def payments(db):
    service = ServiceFactory(slug="payments", name="payments-internal", public_name="Payments")
    return component_create(service=service, actor=None)


@pytest.fixture
def sev1(checkout):
    return IncidentFactory(
        title="INTERNAL: db-7 replica lag, Bob's deploy", severity=1, services=[checkout.service]
    )


@pytest.fixture
def sev3(checkout):
    return IncidentFactory(title="INTERNAL: cache node flapping", severity=3)


@pytest.fixture
def second_liaison(make_user):
    return make_user("Business Liaison", username="bl2")


def draft(api, incident, **data):
    body = {
        "public_title": "Checkout is slow",
        "public_status": "investigating",
        "body": "We are looking into slow checkouts.",
        "components": [{"component": "checkout", "status": "degraded_performance"}],
        **data,
    }
    response = api.post(url(incident), body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_sev1_workflow_draft_approve_publish(
    api_as, communications_lead, business_liaison, sev1, checkout
):
    lead, liaison = api_as(communications_lead), api_as(business_liaison)
    created = draft(lead, sev1)
    assert created["state"] == "draft"
    assert created["created_by"]["username"] == "cl"
    assert created["components"] == [
        {
            "component": "checkout",
            "name": "Checkout",
            "status": "degraded_performance",
            "old_status": "",
        }
    ]

    refused = lead.post(url(sev1, created["id"], "publish"))
    assert refused.status_code == 409, refused.json()
    assert "business liaison's approval" in refused.json()["detail"]
    assert refused.json()["allowed_actions"] == ["approve"]
    assert StatusUpdate.objects.get().state == UpdateState.DRAFT
    checkout.refresh_from_db()
    assert checkout.status == ComponentStatus.OPERATIONAL

    approved = liaison.post(url(sev1, created["id"], "approve"))
    assert approved.status_code == 200, approved.json()
    assert approved.json()["state"] == "approved"
    assert approved.json()["approved_by"]["username"] == "bl"

    published = lead.post(url(sev1, created["id"], "publish"))
    assert published.status_code == 200, published.json()
    body = published.json()
    assert body["state"] == "published"
    assert body["published_by"]["username"] == "cl"
    assert body["components"][0]["old_status"] == "operational"

    checkout.refresh_from_db()
    assert checkout.status == ComponentStatus.DEGRADED_PERFORMANCE
    interval = ComponentStatusInterval.objects.get(component=checkout, ended_at__isnull=True)
    assert interval.status == ComponentStatus.DEGRADED_PERFORMANCE
    assert interval.status_update_id == created["id"]
    assert interval.actor == communications_lead

    messages = list(sev1.timeline.filter(kind=Kind.COMMUNICATION).values_list("message", flat=True))
    assert [m.split(":")[0] for m in messages] == [
        "Status update drafted",
        "Status update approved",
        "Status update published",
        # Sev 1 is a widespread outage: a social media post is drafted from the update.
        "Social media post drafted",
    ]
    update = StatusUpdate.objects.get()
    reasons = [record.history_change_reason for record in update.history.order_by("history_id")]
    assert reasons == ["drafted (api)", "approved (api)", "published (api)"]


def test_sev3_publishes_without_approval(api_as, communications_lead, sev3, checkout):
    lead = api_as(communications_lead)
    created = draft(lead, sev3)
    published = lead.post(url(sev3, created["id"], "publish"))
    assert published.status_code == 200, published.json()
    assert published.json()["state"] == "published"
    assert published.json()["approved_by"] is None


def test_policy_decides_which_severities_need_approval(api_as, communications_lead, sev3, checkout):
    CommunicationPolicy.objects.filter(pk=1).update(approval_severities=[1, 2, 3])
    lead = api_as(communications_lead)
    created = draft(lead, sev3)
    assert lead.post(url(sev3, created["id"], "publish")).status_code == 409


def test_liaison_cannot_approve_own_draft(api_as, superuser, sev1, checkout):
    # A superuser holds every permission, the approval's included: only authorship stops them.
    root = api_as(superuser)
    created = draft(root, sev1)
    response = root.post(url(sev1, created["id"], "approve"))
    assert response.status_code == 403, response.json()
    assert response.json()["detail"].startswith("You cannot approve your own draft")
    assert StatusUpdate.objects.get().state == UpdateState.DRAFT


def test_liaison_who_drafted_cannot_approve(api_as, business_liaison, second_liaison, sev1):
    # A liaison who may also draft (an extra group) still cannot approve their own words.
    business_liaison.groups.add(Group.objects.get(name="Communications Lead"))
    created = draft(api_as(business_liaison), sev1, components=[])
    own = api_as(business_liaison).post(url(sev1, created["id"], "approve"))
    assert own.status_code == 403
    other = api_as(second_liaison).post(url(sev1, created["id"], "approve"))
    assert other.status_code == 200, other.json()


def test_only_the_liaison_approves(api_as, communications_lead, incident_manager, sev1):
    created = draft(api_as(incident_manager), sev1, components=[])
    response = api_as(communications_lead).post(url(sev1, created["id"], "approve"))
    assert response.status_code == 403
    assert "approve status updates" in response.json()["detail"]
    assert StatusUpdate.objects.get().state == UpdateState.DRAFT


def test_published_update_is_immutable(api_as, communications_lead, sev3, checkout):
    lead = api_as(communications_lead)
    created = draft(lead, sev3)
    assert lead.post(url(sev3, created["id"], "publish")).status_code == 200
    response = lead.patch(url(sev3, created["id"]), {"body": "Rewritten."}, format="json")
    assert response.status_code == 409, response.json()
    assert "post a correction as a new update" in response.json()["detail"]
    update = StatusUpdate.objects.get()
    assert update.body == "We are looking into slow checkouts."
    # Publishing again changes nothing.
    again = lead.post(url(sev3, created["id"], "publish"))
    assert again.status_code == 200
    assert ComponentStatusInterval.objects.filter(status_update=update).count() == 1


def test_editing_an_approved_update_withdraws_its_approval(
    api_as, communications_lead, business_liaison, sev1
):
    lead = api_as(communications_lead)
    created = draft(lead, sev1, components=[])
    assert api_as(business_liaison).post(url(sev1, created["id"], "approve")).status_code == 200
    edited = lead.patch(url(sev1, created["id"]), {"body": "New text."}, format="json")
    assert edited.status_code == 200, edited.json()
    assert edited.json()["state"] == "draft"
    assert edited.json()["approved_by"] is None
    assert lead.post(url(sev1, created["id"], "publish")).status_code == 409


def test_title_defaults_to_a_prompt_never_the_internal_title(
    api_as, communications_lead, business_liaison, sev3
):
    lead = api_as(communications_lead)
    created = draft(lead, sev3, public_title="", components=[])
    assert created["public_title"] == TITLE_PROMPT
    assert created["title_is_prompt"] is True
    assert "INTERNAL" not in created["public_title"]
    refused = lead.post(url(sev3, created["id"], "publish"))
    assert refused.status_code == 400
    assert "public_title" in refused.json()["errors"]
    assert StatusUpdate.objects.get().state == UpdateState.DRAFT
    lead.patch(url(sev3, created["id"]), {"public_title": "Slow checkout"}, format="json")
    assert lead.post(url(sev3, created["id"], "publish")).status_code == 200


XSS_BODY = (
    "<script>alert(1)</script>\n\n"
    '<img src=x onerror="alert(2)">\n\n'
    "[click](javascript:alert(3))\n\n"
    '<a href="https://evil.example" onclick="alert(4)">raw</a>\n\n'
    "**fine**"
)


def elements(html: str) -> list[tuple[str, list]]:
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collector().feed(html)
    return found


def test_xss_vectors_never_reach_body_html(api_as, communications_lead, sev3):
    created = draft(
        api_as(communications_lead),
        sev3,
        public_title="<script>alert('t')</script> Slow",
        body=XSS_BODY,
        components=[],
    )
    html = created["body_html"]
    assert "<strong>fine</strong>" in html
    tags = elements(html)
    assert {tag for tag, _ in tags} <= {"p", "strong", "a"}
    for tag, attrs in tags:
        assert not any(name.startswith("on") for name, _ in attrs), (tag, attrs)
        assert not any("javascript:" in (value or "") for _, value in attrs), (tag, attrs)
    # Raw HTML is shown as text (escaped), never as markup.
    assert "&lt;script&gt;" in html
    # The title is stored as text; whatever shows it escapes it.
    assert created["public_title"] == "<script>alert('t')</script> Slow"


def test_viewer_reads_but_cannot_write(api_as, communications_lead, viewer, sev3):
    created = draft(api_as(communications_lead), sev3, components=[])
    reader = api_as(viewer)
    assert reader.get(url(sev3)).status_code == 200
    assert reader.get(url(sev3, created["id"])).status_code == 200
    body = {"public_status": "investigating", "body": "x"}
    assert reader.post(url(sev3), body, format="json").status_code == 403
    assert reader.patch(url(sev3, created["id"]), {"body": "y"}, format="json").status_code == 403
    assert reader.post(url(sev3, created["id"], "approve")).status_code == 403
    assert reader.post(url(sev3, created["id"], "publish")).status_code == 403
    assert StatusUpdate.objects.get().body == "We are looking into slow checkouts."


@pytest.mark.parametrize(
    "components, field",
    [
        ([{"component": "nope", "status": "major_outage"}], "components.0.component"),
        ([{"component": "internal-db", "status": "major_outage"}], "components.0.component"),
        (
            [
                {"component": "checkout", "status": "major_outage"},
                {"component": "checkout", "status": "partial_outage"},
            ],
            "components.1.component",
        ),
        ([{"component": "checkout", "status": "on_fire"}], "components.0.status"),
    ],
)
def test_bad_components_are_refused(api_as, communications_lead, sev3, checkout, components, field):
    internal = ServiceFactory(slug="internal-db", public_name="Internal DB")
    component_create(service=internal, actor=None)
    internal.public_name = ""
    internal.save()
    body = {"public_status": "investigating", "body": "x", "components": components}
    response = api_as(communications_lead).post(url(sev3), body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not StatusUpdate.objects.exists()


@pytest.mark.parametrize(
    "data, field",
    [
        ({"public_status": "exploded", "body": "x"}, "public_status"),
        ({"public_status": "investigating", "body": "   "}, "body"),
        ({"public_status": "investigating"}, "body"),
        (
            {"public_status": "investigating", "body": "x", "public_title": "t" * 201},
            "public_title",
        ),
    ],
)
def test_bad_fields_are_refused(api_as, communications_lead, sev3, data, field):
    response = api_as(communications_lead).post(url(sev3), data, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not StatusUpdate.objects.exists()


def test_unknown_incident_or_update_is_404(api_as, communications_lead, sev3):
    lead = api_as(communications_lead)
    assert lead.get("/api/v1/incidents/INC-2000-0101-999/status-updates/").status_code == 404
    assert lead.get("/api/v1/incidents/bad%00id/status-updates/").status_code == 404
    assert lead.get(url(sev3, 12345)).status_code == 404
    other = IncidentFactory()
    created = draft(lead, sev3, components=[])
    assert lead.get(url(other, created["id"])).status_code == 404


def test_cancelled_incident_takes_no_update(api_as, communications_lead):
    incident = IncidentFactory(status="cancelled")
    body = {"public_status": "investigating", "body": "x"}
    response = api_as(communications_lead).post(url(incident), body, format="json")
    assert response.status_code == 400
    assert "incident" in response.json()["errors"]


@pytest.mark.parametrize("count", [1, 12])
def test_list_query_count_is_fixed(
    api_as, communications_lead, sev3, checkout, payments, django_assert_num_queries, count
):
    lead = api_as(communications_lead)
    for n in range(count):
        draft(
            lead,
            sev3,
            public_title=f"Update {n}",
            components=[
                {"component": "checkout", "status": "partial_outage"},
                {"component": "payments", "status": "degraded_performance"},
            ],
        )
    # Authentication and permissions (3; the permissions are asked in one query), the
    # incident, the page, its components with their services: the same for one update as for
    # a dozen.
    with django_assert_num_queries(6):
        response = lead.get(url(sev3))
    assert response.status_code == 200
    assert len(response.json()["results"]) == count
    assert all(len(row["components"]) == 2 for row in response.json()["results"])


def test_restoration_notice_drafted_on_resolve(
    api_as, communications_lead, business_liaison, sev1, checkout
):
    lead = api_as(communications_lead)
    created = draft(lead, sev1, components=[{"component": "checkout", "status": "major_outage"}])
    api_as(business_liaison).post(url(sev1, created["id"], "approve"))
    lead.post(url(sev1, created["id"], "publish"))

    resolved = transition(
        incident=sev1, action="resolve", actor=None, source=Source.SYSTEM, resolution="Rolled back."
    )
    notice = StatusUpdate.objects.get(kind=UpdateKind.RESTORATION)
    assert notice.state == UpdateState.DRAFT
    assert notice.public_status == "resolved"
    assert notice.public_title == "Resolved: Checkout"
    assert "Service restored." in notice.body
    assert "Checkout is working normally again" in notice.body
    assert "apologise" in notice.body
    assert "INTERNAL" not in notice.body and "Rolled back" not in notice.body
    assert [(a.component, a.new_status) for a in notice.affected.all()] == [
        (checkout, ComponentStatus.OPERATIONAL)
    ]
    assert resolved.timeline.filter(message__startswith="Restoration notice drafted").count() == 1

    # Publishing the notice (Sev 1: approved first) brings the component back.
    api_as(business_liaison).post(url(sev1, notice.pk, "approve"))
    assert lead.post(url(sev1, notice.pk, "publish")).status_code == 200
    checkout.refresh_from_db()
    assert checkout.status == ComponentStatus.OPERATIONAL

    # Reopen and resolve again: the published notice is followed by a new draft.
    reopened = transition(
        incident=resolved, action="reopen", actor=None, source=Source.SYSTEM, reason="It came back."
    )
    transition(
        incident=reopened, action="resolve", actor=None, source=Source.SYSTEM, resolution="Fixed."
    )
    assert StatusUpdate.objects.filter(kind=UpdateKind.RESTORATION).count() == 2


def test_restoration_notice_once_while_unpublished(sev3):
    sev3.customer_facing = True
    sev3.save()
    resolved = transition(
        incident=sev3, action="resolve", actor=None, source=Source.SYSTEM, resolution="Fixed."
    )
    reopened = transition(
        incident=resolved, action="reopen", actor=None, source=Source.SYSTEM, reason="Again."
    )
    transition(
        incident=reopened, action="resolve", actor=None, source=Source.SYSTEM, resolution="Fixed."
    )
    notices = StatusUpdate.objects.filter(kind=UpdateKind.RESTORATION)
    assert notices.count() == 1
    assert notices.get().public_title == "Service restored"


def test_no_restoration_notice_when_resolved_was_published_before_the_handler_ran(
    api_as, communications_lead, sev3, checkout
):
    """A worker backlog: the lead announces the resolution before Vigil follows the resolve
    event. Customers have been told; no second notice is drafted."""
    sev3.customer_facing = True
    sev3.save()
    incident_transition(
        incident=sev3, action="resolve", actor=None, source=Source.SYSTEM, resolution="Fixed."
    )
    lead = api_as(communications_lead)
    created = draft(
        lead,
        sev3,
        public_status="resolved",
        components=[{"component": "checkout", "status": "operational"}],
    )
    assert lead.post(url(sev3, created["id"], "publish")).status_code == 200
    follow_events()
    assert list(StatusUpdate.objects.values_list("kind", "state")) == [
        (UpdateKind.UPDATE, UpdateState.PUBLISHED)
    ]


def test_no_restoration_notice_for_an_internal_incident_nobody_was_told_of(sev3):
    transition(incident=sev3, action="resolve", actor=None, source=Source.SYSTEM, resolution="x")
    assert not StatusUpdate.objects.exists()


def test_policy_api_validates(api_as, superuser, viewer):
    root = api_as(superuser)
    assert root.get("/api/v1/policy/communication/").json() == {
        "approval_severities": [1, 2],
        "first_update_minutes": 30,
        "reminder_minutes": [15, 25],
    }
    for bad, field in (
        ({"approval_severities": [0, 5]}, "approval_severities"),
        ({"reminder_minutes": [15, 30]}, "reminder_minutes"),
        ({"first_update_minutes": 0}, "first_update_minutes"),
        ({"reminder_minutes": [-5]}, "reminder_minutes"),
        ({"first_update_minutes": 20}, "reminder_minutes"),
    ):
        response = root.patch("/api/v1/policy/communication/", bad, format="json")
        assert response.status_code == 400, (bad, response.json())
        assert field in response.json()["errors"], (bad, response.json())
    ok = root.patch("/api/v1/policy/communication/", {"approval_severities": [1]}, format="json")
    assert ok.status_code == 200
    policy = CommunicationPolicy.objects.get()
    assert policy.approval_severities == [1]
    assert policy.history.latest().history_user == superuser
    reader = api_as(viewer)
    assert reader.get("/api/v1/policy/communication/").status_code == 200
    assert (
        reader.patch(
            "/api/v1/policy/communication/", {"approval_severities": [1, 2]}, format="json"
        ).status_code
        == 403
    )


def test_first_published_update_meets_the_30_minute_clock(api_as, communications_lead, checkout):
    incident = IncidentFactory(severity=3, customer_facing=True, services=[checkout.service])
    transition(incident=incident, action="acknowledge", actor=None, source=Source.SYSTEM)
    clock = FirstUpdateClock.objects.get(incident=incident)
    assert clock.met_at is None
    lead = api_as(communications_lead)
    created = draft(lead, incident)
    clock.refresh_from_db()
    assert clock.met_at is None  # a draft is not an update customers see
    assert lead.post(url(incident, created["id"], "publish")).status_code == 200
    clock.refresh_from_db()
    assert clock.met_at == StatusUpdate.objects.get().published_at
    assert clock.next_check_at is None
