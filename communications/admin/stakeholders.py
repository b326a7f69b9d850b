"""The stakeholder schedule in the admin: the groups of §5.2's table with their members (edited
here, every change kept in their history), the sends (read-only), and on the incident page a
panel with each group's schedule, a form to write a note for a group and a "Send now" button
(through the core's extension point). The panel's forms post to endpoints of the group admin,
which call the services and come back to the incident page with what happened."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ReadOnlyAdminMixin
from incidents.admin.extensions import incident_page_panel_register
from incidents.errors import InvalidInput, VigilError
from incidents.models import Channel, Incident, SeverityLevel, Source

from ..models import (
    SendKind,
    StakeholderGroup,
    StakeholderMember,
    StakeholderSchedule,
    StakeholderSend,
)
from ..services.stakeholders import (
    LATE_AFTER,
    NOTE_MAX,
    NOTE_PERMISSION,
    SEND_PERMISSION,
    stakeholder_note_write,
    stakeholder_schedule_list,
    stakeholder_send_now,
)

VIEW_PERMISSION = "communications.view_stakeholderschedule"


def _severities() -> list[str]:
    return [str(level) for level in SeverityLevel.objects.values_list("level", flat=True)] or [
        "1",
        "2",
        "3",
        "4",
    ]


def intervals_errors(value: Any) -> str | None:
    """Why ``value`` is not a valid ``intervals`` mapping ({"<severity>": minutes}), or None."""
    if not isinstance(value, dict):
        return 'Give minutes per severity level, e.g. {"1": 120}; {} for "as needed".'
    known = _severities()
    for key, minutes in value.items():
        if str(key) not in known:
            return f"Unknown severity {key!r}; the levels are {', '.join(known)}."
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 5 <= minutes <= 1440:
            return f"Sev {key}: give whole minutes between 5 and 1440 (got {minutes!r})."
    return None


class StakeholderGroupForm(forms.ModelForm):
    class Meta:
        model = StakeholderGroup
        fields = ["name", "position", "channel", "extra_channels", "intervals", "content", "active"]

    def clean_intervals(self) -> dict:
        value = self.cleaned_data.get("intervals")
        if value in (None, ""):
            return {}
        error = intervals_errors(value)
        if error:
            raise forms.ValidationError(error)
        return {str(k): v for k, v in value.items()}

    def clean_extra_channels(self) -> list:
        value = self.cleaned_data.get("extra_channels")
        if value in (None, ""):
            return []
        if not isinstance(value, list) or any(c not in Channel.values for c in value):
            raise forms.ValidationError(
                f'Give a list of channels among {", ".join(Channel.values)}, e.g. ["sms"].'
            )
        return value


class StakeholderMemberForm(forms.ModelForm):
    class Meta:
        model = StakeholderMember
        fields = ["contact", "user", "address"]

    def clean(self) -> dict:
        data = super().clean()
        chosen = [name for name in ("contact", "user", "address") if data.get(name)]
        if len(chosen) != 1:
            raise forms.ValidationError(
                "Choose exactly one of a contact, a user or an address (a mailing list, a "
                "Slack channel such as #support)."
            )
        return data


class StakeholderMemberInline(admin.TabularInline):
    model = StakeholderMember
    form = StakeholderMemberForm
    extra = 1
    autocomplete_fields: tuple = ()
    raw_id_fields = ("user",)


@admin.register(StakeholderGroup)
class StakeholderGroupAdmin(NoRevertMixin, SimpleHistoryAdmin):
    form = StakeholderGroupForm
    inlines = [StakeholderMemberInline]
    list_display = ("name", "channels", "frequency", "content", "member_count", "active")
    list_filter = ("active", "channel", "content")
    search_fields = ("name",)
    ordering = ("position", "name")

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("members")

    @admin.display(description="Channels")
    def channels(self, obj: StakeholderGroup) -> str:
        names = [obj.channel, *[c for c in obj.extra_channels or [] if c != obj.channel]]
        return " + ".join(Channel(c).label if c in Channel.values else c for c in names)

    @admin.display(description="Frequency")
    def frequency(self, obj: StakeholderGroup) -> str:
        if obj.as_needed:
            return "As needed"
        return "; ".join(
            f"Sev {sev}: every {minutes} min"
            for sev, minutes in sorted((obj.intervals or {}).items())
            if minutes
        )

    @admin.display(description="Members")
    def member_count(self, obj: StakeholderGroup) -> int:
        return len(obj.members.all())

    # -- the incident panel's endpoints ---------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "incident/<int:incident_id>/note/",
                wrap(self.note_view),
                name="communications_stakeholder_note",
            ),
            path(
                "incident/<int:incident_id>/send/",
                wrap(self.send_view),
                name="communications_stakeholder_send",
            ),
            *super().get_urls(),
        ]

    def _target(self, request: HttpRequest, incident_id: int) -> tuple[Incident, Any]:
        incident = Incident.objects.filter(pk=incident_id).first()
        if incident is None:
            raise Http404
        raw = request.POST.get("group", "")
        group = StakeholderGroup.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
        return incident, group

    def _back(self, incident: Incident) -> HttpResponseRedirect:
        url = reverse("admin:incidents_incident_change", args=[incident.pk])
        return HttpResponseRedirect(f"{url}#panel-stakeholders")

    def note_view(self, request: HttpRequest, incident_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(NOTE_PERMISSION):
            raise PermissionDenied
        incident, group = self._target(request, incident_id)
        if group is None:
            self.message_user(
                request, "Note not saved: choose a stakeholder group.", messages.ERROR
            )
            return self._back(incident)
        try:
            stakeholder_note_write(
                incident=incident,
                group=group,
                body=request.POST.get("body", ""),
                actor=request.user,
                source=Source.ADMIN,
            )
        except VigilError as error:
            self.message_user(request, f"Note not saved: {_refusal(error)}", messages.ERROR)
        else:
            self.message_user(
                request,
                f"Note saved for {group.name}: their next update is composed from it.",
                messages.SUCCESS,
            )
        return self._back(incident)

    def send_view(self, request: HttpRequest, incident_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(SEND_PERMISSION):
            raise PermissionDenied
        incident, group = self._target(request, incident_id)
        if group is None:
            self.message_user(request, "Not sent: choose a stakeholder group.", messages.ERROR)
            return self._back(incident)
        try:
            send = stakeholder_send_now(
                incident=incident, group=group, actor=request.user, source=Source.ADMIN
            )
        except VigilError as error:
            self.message_user(request, f"Not sent: {_refusal(error)}", messages.ERROR)
        else:
            self.message_user(
                request,
                f"Update sent to {group.name} ({send.recipients} recipient(s)).",
                messages.SUCCESS,
            )
        return self._back(incident)


def _refusal(error: VigilError) -> str:
    if isinstance(error, InvalidInput):
        return " ".join(str(message) for message in error.errors.values())
    return error.message


@admin.register(StakeholderSend)
class StakeholderSendAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("incident_link", "group", "kind", "due_at", "sent_at", "late", "recipients")
    list_filter = ("kind", "late", "group")
    search_fields = ("incident__number", "group__name", "subject")
    list_select_related = ("incident", "group")
    date_hierarchy = "due_at"
    fields = (
        "incident",
        "group",
        "kind",
        "due_at",
        "sent_at",
        "late",
        "recipients",
        "sent_by",
        "note",
        "subject",
        "body",
    )

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: StakeholderSend) -> str:
        url = reverse("admin:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.incident.number)


class ScheduleStateFilter(admin.SimpleListFilter):
    title = "schedule"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("running", "Running"), ("ended", "Ended")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "running":
            return queryset.filter(stopped_at__isnull=True, next_due_at__isnull=False)
        if self.value() == "ended":
            return queryset.filter(stopped_at__isnull=False)
        return queryset


@admin.register(StakeholderSchedule)
class StakeholderScheduleAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every incident's schedule per group, the next updates due first: what goes out next."""

    list_display = (
        "incident_link",
        "group",
        "interval_minutes",
        "next_due_at",
        "last_sent_at",
        "late",
        "stopped_at",
    )
    list_filter = (ScheduleStateFilter, "group")
    search_fields = ("incident__number", "group__name")
    list_select_related = ("incident", "group")
    ordering = ("next_due_at", "incident__number", "group__position")
    fields = (
        "incident",
        "group",
        "interval_minutes",
        "started_at",
        "next_due_at",
        "reminder_at",
        "reminded_for",
        "last_sent_at",
        "last_note",
        "stopped_at",
    )

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: StakeholderSchedule) -> str:
        url = reverse("admin:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">{}</a>', url, obj.incident.number)

    @admin.display(description="Late", boolean=True)
    def late(self, obj: StakeholderSchedule) -> bool:
        due = obj.next_due_at
        return bool(due and obj.stopped_at is None and timezone.now() - due > LATE_AFTER)


# --- on the incident page ------------------------------------------------------------------------


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    rows = stakeholder_schedule_list(incident=incident)
    user = request.user
    context = {
        "incident": incident,
        "rows": rows,
        "active": incident.is_active,
        "can_note": incident.is_active and user.has_perm(NOTE_PERMISSION),
        "can_send": incident.is_active and user.has_perm(SEND_PERMISSION),
        "note_url": reverse("admin:communications_stakeholder_note", args=[incident.pk]),
        "send_url": reverse("admin:communications_stakeholder_send", args=[incident.pk]),
        "note_max": NOTE_MAX,
        "kinds": dict(SendKind.choices),
    }
    html = render_to_string(
        "admin/communications/stakeholders/panel.html", context, request=request
    )
    return mark_safe(html)  # rendered by the template engine, which escapes every value


incident_page_panel_register(
    key="stakeholders",
    title="Stakeholder updates",
    render=incident_panel,
    permission=VIEW_PERMISSION,
)
