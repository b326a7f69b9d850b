"""The communications foundation: components' status history as intervals, safe Markdown, and
the seeded policy and role permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.db import IntegrityError, transaction

from communications.markdown import markdown_to_html, markdown_to_text
from communications.models import (
    CommunicationPolicy,
    ComponentStatusInterval,
    StatusPageSettings,
)
from communications.services.components import component_create, component_status_set
from incidents.errors import ActionForbidden, InvalidInput
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def component(communications_lead, service):
    return component_create(service=service, actor=communications_lead, at=T0)


def test_the_policy_and_page_settings_are_seeded():
    policy = CommunicationPolicy.objects.get()
    assert policy.approval_severities == [1, 2]
    assert (policy.first_update_minutes, policy.reminder_minutes) == (30, [15, 25])
    assert StatusPageSettings.objects.count() == 1


@pytest.mark.parametrize(
    ("group", "allowed", "refused"),
    [
        (
            "Communications Lead",
            ["publish_statusupdate", "add_maintenance"],
            ["approve_statusupdate"],
        ),
        (
            "Business Liaison",
            ["approve_statusupdate"],
            ["publish_statusupdate", "add_statusupdate"],
        ),
        (
            "Viewer",
            ["view_statusupdate", "view_component"],
            ["add_statusupdate", "change_component"],
        ),
    ],
)
def test_role_permissions(make_user, group, allowed, refused):
    user = make_user(group)
    assert all(user.has_perm(f"communications.{name}") for name in allowed)
    assert not any(user.has_perm(f"communications.{name}") for name in refused)


def test_every_status_change_is_an_interval_naming_who_and_why(component, communications_lead):
    component_status_set(
        component=component,
        status="major_outage",
        actor=communications_lead,
        reason="payments failing",
        at=T0 + timedelta(hours=1),
    )
    component, previous = component_status_set(
        component=component, status="operational", actor=None, at=T0 + timedelta(hours=3)
    )
    assert previous == "major_outage"
    assert component.status == "operational"
    rows = list(
        ComponentStatusInterval.objects.filter(component=component).values_list(
            "status", "started_at", "ended_at", "reason"
        )
    )
    assert rows == [
        ("operational", T0, T0 + timedelta(hours=1), "created"),
        ("major_outage", T0 + timedelta(hours=1), T0 + timedelta(hours=3), "payments failing"),
        ("operational", T0 + timedelta(hours=3), None, ""),
    ]


def test_the_same_status_again_changes_nothing(component):
    component_status_set(component=component, status="operational", actor=None)
    assert ComponentStatusInterval.objects.filter(component=component).count() == 1


def test_history_is_never_rewritten(component):
    with pytest.raises(InvalidInput):
        component_status_set(
            component=component, status="major_outage", actor=None, at=T0 - timedelta(minutes=1)
        )
    with pytest.raises(InvalidInput):
        component_status_set(component=component, status="on_fire", actor=None)
    assert ComponentStatusInterval.objects.filter(component=component).count() == 1


def test_one_open_interval_per_component(component):
    with pytest.raises(IntegrityError), transaction.atomic():
        ComponentStatusInterval.objects.create(
            component=component, status="major_outage", started_at=T0 + timedelta(hours=1)
        )


def test_a_component_needs_a_public_name_and_the_permission(communications_lead, viewer):
    hidden = ServiceFactory(slug="internal-batch", public_name="")
    with pytest.raises(InvalidInput, match="public name"):
        component_create(service=hidden, actor=communications_lead)
    with pytest.raises(ActionForbidden):
        component_create(service=ServiceFactory(slug="api"), actor=viewer)


@pytest.mark.parametrize(
    "vector",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        "<iframe src=https://evil.example></iframe>",
        "![x](https://evil.example/pixel.png)",
        '<div style="background:url(javascript:alert(1))">x</div>',
    ],
)
def test_public_markdown_never_carries_markup_of_its_own(vector):
    html = markdown_to_html(f"Payments are failing.\n\n{vector}")
    tags = _tags(html)
    assert {name for name, _ in tags} <= {"p", "a", "strong", "em"}, html
    for _, attrs in tags:
        assert set(attrs) <= {"href", "rel"}, html
        assert not attrs.get("href", "https:").lower().startswith(("javascript", "data")), html
    assert "Payments are failing." in html


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    parser = _TagCollector()
    parser.feed(html)
    return parser.tags


def test_public_markdown_keeps_what_a_post_needs():
    html = markdown_to_html(
        "# Update\n\n**Checkout** is *slow*.\n\n- one\n- two\n\n[status](https://status.example.com)"
    )
    assert "<h3>Update</h3>" in html
    assert "<strong>Checkout</strong>" in html and "<em>slow</em>" in html
    assert "<li>one</li>" in html
    assert (
        'href="https://status.example.com"' in html and 'rel="nofollow noopener noreferrer"' in html
    )
    assert markdown_to_text("**A** & <b>B</b>") == "A & <b>B</b>"
