"""The incident page's extension points: panels and inlines other apps register through
``incidents.admin.extensions`` appear on the change page, in order, for those allowed."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import format_html

from incidents.admin.extensions import (
    incident_page_inlines,
    incident_page_panel_register,
    incident_page_panel_unregister,
)

pytestmark = pytest.mark.django_db


def change_url(incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


@pytest.fixture
def panel():
    """Registers panels for one test and takes them off the page afterwards."""
    keys = []

    def register(**kwargs):
        keys.append(kwargs["key"])
        return incident_page_panel_register(**kwargs)

    yield register
    for key in keys:
        incident_page_panel_unregister(key=key)


def test_a_registered_panel_appears_on_the_incident_change_page(
    client, incident_manager, make_incident, panel
):
    incident = make_incident(status="investigating")
    seen = []

    def render(*, request, incident):
        seen.append((request.user, incident.pk))
        return format_html("<p>Paged <strong>{}</strong> for {}</p>", "noc", incident.number)

    panel(key="test-paging", title="Paging summary", render=render)
    client.force_login(incident_manager)

    response = client.get(change_url(incident))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="panel-test-paging"' in html
    assert "Paging summary" in html
    assert f"<p>Paged <strong>noc</strong> for {incident.number}</p>" in html
    assert seen == [(incident_manager, incident.pk)]
    # In the workspace, after the timeline and before the details form.
    assert html.index('id="timeline"') < html.index('id="panel-test-paging"')
    assert html.index('id="panel-test-paging"') < html.index('id="details"')


def test_panels_show_in_registration_order_and_plain_text_is_escaped(
    client, incident_manager, make_incident, panel
):
    incident = make_incident()
    panel(key="test-first", title="First", render=lambda **_: "<b>not markup</b>")
    panel(key="test-second", title="Second", render=lambda **_: "second")
    client.force_login(incident_manager)

    html = client.get(change_url(incident)).content.decode()

    assert html.index('id="panel-test-first"') < html.index('id="panel-test-second"')
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html


def test_a_panel_needing_a_permission_is_hidden_from_those_without_it(
    client, viewer, incident_manager, make_incident, panel
):
    incident = make_incident()
    panel(
        key="test-restricted",
        title="Restricted",
        render=lambda **_: "secret",
        permission="incidents.assign_incident_roles",
    )

    client.force_login(viewer)
    assert 'id="panel-test-restricted"' not in client.get(change_url(incident)).content.decode()
    client.force_login(incident_manager)
    assert 'id="panel-test-restricted"' in client.get(change_url(incident)).content.decode()


def test_a_failing_panel_does_not_take_the_page_down(
    client, incident_manager, make_incident, panel, caplog
):
    incident = make_incident()

    def broken(**_):
        raise RuntimeError("boom")

    panel(key="test-broken", title="Broken", render=broken)
    client.force_login(incident_manager)

    response = client.get(change_url(incident))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="panel-test-broken"' in html
    assert "This panel is unavailable." in html
    assert 'id="timeline"' in html
    assert "test-broken" in caplog.text


def test_registered_inlines_are_on_the_change_page_only(client, incident_manager, make_incident):
    incident = make_incident()
    client.force_login(incident_manager)

    change = client.get(change_url(incident))
    add = client.get(reverse("admin:incidents_incident_add"))

    shown = [type(inline.opts) for inline in change.context["inline_admin_formsets"]]
    assert shown == incident_page_inlines()
    assert list(add.context["inline_admin_formsets"]) == []
