"""SVG badges: /status/badge.svg for the page, /status/components/<code>/badge.svg for each
component; colour by status; public names cannot inject markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.core.cache import cache

from communications.services.components import component_status_set
from tests.communications.feeds_data import make_component, staff

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def badge(client, path):
    cache.clear()
    response = client.get("/status/" + path)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    root = ET.fromstring(response.content)
    assert root.tag == SVG + "svg"
    texts = [t.text for t in root.iter(SVG + "text")]
    fills = [p.get("fill") for p in root.iter(SVG + "path")]
    return root, texts, fills


def test_page_and_component_badges_follow_status(client, db):
    actor = staff()
    checkout = make_component(slug="checkout", public_name="Checkout", actor=actor)
    make_component(slug="api", public_name="Public API", actor=actor)
    _, texts, fills = badge(client, "badge.svg")
    assert "all systems operational" in texts and "#4c1" in fills
    _, texts, fills = badge(client, "components/checkout/badge.svg")
    assert "Checkout" in texts and "operational" in texts and "#4c1" in fills

    component_status_set(component=checkout, status="major_outage", actor=actor)
    _, texts, fills = badge(client, "badge.svg")
    assert "partial system outage" in texts and "#fe7d37" in fills
    _, texts, fills = badge(client, "components/checkout/badge.svg")
    assert "major outage" in texts and "#e05d44" in fills
    _, texts, _ = badge(client, "components/api/badge.svg")
    assert "operational" in texts


def test_unknown_component_badge_is_404(client, db):
    make_component(slug="api", public_name="Public API", actor=staff())
    cache.clear()
    assert client.get("/status/components/nope/badge.svg").status_code == 404


@pytest.mark.parametrize(
    "name", ["<script>alert(1)</script>", "\"&'", "]]><svg onload=alert(1)>", "a\x0bb"]
)
def test_public_name_cannot_inject_markup(client, db, name):
    make_component(slug="evil", public_name=name, actor=staff())
    root, texts, _ = badge(client, "components/evil/badge.svg")
    assert name.replace("\x0b", "") in texts  # shown as text
    tags = {element.tag for element in root.iter()}
    assert SVG + "script" not in tags
    assert not [e for e in root.iter() if any(a.startswith("on") for a in e.attrib)]
