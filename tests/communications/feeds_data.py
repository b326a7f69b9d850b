"""Public status data for the feeds/API tests: components through the component services,
published updates as the publish service leaves them (state, published_at, old statuses)."""

from __future__ import annotations

from datetime import datetime, timedelta

from communications.markdown import markdown_to_html
from communications.models import (
    ComponentGroup,
    Maintenance,
    StatusUpdate,
    StatusUpdateComponent,
    UpdateState,
)
from communications.services.components import component_create, component_status_set
from tests.factories import IncidentFactory, ServiceFactory, UserFactory


def staff():
    return UserFactory(username="comms-seed", is_superuser=True)


def make_component(*, slug: str, public_name: str, actor, group=None, position=0, at=None):
    service = ServiceFactory(slug=slug, public_name=public_name)
    return component_create(service=service, actor=actor, group=group, position=position, at=at)


def make_group(name: str, position: int = 0) -> ComponentGroup:
    return ComponentGroup.objects.create(name=name, position=position)


def publish(
    *,
    incident,
    title: str,
    status: str,
    body: str,
    at: datetime,
    actor,
    components: dict | None = None,
) -> StatusUpdate:
    """A published update (the state the publish service leaves), with its components' status
    set through the component service."""
    update = StatusUpdate.objects.create(
        incident=incident,
        public_title=title,
        public_status=status,
        body=body,
        body_html=markdown_to_html(body),
        state=UpdateState.PUBLISHED,
        published_at=at,
        published_by=actor,
        created_by=actor,
    )
    for component, new_status in (components or {}).items():
        component.refresh_from_db()
        StatusUpdateComponent.objects.create(
            status_update=update,
            component=component,
            new_status=new_status,
            old_status=component.status,
        )
        component_status_set(
            component=component, status=new_status, actor=actor, status_update=update, at=at
        )
    return update


def make_incident(**kwargs):
    return IncidentFactory(**kwargs)


def make_maintenance(*, title: str, body: str, start: datetime, hours: int = 2, components=()):
    maintenance = Maintenance.objects.create(
        title=title,
        body=body,
        body_html=markdown_to_html(body),
        scheduled_for=start,
        scheduled_until=start + timedelta(hours=hours),
    )
    maintenance.components.set(components)
    return maintenance
