"""Shared set-up of the customer-email tests: a named status page with two components, email
and webhook subscribers, customers with contacts, and publishing through the services with the
after-commit work (the fan-out task, the outbox's delivery tasks) run in this process.

Import the fixtures by name in a test module::

    from tests.communications.fanout_fixtures import *  # noqa: F403
"""

from __future__ import annotations

import email
from email import policy
from typing import Any

import pytest
from django.core import mail

from communications.models import (
    Customer,
    CustomerContact,
    StatusPageSettings,
    Subscriber,
    SubscriberKind,
    SubscriberState,
)
from communications.services.components import component_create
from communications.services.updates import (
    needs_approval,
    status_update_approve,
    status_update_create,
    status_update_publish,
)
from config.celery import app
from incidents.models import Source
from tests.factories import ServiceFactory

__all__ = [
    "components",
    "contact",
    "delivered",
    "eager",
    "page",
    "parsed",
    "publish_update",
    "subscribe",
]

FROM = "Example Co Status <status@example.com>"


@pytest.fixture
def eager():
    """Tasks published after commit run in this process (the real worker has its own test)."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def page(settings, db):
    settings.VIGIL_BASE_URL = "https://vigil.example.com"
    settings.DEFAULT_FROM_EMAIL = FROM
    settings.VIGIL_EMAIL_UNSUBSCRIBE_MAILTO = ""
    settings.VIGIL_CUSTOMER_EMAIL_REPLY_TO = ""
    row, _ = StatusPageSettings.objects.get_or_create(pk=1)
    row.name = "Example Co Status"
    row.url = "https://status.example.com"
    row.time_zone = "Europe/Paris"
    row.save()
    return row


@pytest.fixture
def components(communications_lead, page):
    """Two public components: checkout and login."""
    made = {}
    for slug, name in (("checkout", "Checkout"), ("login", "Login")):
        service = ServiceFactory(slug=slug, name=f"{name} (internal)", public_name=name)
        made[slug] = component_create(service=service, actor=communications_lead)
    return made


def subscribe(
    address: str,
    *,
    components: list | None = None,
    maintenance: bool = True,
    state: str = SubscriberState.ACTIVE,
    webhook: bool = False,
) -> Subscriber:
    subscriber = Subscriber.objects.create(
        kind=SubscriberKind.WEBHOOK if webhook else SubscriberKind.EMAIL,
        email="" if webhook else address,
        url=address if webhook else "",
        state=state,
        all_components=components is None,
        maintenance_notices=maintenance,
    )
    if components:
        subscriber.components.set(components)
    return subscriber


def contact(
    address: str, *, services: list, customer: str = "Acme", opted_in: bool = True
) -> CustomerContact:
    account, _ = Customer.objects.get_or_create(name=customer)
    account.services.add(*services)
    return CustomerContact.objects.create(
        customer=account, email=address, name=address.split("@")[0], incident_email=opted_in
    )


def publish_update(
    capture: Any,
    *,
    incident: Any,
    author: Any,
    approver: Any = None,
    status: str = "investigating",
    title: str = "Payments failing at checkout",
    body: str = "Some customers cannot pay. We are investigating.",
    components: list | None = None,
    update: Any = None,
):
    """Draft (unless ``update`` is given), approve where the policy needs it, and publish an
    update, running what the publication queued after commit (``capture`` is the
    ``django_capture_on_commit_callbacks`` fixture)."""
    if update is None:
        update = status_update_create(
            incident=incident,
            actor=author,
            source=Source.ADMIN,
            public_title=title,
            public_status=status,
            body=body,
            components=components or [],
        )
    if needs_approval(update):
        update = status_update_approve(status_update=update, actor=approver, source=Source.ADMIN)
    with capture(execute=True):
        return status_update_publish(status_update=update, actor=author, source=Source.ADMIN)


def delivered() -> dict[str, Any]:
    """The emails delivered (Django's locmem outbox), by recipient."""
    result: dict[str, Any] = {}
    for message in mail.outbox:
        for address in message.to:
            assert address not in result, f"{address} got two messages"
            result[address] = message
    return result


def parsed(message: Any) -> email.message.EmailMessage:
    """The message as the recipient's mail client reads it (the MIME Django would send)."""
    return email.message_from_bytes(message.message().as_bytes(), policy=policy.default)
