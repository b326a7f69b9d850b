"""The incident history feeds /status/history.atom and /status/history.rss: valid for a feed
parser, one entry per incident with its updates, stable ids, injection neutralised."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, timedelta
from html.parser import HTMLParser

import feedparser
import pytest
from django.core.cache import cache
from django.utils import timezone

from tests.communications.feeds_data import make_component, make_incident, publish, staff

FEEDS = ["history.atom", "history.rss"]
ATOM = "{http://www.w3.org/2005/Atom}"
NASTY = "<script>alert(1)</script> ]]> & <b>bold</b> \x0b\"q\" 'a'"


def live_tags(html: str) -> list[tuple[str, list]]:
    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def fetch(client, name):
    cache.clear()
    response = client.get("/status/" + name)
    assert response.status_code == 200
    return response


@pytest.fixture
def history(db):
    actor = staff()
    now = timezone.now().replace(microsecond=0)
    web = make_component(
        slug="web", public_name="Website", actor=actor, at=now - timedelta(days=10)
    )
    first = make_incident(title="internal: disk full on web-3")
    publish(
        incident=first,
        title="Website slow",
        status="investigating",
        body="Pages load *slowly*.",
        at=now - timedelta(days=2),
        actor=actor,
        components={web: "degraded_performance"},
    )
    publish(
        incident=first,
        title="Website slow",
        status="resolved",
        body="Back to normal. [Details](https://example.com/pm)",
        at=now - timedelta(days=2) + timedelta(hours=1),
        actor=actor,
        components={web: "operational"},
    )
    second = make_incident(title="internal: second")
    publish(
        incident=second,
        title="Logins failing",
        status="identified",
        body="We found the cause.",
        at=now - timedelta(hours=1),
        actor=actor,
    )
    return {"first": first, "second": second, "now": now, "actor": actor}


@pytest.mark.parametrize("name", FEEDS)
def test_feed_parses_cleanly_with_one_entry_per_incident(client, history, name):
    response = fetch(client, name)
    expected_type = "application/atom+xml" if name.endswith("atom") else "application/rss+xml"
    assert response["Content-Type"].startswith(expected_type)
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == ("atom10" if name.endswith("atom") else "rss20")
    titles = [entry.title for entry in parsed.entries]
    assert titles == ["Logins failing", "Website slow"]
    newest, oldest = parsed.entries
    assert newest.link.endswith(f"/status/incidents/{history['second'].number}.html")
    assert oldest.id.startswith("tag:")
    assert oldest.id.endswith(f":incident/{history['first'].number}")
    # The whole story, newest first, with the sanitized Markdown.
    summary = oldest.summary
    assert summary.index("Resolved") < summary.index("Investigating")
    assert "<em>slowly</em>" in summary
    assert 'href="https://example.com/pm"' in summary
    for secret in ("internal", "disk full"):
        assert secret not in response.content.decode()


def test_entry_ids_are_stable_and_updated_moves(client, history):
    before = feedparser.parse(fetch(client, "history.atom").content).entries[0]
    publish(
        incident=history["second"],
        title="Logins restored",
        status="resolved",
        body="Fixed.",
        at=history["now"],
        actor=history["actor"],
    )
    after = feedparser.parse(fetch(client, "history.atom").content).entries[0]
    assert after.id == before.id
    assert after.title == "Logins restored"
    assert after.updated_parsed > before.updated_parsed
    assert after.published_parsed == before.published_parsed


@pytest.mark.parametrize("name", FEEDS)
def test_markup_in_titles_and_bodies_is_neutralised(client, db, name):
    actor = staff()
    publish(
        incident=make_incident(),
        title=NASTY,
        status="investigating",
        body=NASTY + "\n\n<img src=x onerror=alert(2)> [x](javascript:alert(3))",
        at=timezone.now(),
        actor=actor,
    )
    raw = fetch(client, name).content
    root = ET.fromstring(raw)  # well-formed XML despite ]]>, & and a control character
    if name.endswith("atom"):
        entry = root.find(ATOM + "entry")
        title = entry.find(ATOM + "title").text
        html = entry.find(ATOM + "summary").text
    else:
        item = root.find("channel/item")
        title = item.find("title").text
        html = item.find("description").text
    assert title == NASTY.replace("\x0b", "")  # the exact text, as text
    # The content is HTML once its XML escaping is undone: the author's markup is only text.
    tags = live_tags(html)
    assert {tag for tag, _ in tags} <= {"p", "small", "br", "strong", "a"}
    assert all(not name.startswith("on") for _, attrs in tags for name, _ in attrs)
    assert "javascript:" not in str(tags)
    assert "&lt;script&gt;" in html and "&lt;img" in html
    assert feedparser.parse(raw).bozo == 0


@pytest.mark.parametrize("name", FEEDS)
def test_scheduled_maintenance_is_announced_in_the_feeds(client, history, name):
    from communications.models import MaintenanceStatus
    from tests.communications.feeds_data import make_maintenance

    start = history["now"] + timedelta(days=2)
    planned = make_maintenance(title="Database upgrade", body="Expect *short* pauses.", start=start)
    cancelled = make_maintenance(title="Cancelled work", body="Not happening.", start=start)
    cancelled.status = MaintenanceStatus.CANCELLED
    cancelled.save()
    parsed = feedparser.parse(fetch(client, name).content)
    assert parsed.bozo == 0
    titles = [entry.title for entry in parsed.entries]
    assert "Cancelled work" not in titles
    [entry] = [e for e in parsed.entries if e.title == "Database upgrade"]
    assert entry.link.endswith(f"/status/maintenance/{planned.pk}.html")
    assert entry.id.endswith(f":maintenance/{planned.pk}")
    assert "<em>short</em>" in entry.summary
    assert "Scheduled" in entry.summary
    assert f"{start.astimezone(UTC):%H:%M}" in entry.summary  # the window, in the page's zone
