"""Social media posts for widespread outages (§5.2): drafted when a status update of a
widespread outage is published (Sev 1, or at least the policy's affected-user estimate),
edited, approved by the business liaison, sent once through the outbox's Mastodon channel to a
local server standing in for Mastodon, or discarded."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from django.core.cache import cache

from communications.models import (
    CommunicationPolicy,
    SocialPost,
    SocialPostState,
    StatusPageSettings,
)
from communications.services.components import component_create
from communications.services.social import (
    POST_MAX,
    social_post_approve,
    social_post_discard,
    social_post_edit,
    social_post_send,
)
from communications.services.updates import (
    status_update_approve,
    status_update_create,
    status_update_publish,
)
from config.celery import app
from escalation.outbox import notification_get, notification_list
from escalation.services.delivery import notification_send
from escalation.tasks import notification_send_task
from incidents.errors import ActionForbidden, InvalidInput, TransitionNotAllowed
from incidents.models import Kind, Source, TimelineEntry
from tests import workers
from tests.factories import IncidentFactory, ServiceFactory
from tests.workers import Reply

http_sink = workers.http_sink
no_external_network = workers.no_external_network

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

ADMIN = Source.ADMIN


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def checkout(db):
    service = ServiceFactory(slug="checkout", name="checkout-internal", public_name="Checkout")
    return component_create(service=service, actor=None)


@pytest.fixture
def second_liaison(make_user):
    return make_user("Business Liaison", username="bl2")


@pytest.fixture
def publish(communications_lead, business_liaison, checkout):
    """Draft, approve (where needed) and publish an update of ``incident``."""

    def run(incident, *, title="Checkout is down", status="investigating", body=None):
        update = status_update_create(
            incident=incident,
            actor=communications_lead,
            source=ADMIN,
            public_title=title,
            public_status=status,
            body=body or "Customers **cannot** pay. We are [on it](https://example.org).",
            components=[(checkout, "major_outage")],
        )
        if incident.severity_id <= 2:
            update = status_update_approve(
                status_update=update, actor=business_liaison, source=ADMIN
            )
        return status_update_publish(status_update=update, actor=communications_lead, source=ADMIN)

    return run


def posts(incident):
    return list(SocialPost.objects.filter(incident=incident).order_by("pk"))


# --- drafting --------------------------------------------------------------------------------


def test_a_sev1_update_drafts_a_post_from_the_update(publish, checkout):
    StatusPageSettings.objects.filter(pk=1).update(url="https://status.example.com/")
    incident = IncidentFactory(title="INTERNAL: db-7 lag", severity=1, services=[checkout.service])

    update = publish(incident, title="Payments failing", status="identified")

    [post] = posts(incident)
    assert post.status_update == update
    assert post.state == SocialPostState.DRAFT
    assert post.created_by is None
    assert post.body == (
        "Payments failing (Identified)\n\n"
        "Customers cannot pay. We are on it.\n\n"
        "https://status.example.com/"
    )
    # Nothing internal in it, and no markup.
    assert "INTERNAL" not in post.body
    assert "*" not in post.body and "](" not in post.body
    entry = TimelineEntry.objects.filter(
        incident=incident, kind=Kind.COMMUNICATION, data__social_post=post.pk
    ).get()
    assert "drafted" in entry.message


def test_without_a_page_url_the_post_links_to_vigils_status_page(settings, publish, checkout):
    settings.VIGIL_BASE_URL = "https://vigil.example.org"
    incident = IncidentFactory(severity=1, services=[checkout.service])
    publish(incident)
    [post] = posts(incident)
    assert post.body.endswith("\n\nhttps://vigil.example.org/status/")


def test_a_long_update_is_shortened_to_fit_with_the_link(publish, checkout):
    StatusPageSettings.objects.filter(pk=1).update(url="https://status.example.com/")
    incident = IncidentFactory(severity=1, services=[checkout.service])
    body = " ".join(f"word{i}" for i in range(400))

    publish(incident, body=body)

    [post] = posts(incident)
    assert len(post.body) <= POST_MAX
    assert post.body.startswith("Checkout is down (Investigating)\n\nword0 word1")
    assert post.body.endswith("…\n\nhttps://status.example.com/")
    # Cut between words, not inside one.
    text = post.body.split("\n\n")[1]
    assert text[:-1].split()[-1].startswith("word")
    assert text[:-1].split()[-1] in body.split()


@pytest.mark.parametrize(
    ("severity", "affected", "threshold", "drafted"),
    [
        (1, None, 10_000, True),
        (2, None, 10_000, False),
        (3, 10_000, 10_000, True),  # at the threshold counts
        (3, 9_999, 10_000, False),
        (4, 250_000, 10_000, True),
        (2, 1_000_000, None, False),  # no threshold: severity alone decides
    ],
)
def test_which_incidents_count_as_widespread(
    publish, checkout, severity, affected, threshold, drafted
):
    CommunicationPolicy.objects.filter(pk=1).update(social_affected_users=threshold)
    incident = IncidentFactory(
        severity=severity, affected_users=affected, services=[checkout.service]
    )
    publish(incident)
    assert len(posts(incident)) == (1 if drafted else 0)


def test_the_policys_severities_decide(publish, checkout):
    CommunicationPolicy.objects.filter(pk=1).update(social_severities=[1, 2])
    incident = IncidentFactory(severity=2, services=[checkout.service])
    publish(incident)
    assert len(posts(incident)) == 1


def test_each_published_update_gets_its_own_post_and_only_one(
    publish, checkout, communications_lead
):
    incident = IncidentFactory(severity=1, services=[checkout.service])
    first = publish(incident, title="Checkout is down")
    second = publish(incident, title="Fix deployed", status="monitoring")
    # Publishing again is a no-op, and drafts nothing more.
    status_update_publish(status_update=second, actor=communications_lead, source=ADMIN)

    assert [p.status_update for p in posts(incident)] == [first, second]


# --- the workflow ----------------------------------------------------------------------------


@pytest.fixture
def draft(publish, checkout):
    incident = IncidentFactory(severity=1, services=[checkout.service])
    publish(incident)
    [post] = posts(incident)
    return post


def test_edit_changes_the_text_and_withdraws_an_approval(
    draft, communications_lead, business_liaison
):
    post = social_post_edit(
        post=draft, actor=communications_lead, source=ADMIN, body="  Checkout is down.  "
    )
    assert post.body == "Checkout is down."
    post = social_post_approve(post=post, actor=business_liaison, source=ADMIN)
    assert post.state == SocialPostState.APPROVED

    post = social_post_edit(post=post, actor=communications_lead, source=ADMIN, body="Changed.")

    post.refresh_from_db()
    assert post.state == SocialPostState.DRAFT
    assert post.approved_by is None and post.approved_at is None
    entry = TimelineEntry.objects.filter(data__social_post=post.pk).order_by("-pk").first()
    assert "approval is withdrawn" in entry.message


@pytest.mark.parametrize("body", ["", "   ", "x" * (POST_MAX + 1), None, 42])
def test_an_empty_or_too_long_text_is_refused_and_changes_nothing(draft, communications_lead, body):
    before = draft.body
    with pytest.raises(InvalidInput) as raised:
        social_post_edit(post=draft, actor=communications_lead, source=ADMIN, body=body)
    assert "body" in raised.value.errors
    draft.refresh_from_db()
    assert draft.body == before


def test_exactly_500_characters_is_allowed(draft, communications_lead):
    post = social_post_edit(
        post=draft, actor=communications_lead, source=ADMIN, body="x" * POST_MAX
    )
    assert len(post.body) == POST_MAX


@pytest.mark.parametrize(
    ("role", "step"),
    [
        ("viewer", "edit"),
        ("business_liaison", "edit"),
        ("technical_lead", "discard"),
        ("communications_lead", "approve"),
        ("incident_manager", "approve"),
        ("viewer", "approve"),
        ("business_liaison", "send"),
        ("incident_manager", "send"),
    ],
)
def test_roles(request, draft, business_liaison, role, step):
    actor = request.getfixturevalue(role)
    if step == "send":
        draft = social_post_approve(post=draft, actor=business_liaison, source=ADMIN)
    service = {
        "edit": lambda: social_post_edit(post=draft, actor=actor, source=ADMIN, body="New."),
        "approve": lambda: social_post_approve(post=draft, actor=actor, source=ADMIN),
        "send": lambda: social_post_send(post=draft, actor=actor, source=ADMIN),
        "discard": lambda: social_post_discard(post=draft, actor=actor, source=ADMIN),
    }[step]
    state = SocialPost.objects.get(pk=draft.pk).state
    with pytest.raises(ActionForbidden):
        service()
    assert SocialPost.objects.get(pk=draft.pk).state == state
    assert notification_list().count() == 0


def test_no_one_approves_a_text_they_edited(draft, make_user, business_liaison, second_liaison):
    # Someone who may both edit and approve (a liaison who also leads communications).
    both = make_user("Business Liaison", "Communications Lead", username="both")
    social_post_edit(post=draft, actor=both, source=ADMIN, body="My own words.")
    with pytest.raises(ActionForbidden, match="wrote or edited"):
        social_post_approve(post=draft, actor=both, source=ADMIN)
    post = social_post_approve(post=draft, actor=second_liaison, source=ADMIN)
    assert post.approved_by == second_liaison


def test_a_draft_is_not_sent(draft, communications_lead):
    with pytest.raises(TransitionNotAllowed) as raised:
        social_post_send(post=draft, actor=communications_lead, source=ADMIN)
    assert raised.value.allowed == ["edit", "approve", "discard"]
    assert SocialPost.objects.get(pk=draft.pk).state == SocialPostState.DRAFT
    assert notification_list().count() == 0


def test_send_writes_one_outbox_row_and_is_idempotent(draft, business_liaison, communications_lead):
    post = social_post_approve(post=draft, actor=business_liaison, source=ADMIN)
    post = social_post_send(post=post, actor=communications_lead, source=ADMIN)
    again = social_post_send(post=post, actor=communications_lead, source=ADMIN)

    assert again.state == post.state == SocialPostState.SENT
    assert post.sent_at is not None
    [row] = notification_list(incident=post.incident)
    assert row.channel == "mastodon"
    assert row.idempotency_key == f"social:{post.pk}"
    assert row.body == post.body
    assert row.incident_id == post.incident_id
    sent_entries = TimelineEntry.objects.filter(
        data__social_post=post.pk, message__contains="sent to the company's Mastodon"
    )
    assert sent_entries.count() == 1


@pytest.mark.parametrize("step", ["edit", "approve", "discard"])
def test_a_sent_post_cannot_change(draft, business_liaison, communications_lead, step):
    post = social_post_approve(post=draft, actor=business_liaison, source=ADMIN)
    post = social_post_send(post=post, actor=communications_lead, source=ADMIN)
    actor = business_liaison if step == "approve" else communications_lead
    with pytest.raises(TransitionNotAllowed):
        if step == "edit":
            social_post_edit(post=post, actor=actor, source=ADMIN, body="Too late.")
        elif step == "approve":
            social_post_approve(post=post, actor=actor, source=ADMIN)
        else:
            social_post_discard(post=post, actor=actor, source=ADMIN)
    post.refresh_from_db()
    assert post.state == SocialPostState.SENT


@pytest.mark.parametrize("step", ["edit", "approve", "send"])
def test_a_discarded_post_stays_discarded(draft, business_liaison, communications_lead, step):
    post = social_post_discard(post=draft, actor=communications_lead, source=ADMIN)
    assert social_post_discard(post=post, actor=communications_lead, source=ADMIN).state == (
        SocialPostState.DISCARDED
    )
    with pytest.raises(TransitionNotAllowed):
        if step == "edit":
            social_post_edit(post=post, actor=communications_lead, source=ADMIN, body="No.")
        elif step == "approve":
            social_post_approve(post=post, actor=business_liaison, source=ADMIN)
        else:
            social_post_send(post=post, actor=communications_lead, source=ADMIN)
    assert SocialPost.objects.get(pk=post.pk).state == SocialPostState.DISCARDED
    assert notification_list().count() == 0


def test_every_step_is_on_the_timeline(draft, business_liaison, communications_lead):
    post = social_post_edit(post=draft, actor=communications_lead, source=ADMIN, body="Down.")
    post = social_post_approve(post=post, actor=business_liaison, source=ADMIN)
    social_post_send(post=post, actor=communications_lead, source=ADMIN)
    entries = TimelineEntry.objects.filter(data__social_post=post.pk).order_by("pk")
    assert [(e.actor, e.data["state"]) for e in entries] == [
        (None, "draft"),
        (communications_lead, "draft"),
        (business_liaison, "approved"),
        (communications_lead, "sent"),
    ]
    assert post.history.count() == 4


# --- delivery, through the outbox's worker path, to a local Mastodon ---------------------------


@pytest.fixture
def mastodon(settings, http_sink):
    settings.VIGIL_MASTODON_API_BASE_URL = http_sink.url
    settings.VIGIL_MASTODON_ACCESS_TOKEN = "company-token"
    settings.VIGIL_MASTODON_VISIBILITY = "public"
    http_sink.default = Reply(body={"id": "111", "url": "https://social.example/@acme/111"})
    return http_sink


@pytest.fixture
def eager():
    """Tasks published after commit run in this process: the outbox's delivery task, as the
    worker runs it, right after the sending transaction commits."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def test_a_sent_post_is_delivered_once_to_mastodon_after_commit(
    draft,
    business_liaison,
    communications_lead,
    mastodon,
    eager,
    django_capture_on_commit_callbacks,
):
    post = social_post_approve(post=draft, actor=business_liaison, source=ADMIN)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        post = social_post_send(post=post, actor=communications_lead, source=ADMIN)
    # Nothing leaves Vigil before the sending transaction commits.
    assert mastodon.requests() == []
    for callback in callbacks:
        callback()

    [request] = mastodon.requests()
    assert request.path == "/api/v1/statuses"
    assert request.header("Authorization") == "Bearer company-token"
    assert request.header("Idempotency-Key") == f"social:{post.pk}"
    assert parse_qs(request.body.decode())["status"] == [post.body]
    row = notification_get(idempotency_key=f"social:{post.pk}")
    assert row.status == "sent"
    assert row.provider_message_id == "111"

    # Pressing "send" again, and the delivery task running again, send nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        social_post_send(post=post, actor=communications_lead, source=ADMIN)
    notification_send_task.apply(args=[row.pk])
    assert len(mastodon.requests()) == 1
    assert notification_list().count() == 1


def test_a_mastodon_outage_is_retried_with_the_same_key(
    draft, business_liaison, communications_lead, mastodon
):
    mastodon.reply(Reply(status=503, body={"error": "down"}, headers={"Retry-After": "30"}))
    post = social_post_approve(post=draft, actor=business_liaison, source=ADMIN)
    post = social_post_send(post=post, actor=communications_lead, source=ADMIN)
    key = f"social:{post.pk}"

    # The worker's attempts (the delivery task calls this service).
    first = notification_send(notification_id=notification_get(idempotency_key=key).pk)
    assert first.result == "retry"
    assert first.retry_in >= 30
    row = notification_get(idempotency_key=key)
    assert row.status == "pending"
    assert "HTTP 503" in row.last_error

    assert notification_send(notification_id=row.pk).result == "sent"
    assert notification_send(notification_id=row.pk).result == "skipped"
    one, two = mastodon.requests()
    assert one.header("Idempotency-Key") == two.header("Idempotency-Key") == key
    assert one.body == two.body
