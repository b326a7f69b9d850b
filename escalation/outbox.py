"""Sending a message: the one way any app of Vigil tells someone something.

Communications, reviews and any later app send e-mail, chat, SMS, voice or webhook messages by
calling :func:`notification_enqueue` in their own transaction, and read what became of them
through the selectors here. Nothing else of ``escalation`` is theirs to import: its models,
services, channels and tasks are private, and an import-linter contract holds them to this
module.

* :func:`notification_enqueue` writes an outbox row in the caller's transaction and delivers it
  after commit, retried with backoff; its idempotency key makes a second row, and so a second
  delivery, impossible. Rolling the caller back cancels the message. An email's ``context``
  may carry ``html`` (an alternative, rendered autoescaped by the sender), ``headers`` (list
  and threading headers, names in :data:`EMAIL_HEADERS`), ``ics`` with ``ics_method`` (a
  calendar invitation, REQUEST or CANCEL) and ``attachments`` (files: a list of at most 5
  ``{"filename", "content_type", "content_base64"}``, 10 MB decoded in all, a plain name of at
  most 120 characters and a ``type/subtype``). Headers, invitations and attachments that are
  malformed, or given to another channel, raise ValueError and write nothing.
* :func:`notification_enqueue_many` writes a mailing's rows in a few multi-row INSERTs and
  delivers them in batches (same idempotency); :class:`OutboxMessage` is one of its messages.
  :func:`email_message_id` is the Message-ID the email channel gives a key's message, for
  threading headers (``In-Reply-To``/``References``, allowed names in :data:`EMAIL_HEADERS`).
* :func:`notification_enqueue_together` sends the few messages of one event (a stakeholder
  update to a group) each as :func:`notification_enqueue` would, queue and idempotency alike,
  but with one INSERT and batch tasks; it returns their ids.
* :func:`notification_get` is a message's current state by its idempotency key;
  :func:`notification_list` an incident's messages, newest first.
  :func:`notification_states` the state of many at once (a mailing's delivery tracking).
* :func:`subscriber_webhook_secret` is the key that signs what the ``subscriber`` channel sends
  to a status-page subscriber's webhook URL (shown to staff, never stored);
  :func:`subscriber_webhook_url_problem` says why a URL would be refused ("" if it would not).
* :class:`NotificationStatus` names the states a message goes through (pending, sending,
  sent, failed).
* :func:`outbox_backlog` counts what is waiting or failed and how old the oldest waiting
  message is; :func:`sweep_ages` how long ago each sweep /healthz watches last ran (both read
  for the Prometheus exposition).

Channels are the core's ``incidents.models.Channel`` values.
"""

from __future__ import annotations

from .channels.email import message_id as email_message_id
from .channels.subscriber import subscriber_webhook_secret, subscriber_webhook_url_problem
from .health import sweep_ages
from .models import NotificationStatus
from .selectors import (
    NotificationState,
    OutboxBacklog,
    notification_get,
    notification_list,
    notification_states,
    outbox_backlog,
)
from .services.outbox import (
    EMAIL_HEADERS,
    OutboxMessage,
    notification_enqueue,
    notification_enqueue_many,
    notification_enqueue_together,
)

__all__ = [
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
