"""The incident history as feeds: ``history.atom`` (Atom 1.0) and ``history.rss`` (RSS 2.0),
written by Django's :mod:`~django.utils.feedgenerator` (which XML-escapes every text).

As on a Statuspage, there is one entry per incident and per scheduled maintenance (not
cancelled), the 50 most recent, titled with its public title and linking to its page; the
entry's content is every published update (a maintenance: its window, its notice and its
steps), newest first, with its time, status and sanitized body, so a reader shows the whole
story and marks the entry updated when a new update is published. Entry ids are ``tag:`` URIs
built from the page's host, the first publication date and the incident number (maintenance
id), so they never change.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.feedgenerator import Atom1Feed, Rss201rev2Feed, SyndicationFeed
from django.utils.html import escape

from .site import Artifact, RenderContext, renderer
from .snapshot import INCIDENT_LIMIT, public_snapshot

STATUS_LABELS = {
    "investigating": "Investigating",
    "identified": "Identified",
    "monitoring": "Monitoring",
    "resolved": "Resolved",
    "postmortem": "Postmortem",
    "scheduled": "Scheduled",
    "in_progress": "In progress",
    "verifying": "Verifying",
    "completed": "Completed",
}
# Characters XML 1.0 does not allow at all (a feed holding one is not XML).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(value: str) -> str:
    """``value`` without the characters XML cannot carry (escaping is the writer's job)."""
    return _NOT_XML.sub("", value or "")


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _when(value: str, zone: ZoneInfo) -> str:
    at = _parse(value).astimezone(zone)
    return f"{at:%b} {at.day}, {at:%H:%M} {at.tzname()}"


def _content(item: dict, body_html: dict[str, str], zone: ZoneInfo) -> str:
    """The item's updates, newest first: time, status and the sanitized body (a maintenance's
    notice is its own body; its later steps have Statuspage's standard texts)."""
    parts = []
    if "scheduled_for" in item:
        window = f"{_when(item['scheduled_for'], zone)} to {_when(item['scheduled_until'], zone)}"
        parts.append(f"<p><strong>Scheduled maintenance</strong>: {escape(window)}</p>")
    for update in item["incident_updates"]:
        label = STATUS_LABELS.get(update["status"], update["status"])
        html = body_html.get(update["id"], "")
        if "scheduled_for" in item and update["status"] == "scheduled":
            html = body_html.get(f"maintenance-{item['id']}", "")
        parts.append(
            f"<p><small>{escape(_when(update['display_at'], zone))}</small><br>"
            f"<strong>{escape(label)}</strong></p>"
            + xml_text(html or f"<p>{escape(update['body'])}</p>")
        )
    return "\n".join(parts)


def _feed(feed_class: type[SyndicationFeed], context: RenderContext, name: str) -> Artifact:
    snapshot = public_snapshot(context)
    page = snapshot["page"]
    zone = _zone(page["time_zone"])
    host = urlsplit(page["url"]).hostname or "localhost"
    feed = feed_class(
        title=xml_text(f"{page['name']} - Incident History"),
        link=page["url"] + "/",
        description=xml_text(f"Incident history of {page['name']}"),
        feed_url=f"{page['url']}/{name}",
        feed_guid=f"tag:{host},2026:status-history",
        author_name=xml_text(page["name"]),
        language="en",
    )
    items = [("incident", item) for item in snapshot["incidents"]]
    items += [("maintenance", item) for item in snapshot["scheduled_maintenances"]]
    items.sort(key=lambda entry: (entry[1]["created_at"], entry[1]["id"]), reverse=True)
    for kind, item in items[:INCIDENT_LIMIT]:
        created = _parse(item["created_at"])
        feed.add_item(
            title=xml_text(item["name"]),
            link=item["shortlink"],
            description=_content(item, snapshot["body_html"], zone),
            unique_id=f"tag:{host},{created:%Y-%m-%d}:{kind}/{item['id']}",
            unique_id_is_permalink=False,
            pubdate=created,
            updateddate=_parse(item["updated_at"]),
        )
    return Artifact(body=feed.writeString("utf-8").encode(), content_type=feed.content_type)


@renderer
def render_feeds(context: RenderContext) -> dict[str, Artifact]:
    return {
        "history.atom": _feed(Atom1Feed, context, "history.atom"),
        "history.rss": _feed(Rss201rev2Feed, context, "history.rss"),
    }
