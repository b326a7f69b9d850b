"""Input and output serializers of incidents, their actions, timeline, roles and history.

Output serializers declare every field (that is what the OpenAPI schema is generated from) and
build the representation by hand: a page of 50 incidents through DRF's per-field machinery
costs several times more than the query that loads it. ``tests/incidents/test_api_incidents``
checks that the built keys are exactly the declared ones.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import (
    DetectionSource,
    Incident,
    Kind,
    Level,
    ReportStatus,
    ResponseRole,
    Status,
    TimelineEntry,
)
from ..selectors import ACTIONS, actions_available
from ..services.lifecycle import action_permission
from .common import INT_MAX, TEXT_MAX, TextField, UserRefSerializer, iso, user_ref

NUMBER_PATTERN = r"^INC-\d{4}-\d{4}-\d{3,}$"

# Fields of the incident that no write through PATCH may name; the hint says where they change.
READ_ONLY_HINTS = {
    "id": "The ID is assigned by Vigil.",
    "status": "Status changes only through the action endpoints: "
    "POST /api/v1/incidents/{id}/{action}/.",
    "report_status": "Derived from the status.",
    "priority": "Computed from impact × urgency by the priority matrix.",
    "sla": "Computed from the detection time and the severity's targets.",
    "roles": "Assign roles with PUT /api/v1/incidents/{id}/roles/.",
    "actions": "Read-only.",
    "url": "Read-only.",
    "cancel_reason": "Set by the cancel action.",
    "duplicate_of": "Set by the cancel action.",
    "acknowledged_at": "Set by the acknowledge action.",
    "mitigated_at": "Set by the monitor action.",
    "resolved_at": "Set by the resolve action.",
    "closed_at": "Set by the close action.",
    "cancelled_at": "Set by the cancel action.",
    "created_at": "Read-only.",
    "updated_at": "Read-only.",
}


# --- output --------------------------------------------------------------------------------------


class SlaSerializer(serializers.Serializer):
    response_due = serializers.DateTimeField(help_text="Acknowledgement due (detection + target).")
    resolution_due = serializers.DateTimeField(help_text="Resolution due (detection + target).")
    response_breached = serializers.BooleanField()
    resolution_breached = serializers.BooleanField()


def _text(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(**kwargs)


def _when(help_text: str = "") -> serializers.DateTimeField:
    return serializers.DateTimeField(allow_null=True, help_text=help_text)


# Where a list view stores a page's service slugs and role holders, read as plain values
# (incidents.api.rows.attach_related); single incidents use the selector's prefetches.
SERVICES = "api_service_slugs"
ASSIGNMENTS = "api_role_holders"


def _services(incident: Incident) -> list[str]:
    if SERVICES in incident.__dict__:
        return incident.__dict__[SERVICES]
    return [service.slug for service in incident.services.all()]


def _roles(incident: Incident) -> dict[str, Any]:
    if ASSIGNMENTS in incident.__dict__:
        return incident.__dict__[ASSIGNMENTS]
    return {
        assignment.role.key: user_ref(assignment.user)
        for assignment in incident.role_assignments.all()
    }


class IncidentSerializer(serializers.Serializer):
    id = _text(help_text="Public ID, INC-YYYY-MMDD-NNN.")
    title = _text()
    summary = _text()
    severity = serializers.IntegerField(min_value=1, max_value=4)
    impact = serializers.ChoiceField(choices=Level.choices)
    urgency = serializers.ChoiceField(choices=Level.choices)
    priority = serializers.IntegerField(
        min_value=1, max_value=4, help_text="From the priority matrix (urgency × impact)."
    )
    status = serializers.ChoiceField(choices=Status.choices)
    report_status = serializers.ChoiceField(choices=ReportStatus.choices)
    detection_source = serializers.ChoiceField(choices=DetectionSource.choices)
    services = serializers.ListField(child=serializers.SlugField(), help_text="Service slugs.")
    customer_facing = serializers.BooleanField()
    affected_users = serializers.IntegerField(allow_null=True, min_value=0)
    business_impact = _text()
    root_cause = _text()
    resolution = _text()
    lessons_learned = _text()
    cancel_reason = _text()
    duplicate_of = _text(allow_null=True, help_text="ID of the incident this one duplicates.")
    impact_started_at = _when()
    detected_at = serializers.DateTimeField()
    acknowledged_at = _when()
    mitigated_at = _when()
    resolved_at = _when()
    closed_at = _when()
    cancelled_at = _when()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    sla = SlaSerializer()
    roles = serializers.DictField(
        child=UserRefSerializer(), help_text="Assigned response roles: role key → user."
    )
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=ACTIONS),
        help_text="Actions possible now from this status for the requesting user.",
    )
    url = serializers.URLField(help_text="The incident's page in the admin.")

    def status_actions(self, status: str) -> list[str]:
        """Actions possible from ``status`` for the requesting user. Availability depends only
        on the status and the user's permissions: computed once per status per request."""
        cache = self.__dict__.setdefault("_actions_cache", {})
        if status not in cache:
            request = self.context.get("request")
            user = request.user if request is not None else None
            # Answers read with the view permission (CanViewModel), when it read them all.
            known = getattr(request, "permissions", {})
            if user is not None and all(action_permission(a) in known for a in ACTIONS):
                possible = actions_available(Incident(status=status))
                cache[status] = [a for a in possible if known[action_permission(a)]]
            else:
                cache[status] = actions_available(Incident(status=status), user)
        return cache[status]

    def url_template(self) -> str:
        """The admin URL of an incident with ``__pk__`` for its pk: one reverse() per
        serializer, not per row."""
        template = self.__dict__.get("_url_template")
        if template is None:
            path = reverse("admin:incidents_incident_change", args=["__pk__"])
            template = self.__dict__["_url_template"] = settings.VIGIL_BASE_URL + path
        return template

    def _actions(self, incident: Incident) -> list[str]:
        return self.status_actions(incident.status)

    def _url(self, incident: Incident) -> str:
        return self.url_template().replace("__pk__", str(incident.pk))

    def to_representation(self, incident: Incident) -> dict[str, Any]:
        now = self.context.get("now") or timezone.now()
        tz = self.__dict__.get("_tz") or self.__dict__.setdefault(
            "_tz", timezone.get_current_timezone()
        )
        if "duplicate_of_number" in incident.__dict__:
            duplicate = incident.duplicate_of_number
        else:
            duplicate = incident.duplicate_of.number if incident.duplicate_of_id else None
        return {
            "id": incident.number,
            "title": incident.title,
            "summary": incident.summary,
            "severity": incident.severity_id,
            "impact": incident.impact,
            "urgency": incident.urgency,
            "priority": incident.priority,
            "status": incident.status,
            "report_status": incident.report_status,
            "detection_source": incident.detection_source,
            "services": _services(incident),
            "customer_facing": incident.customer_facing,
            "affected_users": incident.affected_users,
            "business_impact": incident.business_impact,
            "root_cause": incident.root_cause,
            "resolution": incident.resolution,
            "lessons_learned": incident.lessons_learned,
            "cancel_reason": incident.cancel_reason,
            "duplicate_of": duplicate,
            "impact_started_at": iso(incident.impact_started_at, tz),
            "detected_at": iso(incident.detected_at, tz),
            "acknowledged_at": iso(incident.acknowledged_at, tz),
            "mitigated_at": iso(incident.mitigated_at, tz),
            "resolved_at": iso(incident.resolved_at, tz),
            "closed_at": iso(incident.closed_at, tz),
            "cancelled_at": iso(incident.cancelled_at, tz),
            "created_at": iso(incident.created_at, tz),
            "updated_at": iso(incident.updated_at, tz),
            "sla": {
                "response_due": iso(incident.response_due_at, tz),
                "resolution_due": iso(incident.resolution_due_at, tz),
                "response_breached": incident.response_breached_at(now),
                "resolution_breached": incident.resolution_breached_at(now),
            },
            "roles": _roles(incident),
            "actions": self._actions(incident),
            "url": self._url(incident),
        }


class TimelineEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=Kind.choices)
    source = serializers.CharField(help_text="admin, api, webhook, email or system.")
    actor = UserRefSerializer(allow_null=True)
    actor_label = serializers.CharField(help_text="Who, for display (Vigil for the system).")
    message = serializers.CharField()
    data = serializers.DictField(help_text="Structured details of the event.")

    def to_representation(self, entry: TimelineEntry) -> dict[str, Any]:
        return {
            "id": entry.pk,
            "occurred_at": iso(entry.occurred_at),
            "kind": entry.kind,
            "source": entry.source,
            "actor": user_ref(entry.actor),
            "actor_label": entry.actor_label,
            "message": entry.message,
            "data": entry.data if isinstance(entry.data, dict) else {"value": entry.data},
        }


class FieldChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class HistoryRecordSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The history record's number.")
    at = serializers.DateTimeField()
    user = UserRefSerializer(allow_null=True)
    type = serializers.ChoiceField(choices=["created", "changed", "deleted"])
    reason = serializers.CharField(allow_null=True)
    changes = FieldChangeSerializer(many=True)

    def to_representation(self, record: dict[str, Any]) -> dict[str, Any]:
        return record


# --- input ---------------------------------------------------------------------------------------


def _long_text(**kwargs: Any) -> TextField:
    kwargs.setdefault("required", False)
    kwargs.setdefault("allow_blank", True)
    kwargs.setdefault("max_length", TEXT_MAX)
    return TextField(**kwargs)


ROLES_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "string", "nullable": True},
    "description": "Role key → username; null unassigns the role.",
    "example": {"incident_manager": "alice", "technical_lead": None},
}


@extend_schema_field(ROLES_SCHEMA)
class RolesField(serializers.Field):
    """``{"incident_manager": "alice", "technical_lead": null}`` resolved to
    ``{"incident_manager": <User alice>, "technical_lead": None}``; unknown roles, unknown or
    inactive users are field errors."""

    default_error_messages = {"not_a_dict": "Expected an object mapping role keys to usernames."}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_a_dict")
        roles = set(ResponseRole.objects.values_list("key", flat=True))
        errors: dict[str, list[str]] = {}
        for key, username in data.items():
            if key not in roles:
                errors[str(key)] = [f"Unknown role; known: {', '.join(sorted(roles))}."]
            elif username is not None and not _valid_username(username):
                errors[key] = ["Give a username, or null to unassign."]
        if errors:
            raise serializers.ValidationError(errors)
        wanted = {username for username in data.values() if username is not None}
        users = {
            user.get_username(): user
            for user in get_user_model().objects.filter(username__in=wanted, is_active=True)
        }
        for key, username in data.items():
            if username is not None and username not in users:
                errors[key] = [f"No active user {username!r}."]
        if errors:
            raise serializers.ValidationError(errors)
        return {key: (users[u] if u is not None else None) for key, u in data.items()}

    def to_representation(self, value: Any) -> Any:
        return {key: (user.get_username() if user else None) for key, user in value.items()}


def _valid_username(value: Any) -> bool:
    if not isinstance(value, str) or not value or len(value) > 150 or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class IncidentCreateSerializer(serializers.Serializer):
    title = TextField(max_length=200)
    severity = serializers.IntegerField(min_value=1, max_value=4)
    impact = serializers.ChoiceField(
        choices=Level.choices, required=False, help_text="Defaults to the severity's."
    )
    urgency = serializers.ChoiceField(
        choices=Level.choices, required=False, help_text="Defaults to the severity's."
    )
    priority_reason = _long_text(
        max_length=2000,
        write_only=True,
        help_text="Why the priority does not go with the severity (say Sev 1 at P3): required "
        "then, written on the timeline.",
    )
    summary = _long_text()
    detection_source = serializers.ChoiceField(choices=DetectionSource.choices, required=False)
    services = serializers.ListField(
        child=serializers.SlugField(max_length=60), required=False, max_length=100
    )
    customer_facing = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="Defaults to whether any affected service is customer-facing.",
    )
    affected_users = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=INT_MAX
    )
    business_impact = _long_text()
    root_cause = _long_text()
    resolution = _long_text()
    impact_started_at = serializers.DateTimeField(required=False, allow_null=True)
    detected_at = serializers.DateTimeField(
        required=False, help_text="Defaults to now; cannot be in the future."
    )
    roles = RolesField(
        required=False, help_text="Role key → username, assigned as the incident is logged."
    )


class IncidentUpdateSerializer(serializers.Serializer):
    """PATCH: only the fields given change. ``severity`` goes through the severity service
    (timeline entry, running SLA clocks recomputed); ``severity_reason`` is noted with it,
    ``correction_reason`` with the other fields (a correction after closure needs one)."""

    title = TextField(max_length=200, required=False)
    summary = _long_text()
    severity = serializers.IntegerField(min_value=1, max_value=4, required=False)
    severity_reason = _long_text(
        max_length=2000,
        write_only=True,
        help_text="Why the severity changes: required when lowering it (incident policy), "
        "written on the timeline.",
    )
    priority_reason = _long_text(
        max_length=2000,
        write_only=True,
        help_text="Why the priority does not go with the severity (say Sev 1 at P3): required "
        "then, written on the timeline with the priority change.",
    )
    correction_reason = _long_text(
        max_length=2000,
        write_only=True,
        help_text="Why: required to correct a closed or cancelled incident; written on the "
        "timeline with the edit.",
    )
    impact = serializers.ChoiceField(choices=Level.choices, required=False)
    urgency = serializers.ChoiceField(choices=Level.choices, required=False)
    detection_source = serializers.ChoiceField(choices=DetectionSource.choices, required=False)
    services = serializers.ListField(
        child=serializers.SlugField(max_length=60), required=False, max_length=100
    )
    customer_facing = serializers.BooleanField(required=False)
    affected_users = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=INT_MAX
    )
    business_impact = _long_text()
    root_cause = _long_text()
    resolution = _long_text()
    lessons_learned = _long_text()
    impact_started_at = serializers.DateTimeField(required=False, allow_null=True)
    detected_at = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        initial = self.initial_data if isinstance(self.initial_data, dict) else {}
        errors = {name: [hint] for name, hint in READ_ONLY_HINTS.items() if name in initial}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class NoActionInputSerializer(serializers.Serializer):
    """The action needs no input; an empty object (or no body) will do."""


class ResolveInputSerializer(serializers.Serializer):
    resolution = _long_text(
        help_text="Steps taken to resolve; required unless already recorded on the incident."
    )


class ReopenInputSerializer(serializers.Serializer):
    reason = _long_text(max_length=2000, help_text="Why the fix did not hold.")


class CancelInputSerializer(serializers.Serializer):
    reason = _long_text(max_length=2000, help_text="Why: a false alarm, for example.")
    duplicate_of = TextField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=24,
        help_text="ID of the incident this one duplicates.",
    )


ACTION_INPUTS: dict[str, type[serializers.Serializer]] = {
    "acknowledge": NoActionInputSerializer,
    "investigate": NoActionInputSerializer,
    "mitigate": NoActionInputSerializer,
    "monitor": NoActionInputSerializer,
    "resolve": ResolveInputSerializer,
    "reopen": ReopenInputSerializer,
    "close": NoActionInputSerializer,
    "cancel": CancelInputSerializer,
}


NOTE_KINDS = [(Kind.NOTE.value, "Note"), (Kind.DECISION.value, "Decision")]


class NoteInputSerializer(serializers.Serializer):
    body = TextField(max_length=TEXT_MAX, help_text="The note's text.")
    kind = serializers.ChoiceField(choices=NOTE_KINDS, default=Kind.NOTE)
