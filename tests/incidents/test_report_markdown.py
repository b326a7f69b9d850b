"""The §6.2 report's Markdown download escapes every value people and senders supply (titles,
names, notes, report fields, service names, reasons): rendered by a real Markdown renderer
(markdown-it-py, CommonMark with GitHub's tables and strikethrough), such a value shows as
the text it is and adds no HTML, heading, link, image, table, list, quote or code block."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse
from markdown_it import MarkdownIt

from incidents.models import Source
from incidents.services import incident_cancel, incident_note_add, incident_update
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

TITLE = "<script>alert(1)</script> *urgent* `x` [click](javascript:alert(1)) ##"
SUMMARY = "\n".join(
    [
        "Line one",
        "## Root cause",
        "forged",
        "",
        "| a | b |",
        "| --- | --- |",
        "| c | d |",
        "",
        "> quoted",
        "1. listed",
        "- bulleted",
        "",
        "    indented code",
        "---",
        "setext",
        "===",
        "<img src=x onerror=alert(1)>",
        "&lt;script&gt; &amp; &#60;b&#62; ![i](https://evil.example/x.png) <https://evil.example>",
        "~~gone~~ $x$ {#id .class} <!-- hidden -->",
    ]
)
ROOT_CAUSE = "[click](javascript:alert(1))"
RESOLUTION = "```\nfenced\n```\n~~~\nfenced too\n~~~"
BUSINESS_IMPACT = "\\*not emphasis\\* _under_ **bold** <b>tag</b>"
LESSONS = "#hashtag ## not a heading ##\n+ plus item\n* star item\n2) paren item\n***\n___"
NOTE = "\n## Root cause\nforged"
TABLE_NOTE = "| a | b |\n|---|---|\n| c | d |"
SECTIONS = [
    "SUMMARY",
    "TIMELINE",
    "ROOT CAUSE",
    "RESOLUTION",
    "BUSINESS IMPACT",
    "LESSONS LEARNED",
    "FOLLOW-UP ACTIONS",
]
BOLD_LABELS = ["Incident ID:", "Date/Time:", "Severity:", "Status:"]


def render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def text_of(rendered: str) -> str:
    """The text a reader sees, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rendered)).split())


def same_text(value: str) -> str:
    return " ".join(value.split())


def tags(rendered: str) -> set[str]:
    return {match.lower() for match in re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered)}


def download(client, incident) -> str:
    url = reverse("admin:incidents_incident_report", args=[incident.pk]) + "?format=md"
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def hostile(make_incident, make_user, technical_lead):
    service = ServiceFactory(slug="pipes", name="| a | b |")
    incident = make_incident(
        title=TITLE,
        summary=SUMMARY,
        root_cause=ROOT_CAUSE,
        resolution=RESOLUTION,
        business_impact=BUSINESS_IMPACT,
        services=[service.slug],
    )
    incident = incident_update(
        incident=incident, actor=None, source=Source.SYSTEM, lessons_learned=LESSONS
    )
    technical_lead.first_name, technical_lead.last_name = "| a | b |", "<b>[x](y)</b>"
    technical_lead.save()
    for body in (NOTE, TABLE_NOTE):
        incident_note_add(incident=incident, actor=technical_lead, source=Source.ADMIN, body=body)
    return incident


def test_values_render_as_their_own_text_and_add_no_structure(client, viewer, hostile):
    client.force_login(viewer)

    rendered = render(download(client, hostile))

    # Only the report's own structure: its title, its sections, its lists, its rule.
    assert tags(rendered) <= {"h1", "h2", "p", "ul", "li", "strong", "hr"}, tags(rendered)
    headings = re.findall(r"<h([1-6])>(.*?)</h\1>", rendered, re.S)
    assert [level for level, _ in headings] == ["1"] + ["2"] * len(SECTIONS)
    assert [html.unescape(text) for _, text in headings[1:]] == SECTIONS
    assert re.findall(r"<strong>(.*?)</strong>", rendered) == BOLD_LABELS
    assert rendered.count("<hr") == 1
    # ... and every value shows as the text that was typed.
    seen = text_of(rendered)
    for value in (TITLE, SUMMARY, ROOT_CAUSE, RESOLUTION, BUSINESS_IMPACT, LESSONS, TABLE_NOTE):
        assert same_text(value) in seen, value
    assert same_text(NOTE) in seen
    assert "| a | b |" in seen and "<b>[x](y)</b>" in seen


def test_the_probe_values_one_by_one(client, viewer, make_incident, technical_lead):
    """A title `<script>alert(1)</script>`, a note "\\n## Root cause\\nforged", a link to
    javascript:, a table in a name: no script, no heading, no link, no table."""
    incident = make_incident(
        title="<script>alert(1)</script>", summary="[click](javascript:alert(1))"
    )
    technical_lead.first_name = "| a | b |"
    technical_lead.save()
    incident_note_add(
        incident=incident, actor=technical_lead, source=Source.ADMIN, body="\n## Root cause\nforged"
    )
    client.force_login(viewer)

    rendered = render(download(client, incident))

    assert "<script" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "<h3" not in rendered and rendered.count("<h2>") == len(SECTIONS)
    assert "<a " not in rendered and "javascript:" in rendered
    assert "<table" not in rendered


def test_a_cancel_reason_is_escaped_too(client, viewer, make_incident):
    incident = make_incident()
    incident_cancel(
        incident=incident,
        actor=None,
        source=Source.SYSTEM,
        reason="false alarm <img src=x onerror=alert(1)> [see](https://evil.example)",
    )
    client.force_login(viewer)

    rendered = render(download(client, incident))

    assert "<img" not in rendered and "<a " not in rendered
    assert "false alarm &lt;img src=x onerror=alert(1)&gt; [see](https://evil.example)" in rendered


def test_plain_text_stays_plain_in_the_file(client, viewer, make_incident):
    """Escaping is only where Markdown would read something: ordinary prose is left as typed."""
    incident = make_incident(
        title="Checkout down for EU-west (release 42)",
        summary="Payments failed: 1,800 orders delayed - 40 minutes. See runbook 7.",
    )
    client.force_login(viewer)

    text = download(client, incident)

    assert text.startswith(
        f"# Incident report {incident.number}: Checkout down for EU-west (release 42)\n"
    )
    assert "Payments failed: 1,800 orders delayed - 40 minutes. See runbook 7." in text
