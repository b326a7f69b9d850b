"""``escalation.outbox``, the module other apps send messages through: what it offers is enough
to send a message and follow its delivery state, and nothing more."""

from __future__ import annotations

import pytest
from django.db import transaction

import escalation.outbox as outbox
from tests import workers

no_external_network = workers.no_external_network

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]


def send(incident, key):
    return outbox.notification_enqueue(
        incident=incident,
        channel="email",
        recipient="customer@example.com",
        subject="Service update",
        body="We are investigating.",
        template="status_update",
        reason="Customer update",
        idempotency_key=key,
    )


def test_the_public_surface_is_sending_reading_state_and_the_backlog():
    assert sorted(outbox.__all__) == [
        "EMAIL_HEADERS",
        "NotificationState",
        "NotificationStatus",
        "OutboxBacklog",
        "OutboxMessage",
        "email_message_id",
        "notification_enqueue",
        "notification_enqueue_many",
        "notification_enqueue_together",
        "notification_get",
        "notification_list",
        "notification_states",
        "outbox_backlog",
        "subscriber_webhook_secret",
        "subscriber_webhook_url_problem",
        "sweep_ages",
    ]


def test_a_message_sent_through_the_outbox_can_be_followed_by_its_key(incident):
    sent = send(incident, "comms:update:1")

    found = outbox.notification_get(idempotency_key="comms:update:1")

    assert found is not None and found.pk == sent.pk
    assert found.status == outbox.NotificationStatus.PENDING
    assert sent.pk in [n.pk for n in outbox.notification_list(incident=incident)]
    assert outbox.notification_get(idempotency_key="comms:update:unknown") is None


def test_sending_twice_with_one_key_is_one_message(incident):
    first = send(incident, "comms:update:2")
    second = send(incident, "comms:update:2")

    assert first.pk == second.pk


def test_rolling_the_sender_back_cancels_the_message(incident):
    with pytest.raises(RuntimeError), transaction.atomic():
        send(incident, "comms:update:3")
        raise RuntimeError("the sender's transaction fails")

    assert outbox.notification_get(idempotency_key="comms:update:3") is None
