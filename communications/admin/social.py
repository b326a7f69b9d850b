"""Social media posts in the admin: the list of posts (what waits for approval or sending
first), the post's page where a draft's text is edited through the edit service, buttons (and
list actions) that approve, send and discard through the workflow services, and a compact panel
on the incident page with the incident's posts and the same buttons. Posts are drafted by
Vigil when a widespread outage's update is published: there is no "add" and no "delete"."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin

from escalation.outbox import notification_get
from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.admin.extensions import incident_page_panel_register
from incidents.errors import VigilError
from incidents.models import Incident, Source

from ..models import SocialPost, SocialPostState
from ..services.social import (
    APPROVE_PERMISSION,
    EDIT_PERMISSION,
    POST_MAX,
    SEND_PERMISSION,
    social_post_approve,
    social_post_discard,
    social_post_edit,
    social_post_idempotency_key,
    social_post_list,
    social_post_send,
)

VIEW_PERMISSION = "communications.view_socialpost"
STATE_CSS = {
    SocialPostState.DRAFT: "vigil-clock-warning",
    SocialPostState.APPROVED: "vigil-clock-none",
    SocialPostState.SENT: "vigil-clock-met",
    SocialPostState.DISCARDED: "vigil-muted",
}
# step: (service, past tense, permission, the states it is offered in)
STEPS: dict[str, tuple[Any, str, str, tuple[str, ...]]] = {
    "approve": (social_post_approve, "approved", APPROVE_PERMISSION, (SocialPostState.DRAFT,)),
    "send": (social_post_send, "sent", SEND_PERMISSION, (SocialPostState.APPROVED,)),
    "discard": (
        social_post_discard,
        "discarded",
        EDIT_PERMISSION,
        (SocialPostState.DRAFT, SocialPostState.APPROVED),
    ),
}
LABELS = {"approve": "Approve", "send": "Send to Mastodon", "discard": "Discard"}


def state_badge(post: SocialPost) -> str:
    return format_html(
        '<strong class="{}">{}</strong>', STATE_CSS.get(post.state, ""), post.get_state_display()
    )


def steps_for(user: Any, post: SocialPost) -> list[str]:
    """The workflow buttons ``user`` gets for ``post`` (the services decide in the end)."""
    return [
        step
        for step, (_, _, permission, states) in STEPS.items()
        if post.state in states and user.has_perm(permission)
    ]


def step_url(post: SocialPost, step: str, *, site: str = "admin") -> str:
    return reverse(f"{site}:communications_socialpost_{step}", args=[post.pk])


class SocialPostForm(forms.ModelForm):
    class Meta:
        model = SocialPost
        fields = ["body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 8, "cols": 70, "maxlength": POST_MAX})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "body" in self.fields:
            self.fields["body"].strip = False
            self.fields["body"].help_text = (
                f"Plain text, at most {POST_MAX} characters, posted exactly as written (Mastodon "
                "makes links of addresses, @mentions and #hashtags). Editing an approved post "
                "sends it back to draft."
            )


@admin.register(SocialPost)
class SocialPostAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(instance="post", update=social_post_edit)
    form = SocialPostForm
    change_form_template = "admin/communications/socialpost/change_form.html"
    list_display = (
        "incident_link",
        "excerpt",
        "state_label",
        "status_update",
        "approved_by",
        "sent_at",
        "delivery",
        "created_at",
    )
    list_filter = ("state",)
    search_fields = ("incident__number", "body")
    list_select_related = ("incident", "status_update", "approved_by")
    actions = ["approve_selected", "send_selected", "discard_selected"]
    readonly_fields = (
        "incident_link",
        "status_update",
        "state_label",
        "created_by",
        "created_at",
        "approved_by",
        "approved_at",
        "sent_at",
        "delivery",
    )
    fieldsets = (
        (None, {"fields": ("incident_link", "status_update", "body")}),
        (
            "Workflow",
            {
                "fields": (
                    "state_label",
                    "created_by",
                    "created_at",
                    "approved_by",
                    "approved_at",
                    "sent_at",
                    "delivery",
                )
            },
        ),
    )

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # What needs someone first: drafts, then approved posts, then the rest, newest first.
        waiting = Case(
            When(state=SocialPostState.DRAFT, then=Value(0)),
            When(state=SocialPostState.APPROVED, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
        return [waiting.asc(), "-created_at", "-id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Vigil drafts posts from published updates

    def has_delete_permission(self, request: HttpRequest, obj: SocialPost | None = None) -> bool:
        return False  # a post is discarded, never deleted: the timeline refers to it

    def has_change_permission(self, request: HttpRequest, obj: SocialPost | None = None) -> bool:
        if obj is not None and obj.state not in (SocialPostState.DRAFT, SocialPostState.APPROVED):
            return False
        return super().has_change_permission(request, obj)

    # -- columns ------------------------------------------------------------------------------

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: SocialPost) -> str:
        url = reverse("admin:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.incident.number)

    @admin.display(description="Text")
    def excerpt(self, obj: SocialPost) -> str:
        text = " ".join(obj.body.split())
        return text if len(text) <= 90 else text[:89] + "…"

    @admin.display(description="State", ordering="state")
    def state_label(self, obj: SocialPost) -> str:
        return state_badge(obj)

    @admin.display(description="Delivery")
    def delivery(self, obj: SocialPost) -> str:
        if obj.sent_at is None:
            return "–"
        row = notification_get(idempotency_key=social_post_idempotency_key(obj))
        if row is None:
            return "–"
        text = row.get_status_display()
        if row.last_error and row.status != "sent":
            text += f" ({row.last_error[:120]})"
        return text

    # -- the page -----------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:
            context["social_post_steps"] = {
                "state": state_badge(obj),
                "length": len(obj.body),
                "max": POST_MAX,
                "buttons": [
                    {
                        "name": step,
                        "label": LABELS[step],
                        "url": step_url(obj, step, site=self.admin_site.name),
                    }
                    for step in steps_for(request.user, obj)
                ],
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            *[
                path(
                    f"<path:object_id>/{step}/",
                    wrap(self.step_view),
                    {"step": step},
                    name=f"communications_socialpost_{step}",
                )
                for step in STEPS
            ],
            *super().get_urls(),
        ]

    def step_view(self, request: HttpRequest, object_id: str, step: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        service, done, _, _ = STEPS[step]
        try:
            service(post=obj, actor=request.user, source=Source.ADMIN)
        except VigilError as error:
            self.message_user(request, f"Not {done}: {error.message}", messages.ERROR)
        else:
            self.message_user(
                request, f"Social post of {obj.incident.number} {done}.", messages.SUCCESS
            )
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = reverse(
                f"{self.admin_site.name}:communications_socialpost_change", args=[obj.pk]
            )
        return HttpResponseRedirect(back)

    # -- actions on the list ------------------------------------------------------------------

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(EDIT_PERMISSION)

    @admin.action(description="Approve selected drafts", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[SocialPost]) -> None:
        self._bulk(request, queryset, "approve")

    @admin.action(description="Send selected approved posts", permissions=["send"])
    def send_selected(self, request: HttpRequest, queryset: QuerySet[SocialPost]) -> None:
        self._bulk(request, queryset, "send")

    @admin.action(description="Discard selected posts", permissions=["discard"])
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[SocialPost]) -> None:
        self._bulk(request, queryset, "discard")

    def _bulk(self, request: HttpRequest, queryset: QuerySet[SocialPost], step: str) -> None:
        # Each post is its own step: one refused post does not undo the others.
        service, done, _, _ = STEPS[step]
        succeeded, failures = 0, []
        for obj in queryset.select_related("incident").order_by("pk"):
            try:
                service(post=obj, actor=request.user, source=Source.ADMIN)
            except VigilError as error:
                failures.append(f"{obj.incident.number} post #{obj.pk}: {error.message}")
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, f"{succeeded} post(s) {done}.", messages.SUCCESS)
        for failure in failures:
            self.message_user(request, f"Not {done}: {failure}", messages.ERROR)


# --- on the incident page ------------------------------------------------------------------------


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    posts = [post for post in social_post_list(incident=incident) if post.state != "discarded"]
    back = reverse("admin:incidents_incident_change", args=[incident.pk])
    rows = [
        {
            "post": post,
            "state": state_badge(post),
            "url": reverse("admin:communications_socialpost_change", args=[post.pk]),
            "buttons": [
                {"name": step, "label": LABELS[step], "url": step_url(post, step)}
                for step in steps_for(request.user, post)
            ],
        }
        for post in posts
    ]
    html = render_to_string(
        "admin/communications/socialpost/panel.html",
        {"rows": rows, "next": back, "incident": incident},
        request=request,
    )
    return mark_safe(html)  # rendered by the template engine, which escapes every value


incident_page_panel_register(
    key="social-posts",
    title="Social media posts",
    render=incident_panel,
    permission=VIEW_PERMISSION,
)
