"""The review page (§8.2): the list of reviews, and each review's page walking the agenda with
its time boxes — the incident overview (summary, impact, the timeline with its key moments and
the incident's KPIs against target), what went well, what went wrong by category, the root
cause (with its category, counted by the monthly report), lessons learned, attendance and the
action items.

Written while booked or held (one form for the sections; "mark held" with the date and
attendance), published read-only. Every timeline entry has an anchor (``#entry-<id>``) and a
Cite button that pastes its link into the section being written. The page's forms call
``reviews.services.reviews``; the admin holds no logic of its own.

This module also hands the incident report its follow-up actions (the incident's action items)
and the published review, through the core's ``incidents.report_extensions``.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin
from incidents.errors import ActionForbidden, TransitionNotAllowed, VigilError
from incidents.models import Source
from incidents.report_extensions import report_follow_ups_register, report_section_register

from ..models import ActionItem, CauseCategory, Review, ReviewStatus
from ..services.review_exports import (
    review_cause_category_text,
    review_markdown,
    review_report_follow_ups,
    review_report_section,
)
from ..services.review_page import (
    citation_markdown,
    review_kpis,
    review_section_html,
    review_timeline,
)
from ..services.reviews import (
    AGENDA,
    CAUSE_CATEGORY_FIELD,
    SECTION_FIELDS,
    review_can_edit,
    review_can_publish,
    review_mark_held,
    review_publish,
    review_sections_update,
)
from .booking_actions import ReviewBookingAdminMixin

report_follow_ups_register(key="reviews.action-items", provide=review_report_follow_ups)
report_section_register(key="review", render=review_report_section)


def _error_text(exc: VigilError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return " ".join(str(message) for message in errors.values())
    return exc.message


class SectionsForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in SECTION_FIELDS:
            self.fields[field] = forms.CharField(
                required=False, strip=False, widget=forms.Textarea(attrs={"rows": 5})
            )
        self.fields[CAUSE_CATEGORY_FIELD] = forms.ChoiceField(
            label="Root cause category",
            required=False,
            choices=[("", "Not categorised"), *CauseCategory.choices],
        )


class HeldForm(forms.Form):
    held_at = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )


ATTENDED = {"yes": True, "no": False, "": None}


class OverdueFilter(admin.SimpleListFilter):
    """Reviews found not held by their due date (flagged by the overdue sweep) and still not
    held, or the others."""

    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Overdue"), ("no", "Not overdue")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        overdue = Q(overdue_at__isnull=False, held_at__isnull=True, status="booked")
        if self.value() == "yes":
            return queryset.filter(overdue)
        if self.value() == "no":
            return queryset.exclude(overdue)
        return queryset


@admin.register(Review)
class ReviewAdmin(ReviewBookingAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    list_display = (
        "incident_link",
        "status",
        "due",
        "starts_at",
        "held_at",
        "facilitator",
    )
    list_filter = ("status", OverdueFilter)
    search_fields = ("incident__number", "incident__title")
    list_select_related = ("incident", "facilitator")
    ordering = ("-due_date", "-id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # booked by Vigil on closure, or on demand (booking)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Due by", ordering="due_date")
    def due(self, review: Review) -> Any:
        if review.overdue_at and review.held_at is None and review.status == "booked":
            return format_html('{} <strong class="vigil-overdue">overdue</strong>', review.due_date)
        return review.due_date

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, review: Review) -> Any:
        return format_html("{} {}", review.incident.number, review.incident.title)

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/sections/",
                self.admin_site.admin_view(require_POST(self.sections_view)),
                name="reviews_review_sections",
            ),
            path(
                "<path:object_id>/held/",
                self.admin_site.admin_view(require_POST(self.held_view)),
                name="reviews_review_held",
            ),
            path(
                "<path:object_id>/publish/",
                self.admin_site.admin_view(require_POST(self.publish_view)),
                name="reviews_review_publish",
            ),
            path(
                "<path:object_id>/markdown/",
                self.admin_site.admin_view(self.markdown_view),
                name="reviews_review_markdown",
            ),
        ]
        return own + super().get_urls()

    # -- the page -----------------------------------------------------------------------------

    def _review(self, request: HttpRequest, object_id: str) -> Review:
        if not re.fullmatch(r"[0-9]{1,18}", object_id or ""):
            raise Http404
        review = (
            Review.objects.select_related("incident__severity", "facilitator", "published_by")
            .filter(pk=int(object_id))
            .first()
        )
        if review is None:
            raise Http404
        if not self.has_view_permission(request, review):
            raise PermissionDenied
        return review

    def _page_url(self, review: Review, anchor: str = "") -> str:
        return reverse("admin:reviews_review_change", args=[review.pk]) + anchor

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:  # fmt: skip
        if request.method != "GET":
            raise PermissionDenied
        review = self._review(request, object_id)
        return self._render(request, review)

    def _render(self, request: HttpRequest, review: Review, *, sections_form=None,
                held_form=None, status: int = 200) -> HttpResponse:  # fmt: skip
        incident = review.incident
        can_edit = review_can_edit(actor=request.user, review=review)
        values = {field: getattr(review, field) for field in SECTION_FIELDS}
        initial = {**values, CAUSE_CATEGORY_FIELD: review.cause_category}
        agenda = []
        for item in AGENDA:
            sections = []
            for section in item.sections:
                text = values[section.field]
                sections.append(
                    {
                        "field": section.field,
                        "label": section.label,
                        "text": text,
                        "html": review_section_html(text) if text else "",
                    }
                )
            agenda.append({"item": item, "sections": sections})
        attendees = list(review.attendees.filter(removed_at__isnull=True).select_related("user"))
        actions = list(ActionItem.objects.filter(incident=incident).select_related("owner"))
        try:
            add_action_url = (
                reverse("admin:reviews_actionitem_add") + f"?incident={incident.pk}"
                if request.user.has_perm("reviews.add_actionitem")
                and review.status != ReviewStatus.PUBLISHED
                else ""
            )
        except NoReverseMatch:
            add_action_url = ""
        action_rows = []
        for item in actions:
            try:
                url = reverse("admin:reviews_actionitem_change", args=[item.pk])
            except NoReverseMatch:
                url = ""
            action_rows.append({"item": item, "url": url})
        timeline = [
            {"moment": m, "cite": citation_markdown(m.entry)}
            for m in review_timeline(incident=incident)
        ]
        held_initial = timezone.localtime(review.held_at or timezone.now()).strftime(
            "%Y-%m-%dT%H:%M"
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Post-incident review of {incident.number}",
            "subtitle": incident.title,
            "original": review,
            "review": review,
            "incident": incident,
            "agenda": agenda,
            "total_minutes": sum(item.minutes for item in AGENDA),
            "kpis": review_kpis(incident=incident),
            "timeline": timeline,
            "attendees": attendees,
            "actions": action_rows,
            "add_action_url": add_action_url,
            "can_edit": can_edit,
            "can_publish": review_can_publish(actor=request.user, review=review),
            "sections_form": sections_form or SectionsForm(initial=initial),
            "cause_category_text": review_cause_category_text(review),
            "held_form": held_form or HeldForm(initial={"held_at": held_initial}),
            "incident_url": reverse("admin:incidents_incident_change", args=[incident.pk]),
            "report_url": reverse("admin:incidents_incident_report", args=[incident.pk]),
            "markdown_url": reverse("admin:reviews_review_markdown", args=[review.pk]),
            "sections_url": reverse("admin:reviews_review_sections", args=[review.pk]),
            "held_url": reverse("admin:reviews_review_held", args=[review.pk]),
            "publish_url": reverse("admin:reviews_review_publish", args=[review.pk]),
            "history_url": reverse("admin:reviews_review_history", args=[review.pk]),
            **self.booking_context(request, review),
        }
        return TemplateResponse(
            request, "admin/reviews/review/review_page.html", context, status=status
        )

    # -- the forms ------------------------------------------------------------------------------

    def sections_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        form = SectionsForm(request.POST)
        form.is_valid()
        changes = {
            field: form.cleaned_data.get(field, "")
            for field in SECTION_FIELDS
            if field in request.POST
        }
        if CAUSE_CATEGORY_FIELD in request.POST:
            # The raw value, so that one outside the choices is refused by the service (400)
            # rather than silently dropped by the form.
            changes[CAUSE_CATEGORY_FIELD] = request.POST[CAUSE_CATEGORY_FIELD]
        try:
            review_sections_update(
                review=review, actor=request.user, source=Source.ADMIN, **changes
            )
        except VigilError as exc:
            messages.error(request, _error_text(exc))
            status = 400
            if isinstance(exc, TransitionNotAllowed):
                status = 409
            elif isinstance(exc, ActionForbidden):
                status = 403
            return self._render(request, review, sections_form=form, status=status)
        messages.success(request, "Review saved.")
        return HttpResponseRedirect(self._page_url(review, "#agenda"))

    def held_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        form = HeldForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Give the date and time the review was held.")
            return self._render(request, review, held_form=form, status=400)
        attendance = {}
        for attendee in review.attendees.filter(removed_at__isnull=True):
            key = f"attended_{attendee.pk}"
            if key in request.POST and request.POST[key] in ATTENDED:
                attendance[attendee.pk] = ATTENDED[request.POST[key]]
        try:
            review_mark_held(
                review=review,
                actor=request.user,
                source=Source.ADMIN,
                held_at=form.cleaned_data["held_at"],
                attendance=attendance,
            )
        except VigilError as exc:
            messages.error(request, _error_text(exc))
            return HttpResponseRedirect(self._page_url(review, "#attendance"))
        messages.success(request, "The review is marked held.")
        return HttpResponseRedirect(self._page_url(review, "#attendance"))

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        try:
            review_publish(review=review, actor=request.user, source=Source.ADMIN)
        except VigilError as exc:
            messages.error(request, "Not published: " + _error_text(exc))
            return HttpResponseRedirect(self._page_url(review, "#publish"))
        messages.success(request, "The review is published: read-only, and in the report.")
        return HttpResponseRedirect(self._page_url(review))

    def markdown_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        response = HttpResponse(
            review_markdown(review=review), content_type="text/markdown; charset=utf-8"
        )
        response["Content-Disposition"] = content_disposition_header(
            True, f"{review.incident.number}-review.md"
        )
        return response

    def get_queryset(self, request: HttpRequest) -> QuerySet[Review]:
        return super().get_queryset(request).select_related("incident", "facilitator")
