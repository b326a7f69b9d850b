"""Booking a review from the admin (§8.1): the incident page's "Post-incident review" panel (the
review's status, due date, slot and facilitator with a link to its page, or a "Book a review"
button), and the review page's booking forms — reschedule, cancel, change the facilitator,
invite and uninvite one person. Every form posts to a view that calls
``reviews.services.booking`` (or ``reviews.services.attendees``); a refusal is shown as an admin
message and changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from incidents.admin.extensions import incident_page_panel_register
from incidents.errors import VigilError
from incidents.models import Incident, Source, Status
from incidents.timeformat import time_text, when

from ..models import Review, ReviewAttendee, ReviewStatus
from ..services.attendees import (
    review_attendee_add,
    review_attendee_remove,
    review_facilitator_set,
)
from ..services.booking import BOOK_PERMISSION, review_book, review_cancel, review_reschedule
from ..services.business_days import policy_zone, review_policy_get

PERM_VIEW = "reviews.view_review"
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]


def _error_text(exc: VigilError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return " ".join(str(message) for message in errors.values())
    return exc.message


def _invitable_users() -> Any:
    return get_user_model().objects.filter(is_active=True).exclude(email="").order_by("username")


class RescheduleForm(forms.Form):
    starts_at = forms.DateTimeField(
        label="Starts at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=DATETIME_FORMATS,
    )
    location = forms.CharField(label="Location", required=False, max_length=300)


class CancelForm(forms.Form):
    reason = forms.CharField(label="Reason", widget=forms.Textarea(attrs={"rows": 2}))


class PersonForm(forms.Form):
    """A user, or someone external by name and email address (the service checks that exactly
    one of them is given)."""

    user = forms.ModelChoiceField(queryset=None, required=False, empty_label="— external —")
    name = forms.CharField(required=False, max_length=200)
    email = forms.EmailField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = _invitable_users()


def _form_error(form: forms.Form) -> str:
    return " ".join(
        f"{form.fields[name].label or name if name in form.fields else ''}: {' '.join(errs)}"
        for name, errs in form.errors.items()
    )


def _slot_text(review: Review) -> str:
    if review.starts_at is None:
        return "to be agreed"
    zone = policy_zone(review_policy_get())
    text = when(review.starts_at, zone=zone)
    if review.ends_at:
        text += f" – {time_text(review.ends_at, zone=zone)}"
    return f"{text} ({zone.key})" + (f", {review.location}" if review.location else "")


def _facilitator_text(review: Review) -> str:
    if review.facilitator is not None:
        return review.facilitator.get_full_name() or review.facilitator.get_username()
    if review.facilitator_email:
        name = review.facilitator_name
        return f"{name} <{review.facilitator_email}>" if name else review.facilitator_email
    return "none"


# --- the incident page's panel -------------------------------------------------------------------


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    review = Review.objects.select_related("facilitator").filter(incident=incident).first()
    parts = []
    if review is not None:
        parts.append(
            format_html(
                '<dl class="vigil-review-summary">'
                "<dt>Status</dt><dd data-review-status>{}</dd>"
                "<dt>Due</dt><dd>{}</dd><dt>Slot</dt><dd>{}</dd>"
                "<dt>Facilitator</dt><dd>{}</dd></dl>"
                '<p><a href="{}">Open the review page</a></p>',
                review.get_status_display(),
                f"{review.due_date:%a %d %b %Y}",
                _slot_text(review),
                _facilitator_text(review),
                reverse("admin:reviews_review_change", args=[review.pk]),
            )
        )
    can_book = (review is None or review.status == ReviewStatus.CANCELLED) and (
        incident.status != Status.CANCELLED
    )
    if can_book and request.user.has_perm(BOOK_PERMISSION):
        parts.append(
            format_html(
                '<form method="post" action="{}">'
                '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
                '<button type="submit" class="button">{}</button></form>',
                reverse("admin:reviews_review_book", args=[incident.pk]),
                get_token(request),
                "Book a review" if review is None else "Book the review again",
            )
        )
    elif review is None:
        parts.append(format_html('<p class="vigil-muted">{}</p>', "No review booked."))
    return format_html("{}" * len(parts), *parts)


incident_page_panel_register(
    key="review", title="Post-incident review", render=incident_panel, permission=PERM_VIEW
)


# --- the review page's booking forms (mixed into ReviewAdmin) -----------------------------------


class ReviewBookingAdminMixin:
    """The booking views of the review page. Relies on ``ReviewAdmin._review`` (the review, or
    404/403) and ``ReviewAdmin._page_url``."""

    def get_urls(self):
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(require_POST(function))

        own = [
            path("book/<int:incident_id>/", view(self.book_view), name="reviews_review_book"),
            path(
                "<path:object_id>/reschedule/",
                view(self.reschedule_view),
                name="reviews_review_reschedule",
            ),
            path("<path:object_id>/cancel/", view(self.cancel_view), name="reviews_review_cancel"),
            path(
                "<path:object_id>/facilitator/",
                view(self.facilitator_view),
                name="reviews_review_facilitator",
            ),
            path(
                "<path:object_id>/attendees/add/",
                view(self.attendee_add_view),
                name="reviews_review_attendee_add",
            ),
            path(
                "<path:object_id>/attendees/remove/",
                view(self.attendee_remove_view),
                name="reviews_review_attendee_remove",
            ),
        ]
        return own + super().get_urls()

    def booking_context(self, request: HttpRequest, review: Review) -> dict[str, Any]:
        can_book = review.status == ReviewStatus.BOOKED and request.user.has_perm(BOOK_PERMISSION)
        starts = ""
        if review.starts_at is not None:
            zone = policy_zone(review_policy_get())
            starts = review.starts_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
        return {
            "booking": {
                "can_book": can_book,
                "zone": policy_zone(review_policy_get()).key,
                "slot": _slot_text(review),
                "facilitator": _facilitator_text(review),
                "reschedule_form": RescheduleForm(
                    initial={"starts_at": starts, "location": review.location}
                ),
                "cancel_form": CancelForm(),
                "facilitator_form": PersonForm(prefix="facilitator"),
                "attendee_form": PersonForm(prefix="attendee"),
                "reschedule_url": reverse("admin:reviews_review_reschedule", args=[review.pk]),
                "cancel_url": reverse("admin:reviews_review_cancel", args=[review.pk]),
                "facilitator_url": reverse("admin:reviews_review_facilitator", args=[review.pk]),
                "attendee_add_url": reverse("admin:reviews_review_attendee_add", args=[review.pk]),
                "attendee_remove_url": reverse(
                    "admin:reviews_review_attendee_remove", args=[review.pk]
                ),
            }
        }

    def _booking_done(self, request: HttpRequest, review: Review, call: Any, done: str):
        try:
            call()
        except VigilError as exc:
            messages.error(request, _error_text(exc))
        else:
            messages.success(request, done)
        return HttpResponseRedirect(self._page_url(review, "#booking"))

    def book_view(self, request: HttpRequest, incident_id: int) -> HttpResponse:
        incident = Incident.objects.filter(pk=incident_id).first()
        if incident is None:
            raise Http404
        if not request.user.has_perm("incidents.view_incident"):
            raise PermissionDenied
        back = reverse("admin:incidents_incident_change", args=[incident.pk])
        try:
            review = review_book(incident=incident, actor=request.user, source=Source.ADMIN)
        except VigilError as exc:
            messages.error(request, "No review booked: " + _error_text(exc))
            return HttpResponseRedirect(back + "#panel-review")
        messages.success(
            request, f"Review booked, due {review.due_date:%a %d %b %Y}; invitations sent."
        )
        return HttpResponseRedirect(back + "#panel-review")

    def reschedule_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        form = RescheduleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Not rescheduled: " + _form_error(form))
            return HttpResponseRedirect(self._page_url(review, "#booking"))
        naive: datetime = form.cleaned_data["starts_at"].replace(tzinfo=None)
        starts_at = naive.replace(tzinfo=policy_zone(review_policy_get()))
        return self._booking_done(
            request,
            review,
            lambda: review_reschedule(
                review=review,
                actor=request.user,
                source=Source.ADMIN,
                starts_at=starts_at,
                location=form.cleaned_data["location"],
            ),
            "Review rescheduled; everyone gets the updated invitation.",
        )

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        return self._booking_done(
            request,
            review,
            lambda: review_cancel(
                review=review,
                actor=request.user,
                source=Source.ADMIN,
                reason=request.POST.get("reason", ""),
            ),
            "Review cancelled; everyone gets the cancellation.",
        )

    def _person(self, request: HttpRequest, review: Review, prefix: str) -> dict[str, Any] | None:
        form = PersonForm(request.POST, prefix=prefix)
        if not form.is_valid():
            messages.error(request, _form_error(form))
            return None
        data = form.cleaned_data
        return {"user": data["user"], "name": data["name"], "email": data["email"] or ""}

    def facilitator_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        person = self._person(request, review, "facilitator")
        if person is None:
            return HttpResponseRedirect(self._page_url(review, "#booking"))
        return self._booking_done(
            request,
            review,
            lambda: review_facilitator_set(
                review=review, actor=request.user, source=Source.ADMIN, **person
            ),
            "Facilitator changed.",
        )

    def attendee_add_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        person = self._person(request, review, "attendee")
        if person is None:
            return HttpResponseRedirect(self._page_url(review, "#booking"))
        return self._booking_done(
            request,
            review,
            lambda: review_attendee_add(
                review=review, actor=request.user, source=Source.ADMIN, **person
            ),
            "Invited.",
        )

    def attendee_remove_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        review = self._review(request, object_id)
        raw = request.POST.get("attendee", "")
        attendee = (
            ReviewAttendee.objects.filter(pk=int(raw), review=review).first()
            if raw.isdigit() and len(raw) < 19
            else None
        )
        if attendee is None:
            messages.error(request, "Not an attendee of this review.")
            return HttpResponseRedirect(self._page_url(review, "#booking"))
        return self._booking_done(
            request,
            review,
            lambda: review_attendee_remove(
                review=review, actor=request.user, source=Source.ADMIN, attendee=attendee
            ),
            "Uninvited.",
        )
