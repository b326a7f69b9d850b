"""The incident history as feeds: ``history.atom`` (Atom 1.0) and ``history.rss`` (RSS 2.0),
written by Django's :mod:`~django.utils.feedgenerator` (which XML-escapes every text).

As on a Statuspage, there is one entry per incident (its 50 most recent), titled with its public
title and linking to its page; the entry's content is every published update, newest first, with
its time, public status and sanitized body, so a reader shows the incident's whole story and
marks the entry updated when a new update is published. Entry ids are ``tag:`` URIs built from
the page's host, the incident's first publication date and its number, so they never change.
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


def _content(incident: dict, body_html: dict[str, str], zone: ZoneInfo) -> str:
    parts = []
    for update in incident["incident_updates"]:
        at = _parse(update["display_at"]).astimezone(zone)
        when = f"{at:%b} {at.day}, {at:%H:%M} {at.tzname()}"
        label = STATUS_LABELS.get(update["status"], update["status"])
        parts.append(
            f"<p><small>{escape(when)}</small><br><strong>{escape(label)}</strong></p>"
            + xml_text(body_html.get(update["id"], "") or f"<p>{escape(update['body'])}</p>")
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
    for incident in snapshot["incidents"][:INCIDENT_LIMIT]:
        created = _parse(incident["created_at"])
        feed.add_item(
            title=xml_text(incident["name"]),
            link=incident["shortlink"],
            description=_content(incident, snapshot["body_html"], zone),
            unique_id=f"tag:{host},{created:%Y-%m-%d}:incident/{incident['id']}",
            unique_id_is_permalink=False,
            pubdate=created,
            updateddate=_parse(incident["updated_at"]),
        )
    return Artifact(body=feed.writeString("utf-8").encode(), content_type=feed.content_type)


@renderer
def render_feeds(context: RenderContext) -> dict[str, Artifact]:
    return {
        "history.atom": _feed(Atom1Feed, context, "history.atom"),
        "history.rss": _feed(Rss201rev2Feed, context, "history.rss"),
    }
