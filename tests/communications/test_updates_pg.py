"""Status updates under concurrency, on PostgreSQL: the same update published twice at the same
moment (a double click, the admin and the API) is published once, with one status interval per
component and one timeline entry; an edit racing the approval never publishes text the liaison
did not approve."""

from __future__ import annotations

import contextlib

import pytest

from communications.models import (
    ComponentStatusInterval,
    StatusUpdate,
    UpdateState,
)
from communications.services.components import component_create
from communications.services.updates import (
    status_update_approve,
    status_update_create,
    status_update_edit,
    status_update_publish,
)
from incidents.errors import VigilError
from incidents.models import Kind, Source
from tests.escalation.test_sweep_pg import in_threads
from tests.factories import IncidentFactory, ServiceFactory, UserFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_one_update_published_twice_at_once_is_published_once():
    lead = UserFactory(username="pg-cl", groups=["Communications Lead"])
    components = [
        component_create(
            service=ServiceFactory(slug=f"svc-{n}", public_name=f"Service {n}"), actor=None
        )
        for n in range(3)
    ]
    incident = IncidentFactory(severity=3)
    update = status_update_create(
        incident=incident,
        actor=lead,
        source=Source.API,
        public_title="Errors",
        public_status="identified",
        body="We found it.",
        components={component: "partial_outage" for component in components},
    )

    def publish():
        return status_update_publish(status_update=update, actor=lead, source=Source.API).state

    assert in_threads(*[publish] * 4) == [UpdateState.PUBLISHED] * 4
    for component in components:
        intervals = ComponentStatusInterval.objects.filter(component=component)
        assert list(intervals.values_list("status", "status_update")) == [
            ("operational", None),
            ("partial_outage", update.pk),
        ]
    assert all(row.old_status == "operational" for row in update.affected.all())
    published = incident.timeline.filter(
        kind=Kind.COMMUNICATION, message__startswith="Status update published"
    )
    assert published.count() == 1


def test_an_edit_racing_the_approval_never_publishes_unapproved_text():
    lead = UserFactory(username="pg-cl", groups=["Communications Lead"])
    liaison = UserFactory(username="pg-bl", groups=["Business Liaison"])
    for round_ in range(6):
        incident = IncidentFactory(severity=1)
        update = status_update_create(
            incident=incident,
            actor=lead,
            source=Source.API,
            public_title="Errors",
            public_status="identified",
            body="Approved text.",
        )

        def approve(update=update):
            status_update_approve(status_update=update, actor=liaison, source=Source.API)

        def edit(update=update, round_=round_):
            status_update_edit(
                status_update=update, actor=lead, source=Source.API, body=f"Edited {round_}."
            )

        in_threads(approve, edit)
        with contextlib.suppress(VigilError):  # refused when the edit came last: a draft
            status_update_publish(status_update=update, actor=lead, source=Source.API)
        update = StatusUpdate.objects.get(pk=update.pk)
        if update.state == UpdateState.PUBLISHED:
            # Published only if the approval came after the edit, and so covers its text.
            approved = update.history.filter(history_change_reason="approved (api)").get()
            assert approved.body == update.body == f"Edited {round_}."
        else:
            assert update.state == UpdateState.DRAFT
            assert update.approved_by is None
