"""Admin forms. They check and shape what staff type; the services do every write."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS

from ..errors import VigilError
from ..models import (
    CLOSE_REQUIRED_FIELDS,
    ORDERED_TIMESTAMPS,
    Channel,
    Incident,
    Kind,
    Level,
    ResponseRole,
    SeverityLevel,
    missing_fields,
    timestamp_order_errors,
)
from ..models.policy import validate_channels
from ..services.incidents import EDITABLE_FIELDS, NOTE_MAX_LENGTH

# The timestamps staff may type; the later ones are set by the lifecycle services.
EDITABLE_TIMES = ("impact_started_at", "detected_at")


# Service argument names whose form field is called differently.
FIELD_ALIASES = {"severity_reason": "severity_change_reason"}


def attach_errors(form: forms.Form, error: VigilError) -> None:
    """Show a service's refusal on the fields it names, or above the form."""
    errors = getattr(error, "errors", None)
    if not isinstance(errors, dict):
        form.add_error(None, error.message)
        return
    for field, message in errors.items():
        alias = FIELD_ALIASES.get(field)
        if alias in form.fields:
            field = alias
        target = field if field in form.fields else None
        if target is None and field != NON_FIELD_ERRORS and field != "non_field_errors":
            message = f"{field.replace('_', ' ').capitalize()}: {message}"
        form.add_error(target, message)


class IncidentForm(forms.ModelForm):
    """The incident's details. The admin hands the cleaned values to ``incident_update`` and
    ``incident_change_severity``; it never saves the instance itself."""

    severity_change_reason = forms.CharField(
        required=False,
        max_length=500,
        label="Reason for a severity change",
        help_text="Recorded on the timeline when you change the severity. Required when "
        "lowering it (the incident policy says when).",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    priority_reason = forms.CharField(
        required=False,
        max_length=2000,
        label="Reason for this priority",
        help_text="Needed only when the priority does not go with the severity (say Sev 1 at "
        "P3); recorded on the timeline.",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    correction_reason = forms.CharField(
        required=False,
        max_length=2000,
        label="Reason for the correction",
        help_text="Required to correct the report of a closed or cancelled incident; "
        "recorded on the timeline with the correction.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    # A refusal from the services on the previous attempt to save this submission; the admin
    # sets it on a subclass to show the submission again with the refusal on its fields.
    rejection: VigilError | None = None

    class Meta:
        model = Incident
        fields = [*EDITABLE_FIELDS, "severity"]
        error_messages = {
            "severity": {
                "invalid_choice": "Unknown severity %(value)s; choose one of the listed levels."
            },
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self._check_timestamp_order(cleaned)
        if self.rejection is not None:
            attach_errors(self, self.rejection)
        return cleaned

    def _check_timestamp_order(self, cleaned: dict[str, Any]) -> None:
        """Times out of order, reported on the field staff changed.

        The model's own check names whichever stage is out of order, often a read-only one
        (say "acknowledged" when detection moved after it); a form cannot show an error on a
        field it does not have, so the message goes to the changed time instead. Fields that
        get an error drop out of ``cleaned_data``, so the model check then sees the stored,
        consistent times.
        """
        editable = [name for name in EDITABLE_TIMES if name in self.fields]
        if not editable:
            return
        values = {name: getattr(self.instance, name) for name in ORDERED_TIMESTAMPS}
        for name in editable:
            if name in cleaned:
                values[name] = cleaned[name]
        errors = timestamp_order_errors(values)
        if not errors:
            return
        changed = [name for name in editable if name in self.changed_data] or editable
        for field, message in errors.items():
            self.add_error(field if field in changed else changed[-1], message)


ROLE_FIELD_PREFIX = "role_"


class RoleUserField(forms.ModelChoiceField):
    """A response role's holder. The choices list the members of the role's group first,
    then everyone else who may hold a role, in two option groups (a plain select: no script
    needed); read-only Viewers are not offered, and one posted anyway is refused by name."""

    def __init__(self, *, role: ResponseRole, **kwargs: Any) -> None:
        self.role = role
        super().__init__(
            queryset=get_user_model().objects.filter(is_active=True),
            required=False,
            label=role.name,
            error_messages={"invalid_choice": "Unknown or inactive user."},
            **kwargs,
        )

    def group_choices(self, users: list[Any], holders: set[int], *, everyone: bool = True) -> None:
        """Set the grouped choices from ``users`` (active, groups prefetched); ``holders``
        are the ids of those who may hold a response role. Without ``everyone``, only the
        group's members are offered (all holders when the group has none); ``hidden`` counts
        the others left out."""
        from . import display as ui

        group = self.role.group
        members = [
            (u.pk, ui.person(u))
            for u in users
            if group is not None and any(g.pk == group.pk for g in u.groups.all())
        ]
        member_ids = {pk for pk, _ in members}
        others = [(u.pk, ui.person(u)) for u in users if u.pk in holders - member_ids]
        self.hidden = 0 if everyone or not members else len(others)
        if self.hidden:
            others = []
        choices: list[Any] = [("", self.empty_label)]
        if members:
            choices.append((f"In the {group.name} group", members))
        if others:
            choices.append(("Everyone else" if members else "Everyone", others))
        self.choices = choices


def role_holder_ids() -> set[int]:
    """Ids of the active users who may hold a response role (``can_hold_response_role``):
    superusers, whoever holds the permission through a group or directly, and users in no
    group."""
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    from ..services.policy import ROLE_HOLDER_PERMISSION

    app_label, codename = ROLE_HOLDER_PERMISSION.split(".")
    perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    return set(
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(groups__permissions__in=perm)
            | Q(user_permissions__in=perm)
            | Q(groups__isnull=True)
        )
        .values_list("pk", flat=True)
    )


class IncidentAddForm(IncidentForm):
    """Logging a new incident. "Customer-facing" may be left to the affected services;
    impact and urgency to the severity; the incident manager to whoever logs it (when the
    incident policy says so). Subclassed with one ``role_<key>`` field per response role by
    :meth:`with_roles`."""

    show_everyone = True  # with_roles sets it from the page's "Show everyone" link

    customer_facing = forms.TypedChoiceField(
        label="Customer-facing",
        choices=[("", "Decide from the affected services"), ("yes", "Yes"), ("no", "No")],
        coerce=lambda value: value == "yes",
        empty_value=None,
        required=False,
    )
    impact = forms.TypedChoiceField(
        choices=[("", "From the severity"), *Level.choices],
        required=False,
        empty_value=None,
        help_text="Leave “From the severity” to use the severity's usual impact.",
    )
    urgency = forms.TypedChoiceField(
        choices=[("", "From the severity"), *Level.choices],
        required=False,
        empty_value=None,
        help_text="Leave “From the severity” to use the severity's usual urgency.",
    )

    @classmethod
    def with_roles(cls, *, declarer_manages: bool, everyone: bool = False) -> type[IncidentAddForm]:
        """This form with a picker per response role (in role order): the members of the
        role's group, and everyone else who may hold a role only with ``everyone`` (or when
        the group has no members). Any of them is accepted when posted."""
        fields: dict[str, Any] = {}
        for role in ResponseRole.objects.select_related("group"):
            empty = "— nobody —"
            if role.key == ResponseRole.INCIDENT_MANAGER and declarer_manages:
                empty = "— me (whoever logs the incident) —"
            fields[ROLE_FIELD_PREFIX + role.key] = RoleUserField(role=role, empty_label=empty)
        return type("IncidentAddForm", (cls,), {**fields, "show_everyone": everyone})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role_fields = [f for f in self.fields.values() if isinstance(f, RoleUserField)]
        if not role_fields:
            return
        from django.contrib.auth.models import Group
        from django.db.models import Prefetch

        user_model = get_user_model()
        users = list(
            user_model.objects.filter(is_active=True)
            .order_by("first_name", "last_name", user_model.USERNAME_FIELD)
            .prefetch_related(Prefetch("groups", queryset=Group.objects.only("pk")))
        )
        holders = role_holder_ids()
        for field in role_fields:
            field.group_choices(users, holders, everyone=self.show_everyone)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # Not a model value yet: "unknown" is for incident_create to decide from the services.
        self.customer_facing_choice = cleaned.pop("customer_facing", None)
        from ..services.policy import can_hold_response_role, response_role_refusal

        self.roles: dict[str, Any] = {}
        for name, field in self.fields.items():
            if not isinstance(field, RoleUserField):
                continue
            user = cleaned.pop(name, None)
            if user is None:
                continue
            if not can_hold_response_role(user):
                self.add_error(name, response_role_refusal(user, field.role.name))
                continue
            self.roles[field.role.key] = user
        return cleaned


class ChannelListField(forms.CharField):
    """Notification channels in the order they are used, typed as "phone, slack, email"."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text",
            "In order, separated by commas. Known channels: "
            + ", ".join(f"{value} ({label})" for value, label in Channel.choices)
            + ".",
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [item.strip().lower() for item in text.split(",") if item.strip()]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        validate_channels(value)


class SeverityLevelForm(forms.ModelForm):
    notification_channels = ChannelListField(label="Notification channels")

    class Meta:
        model = SeverityLevel
        fields = [
            "level",
            "name",
            "definition",
            "business_impact",
            "examples",
            "response_target",
            "resolution_target",
            "notification_channels",
            "default_impact",
            "default_urgency",
        ]
        help_texts = {
            "response_target": "Time from detection to acknowledgement, e.g. 00:15:00 or 1:00:00.",
            "resolution_target": (
                "Time from detection to resolution, e.g. 4:00:00, or 3 00:00:00 for 72 hours."
            ),
        }


# --- the incident page's own small forms --------------------------------------------------------


class ResolveForm(forms.Form):
    resolution = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text="Steps taken to resolve the incident (§6.2 RESOLUTION).",
    )

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["resolution"].initial = incident.resolution

    def service_params(self) -> dict[str, Any]:
        return {"resolution": self.cleaned_data["resolution"]}


class CancelForm(forms.Form):
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Why this is not an incident, e.g. a false alarm.",
    )
    duplicate_of = forms.CharField(
        required=False,
        max_length=24,
        label="Duplicate of",
        help_text="Or the ID of the incident this one duplicates, e.g. INC-2025-0101-001.",
    )

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def clean_duplicate_of(self) -> str:
        return self.cleaned_data["duplicate_of"].strip().upper()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not (cleaned.get("reason") or "").strip() and not cleaned.get("duplicate_of"):
            raise forms.ValidationError(
                "Give a reason, or the ID of the incident this one duplicates."
            )
        return cleaned

    def service_params(self) -> dict[str, Any]:
        return {
            "reason": self.cleaned_data["reason"],
            "duplicate_of": self.cleaned_data["duplicate_of"] or None,
        }


class ReopenForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Why the fix did not hold; recorded on the timeline.",
    )

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def service_params(self) -> dict[str, Any]:
        return {"reason": self.cleaned_data["reason"]}


class CloseForm(forms.Form):
    """Closing in one step: the §6.2 report fields closing needs, pre-filled with what the
    incident already holds, saved together with the close (``incident_close_with_report``).
    A field left out of the submission keeps its value; the close guard names what is still
    missing."""

    REPORT_FIELDS = (*CLOSE_REQUIRED_FIELDS, "lessons_learned")

    def __init__(self, *args: Any, incident: Incident, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.missing = set(missing_fields(incident, CLOSE_REQUIRED_FIELDS))
        # The missing ones first: they are what stands between the incident and closing.
        for name in sorted(self.REPORT_FIELDS, key=lambda n: n not in self.missing):
            model_field = Incident._meta.get_field(name)
            self.fields[name] = forms.CharField(
                label=str(model_field.verbose_name).capitalize(),
                required=False,
                initial=getattr(incident, name),
                help_text=(
                    "Missing: required to close."
                    if name in self.missing
                    else ("Optional." if name not in CLOSE_REQUIRED_FIELDS else "")
                ),
                widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
            )

    def service_params(self) -> dict[str, Any]:
        report = {
            name: (self.cleaned_data.get(name) or "").strip()
            for name in self.REPORT_FIELDS
            if name in self.data
        }
        return {"report": report}


# Actions that need input open a small form in place (and have a page of their own, for links
# and refusals); the others are one click.
TRANSITION_FORMS: dict[str, type[forms.Form]] = {
    "resolve": ResolveForm,
    "cancel": CancelForm,
    "reopen": ReopenForm,
    "close": CloseForm,
}


class NoteForm(forms.Form):
    body = forms.CharField(
        label="Note",
        max_length=NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    kind = forms.ChoiceField(
        choices=[(Kind.NOTE, "Note"), (Kind.DECISION, "Decision")], initial=Kind.NOTE
    )


class RoleAssignForm(forms.Form):
    role = forms.ModelChoiceField(queryset=ResponseRole.objects.all(), to_field_name="key")
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True),
        required=False,
        error_messages={"invalid_choice": "Unknown or inactive user."},
    )
