"""Preferences: "My preferences" for every staff member (linked from the page header), and the
same setting on the user's page for administrators (an inline)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from ..errors import InvalidInput
from ..middleware import remember_time_zone
from ..models import UserPreference
from ..services.preferences import user_preference_set
from ..timeformat import available_zones, when, zone_named


def zone_choices() -> list[tuple[str, str]]:
    return [("", f"Vigil's default ({settings.TIME_ZONE})")] + [
        (name, name.replace("_", " ")) for name in sorted(available_zones())
    ]


class PreferenceForm(forms.Form):
    time_zone = forms.ChoiceField(
        required=False,
        label="Time zone",
        help_text="Every date and time in Vigil is shown to you in this zone, with its "
        "abbreviation: pages, reports and the messages Vigil sends you.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = zone_choices()


class UserPreferenceInlineForm(forms.ModelForm):
    time_zone = forms.ChoiceField(required=False, label="Time zone")

    class Meta:
        model = UserPreference
        fields = ["time_zone"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = zone_choices()


class UserPreferenceInline(admin.StackedInline):
    model = UserPreference
    form = UserPreferenceInlineForm
    can_delete = False
    max_num = 1
    verbose_name = "preferences"
    verbose_name_plural = "preferences"


@admin.register(UserPreference)
class UserPreferenceAdmin(admin.ModelAdmin):
    """Only its "My preferences" page: a person edits their own row; rows of others are edited
    on the user's page. Hidden from the index."""

    def get_model_perms(self, request: HttpRequest) -> dict:
        return {}

    def has_module_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "mine/",
                wrap(self.mine_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_mine",
            )
        ]

    def mine_view(self, request: HttpRequest) -> HttpResponse:
        current = (
            UserPreference.objects.filter(user=request.user)
            .values_list("time_zone", flat=True)
            .first()
        ) or ""
        form = PreferenceForm(request.POST or None, initial={"time_zone": current})
        if request.method == "POST" and form.is_valid():
            try:
                saved = user_preference_set(
                    user=request.user, time_zone=form.cleaned_data["time_zone"]
                )
            except InvalidInput as error:
                form.add_error("time_zone", error.errors["time_zone"])
            else:
                remember_time_zone(request, saved.time_zone)
                zone = zone_named(saved.time_zone)
                messages.success(
                    request,
                    f"Saved. Times are now shown in {saved.time_zone or settings.TIME_ZONE}: "
                    f"it is {when(timezone.now(), zone=zone)}.",
                )
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:incidents_userpreference_mine")
                )
        zone = zone_named(current)
        context = {
            **self.admin_site.each_context(request),
            "title": "My preferences",
            "form": form,
            "zone_name": current or settings.TIME_ZONE,
            "now_text": when(timezone.now(), zone=zone),
        }
        return TemplateResponse(request, "admin/incidents/userpreference/mine.html", context)


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class VigilUserAdmin(UserAdmin):
    """The stock user page, with the person's preferences (their time zone)."""

    inlines = [*UserAdmin.inlines, UserPreferenceInline]
