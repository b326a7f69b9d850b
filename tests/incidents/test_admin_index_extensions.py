"""The admin index's extension point: panels other apps register through
``incidents.admin.extensions.admin_index_panel_register`` appear on the index for those allowed,
in order; one with nothing to show is left out, and one that fails does not take the page down."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import format_html

from incidents.admin.extensions import admin_index_panel_register, admin_index_panel_unregister

pytestmark = pytest.mark.django_db


@pytest.fixture
def panel():
    keys = []

    def register(**kwargs):
        keys.append(kwargs["key"])
        return admin_index_panel_register(**kwargs)

    yield register
    for key in keys:
        admin_index_panel_unregister(key=key)


def index(client) -> str:
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    return response.content.decode()


def test_registered_panels_appear_in_order_and_plain_text_is_escaped(client, viewer, panel):
    seen = []

    def render(*, request):
        seen.append(request.user)
        return format_html("<p>Due: <strong>{}</strong></p>", "INC-1")

    panel(key="test-due", title="Due now", render=render)
    panel(key="test-plain", title="Plain", render=lambda **_: "<b>not markup</b>")
    client.force_login(viewer)

    html = index(client)

    assert 'id="index-panel-test-due"' in html and "Due now" in html
    assert "<p>Due: <strong>INC-1</strong></p>" in html
    assert html.index('id="index-panel-test-due"') < html.index('id="index-panel-test-plain"')
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html
    assert seen == [viewer]


def test_a_panel_with_nothing_to_show_or_without_permission_is_left_out(client, viewer, panel):
    panel(key="test-empty", title="Empty", render=lambda **_: None)
    panel(
        key="test-secret",
        title="Secret",
        render=lambda **_: "secret",
        permission="incidents.change_incident",
    )
    client.force_login(viewer)

    html = index(client)

    assert 'id="index-panel-test-empty"' not in html
    assert 'id="index-panel-test-secret"' not in html


def test_a_failing_panel_is_shown_as_unavailable(client, viewer, panel, caplog):
    def broken(**_):
        raise RuntimeError("boom")

    panel(key="test-broken", title="Broken", render=broken)
    client.force_login(viewer)

    html = index(client)

    assert 'id="index-panel-test-broken"' in html
    assert "This panel is unavailable." in html
    assert "Admin index panel 'test-broken' failed" in caplog.text
