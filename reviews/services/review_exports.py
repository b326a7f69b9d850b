"""A post-incident review exported: as a Markdown document, and as what the incident's report
shows of it (its section, once published, and the action items as follow-up actions).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from incidents.models import Incident
from incidents.report_extensions import FollowUpAction, ReportSection

from ..models import ActionItem, Review, ReviewAttendee, ReviewStatus
from .review_page import review_kpis, review_section_html
from .reviews import AGENDA

__all__ = [
    "review_cause_category_text",
    "review_markdown",
    "review_report_follow_ups",
    "review_report_section",
]

NOT_CATEGORISED = "not categorised"


def review_page_url(review: Review) -> str:
    return reverse("admin:reviews_review_change", args=[review.pk])


_ANCHOR_HREF = re.compile(r'href="#(entry-[0-9]+)"')


def _absolute_citations(html: str, review: Review) -> str:
    """Citations (``#entry-12``) point at the review page's timeline from anywhere else."""
    page = review_page_url(review)
    return _ANCHOR_HREF.sub(lambda m: f'href="{page}#{m.group(1)}"', html)


def review_cause_category_text(review: Review) -> str:
    """ "Root cause category: <label>", as the page, the export and the report show it."""
    label = review.get_cause_category_display() if review.cause_category else NOT_CATEGORISED
    return f"Root cause category: {label}"


def review_sections(review: Review) -> list[dict[str, Any]]:
    """The written sections, in agenda order, with their rendered HTML; the primary cause's
    ``note`` names its category."""
    shown = []
    for item in AGENDA:
        for section in item.sections:
            text = getattr(review, section.field)
            if section.field == "no_actions_reason" and not text:
                continue
            shown.append(
                {
                    "agenda": item.title,
                    "field": section.field,
                    "label": section.label,
                    "text": text,
                    "html": review_section_html(text) if text else "",
                    "note": review_cause_category_text(review)
                    if section.field == "primary_cause"
                    else "",
                }
            )
    return shown


def _attendees(review: Review) -> list[ReviewAttendee]:
    return list(review.attendees.filter(removed_at__isnull=True).select_related("user"))


def _actions(incident_id: int) -> list[ActionItem]:
    return list(
        ActionItem.objects.filter(incident_id=incident_id)
        .select_related("owner")
        .order_by("due_date", "id")
    )


def review_markdown(*, review: Review) -> str:
    """The review as a Markdown document (§8.2's order; what people typed escaped, as the
    incident report does)."""
    incident = review.incident
    text = render_to_string(
        "reviews/review.md",
        {
            "review": review,
            "incident": incident,
            "agenda": AGENDA,
            "sections": review_sections(review),
            "kpis": review_kpis(incident=incident),
            "attendees": _attendees(review),
            "actions": _actions(incident.pk),
            "generated_at": timezone.now(),
        },
    )
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _person(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


def review_report_follow_ups(*, incident: Incident) -> Iterable[FollowUpAction]:
    """The incident's action items as the report's follow-up actions."""
    return [
        FollowUpAction(
            title=item.title,
            owner=_person(item.owner),
            due=item.due_date,
            status=item.get_status_display()
            + (f" ({item.wont_do_reason})" if item.wont_do_reason else ""),
            url=item.tracker_url,
        )
        for item in _actions(incident.pk)
    ]


def review_report_section(*, incident: Incident) -> ReportSection | None:
    """The published review of the incident as a section of its report (None before)."""
    review = (
        Review.objects.filter(incident_id=incident.pk, status=ReviewStatus.PUBLISHED)
        .select_related("incident", "published_by", "facilitator")
        .first()
    )
    if review is None:
        return None
    context = {
        "review": review,
        "incident": incident,
        "sections": review_sections(review),
        "attendees": _attendees(review),
        "page_url": review_page_url(review),
    }
    html = _absolute_citations(render_to_string("reviews/report_section.html", context), review)
    markdown = render_to_string("reviews/report_section.md", context)
    return ReportSection(
        title="POST-INCIDENT REVIEW",
        html=html,
        markdown=re.sub(r"\n{3,}", "\n\n", markdown).strip(),
        key="review",
    )
