"""Input and output of ``/api/v1/maintenance-windows/`` and of an integration's
``routing-rules/``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..detection.routing import (
    LABEL_MAX,
    MATCH_LABELS_MAX,
    MATCH_VALUES_MAX,
    VALUE_MAX,
    routing_match_errors,
)
from ..models import MaintenanceWindow, RoutingRule
from .common import INT_MAX, TextField, UserRefSerializer, iso, user_ref

# --- maintenance windows ----------------------------------------------------------------------


class MaintenanceWindowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reason = serializers.CharField()
    integration = serializers.IntegerField(
        allow_null=True, help_text="Integration id: its alerts are silenced."
    )
    service = serializers.CharField(
        allow_null=True,
        help_text="Service slug: the alerts routed to it, from every integration, are silenced.",
    )
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    active = serializers.BooleanField(help_text="Active now.")
    created_by = UserRefSerializer(allow_null=True)
    created_at = serializers.DateTimeField()

    def to_representation(self, instance: MaintenanceWindow) -> dict[str, Any]:
        now = timezone.now()
        return {
            "id": instance.pk,
            "reason": instance.reason,
            "integration": instance.integration_id,
            "service": instance.service.slug if instance.service_id else None,
            "starts_at": iso(instance.starts_at),
            "ends_at": iso(instance.ends_at),
            "active": instance.starts_at <= now < instance.ends_at,
            "created_by": user_ref(instance.created_by),
            "created_at": iso(instance.created_at),
        }


class MaintenanceWindowCreateSerializer(serializers.Serializer):
    reason = TextField(max_length=200, help_text="What the planned work is.")
    integration = serializers.IntegerField(
        min_value=1,
        max_value=INT_MAX,
        required=False,
        allow_null=True,
        help_text="Integration id. Give it, a service, or both (that integration's alerts "
        "routed to that service).",
    )
    service = serializers.SlugField(
        max_length=60, required=False, allow_null=True, help_text="Service slug."
    )
    starts_at = serializers.DateTimeField(required=False, help_text="Leave out for now.")
    ends_at = serializers.DateTimeField(help_text="After the start, and not already past.")


class MaintenanceWindowUpdateSerializer(serializers.Serializer):
    ends_at = serializers.DateTimeField(
        help_text=(
            "A new end. At or before now ends an active window now (ending it early); a "
            "window that has ended is kept as it was."
        )
    )


# --- routing rules ----------------------------------------------------------------------------

MATCH_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": MATCH_LABELS_MAX,
    "additionalProperties": {
        "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": VALUE_MAX},
            {
                "type": "array",
                "minItems": 1,
                "maxItems": MATCH_VALUES_MAX,
                "items": {"type": "string", "minLength": 1, "maxLength": VALUE_MAX},
            },
        ]
    },
    "description": (
        f"Label name (at most {LABEL_MAX} characters) → the value it must have, or a list of "
        "values one of which it must have; compared case-insensitively. Every label must match."
    ),
    "example": {"team": "payments", "env": ["prod", "production"]},
}


@extend_schema_field(MATCH_SCHEMA)
class MatchField(serializers.Field):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        errors = routing_match_errors(data)
        if errors:
            raise serializers.ValidationError(errors)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class RoutingRuleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    integration = serializers.IntegerField()
    position = serializers.IntegerField()
    match = MatchField()
    service = serializers.CharField(
        allow_null=True, help_text="Service slug; null: the integration's service."
    )
    severity = serializers.IntegerField(
        allow_null=True, help_text="Default severity level; null: the integration's."
    )
    enabled = serializers.BooleanField()

    def to_representation(self, instance: RoutingRule) -> dict[str, Any]:
        return {
            "id": instance.pk,
            "integration": instance.integration_id,
            "position": instance.position,
            "match": instance.match,
            "service": instance.service.slug if instance.service_id else None,
            "severity": instance.severity_id,
            "enabled": instance.enabled,
        }


class RoutingRuleInputSerializer(serializers.Serializer):
    position = serializers.IntegerField(
        min_value=0, max_value=1000, required=False, help_text="Rules are tried in this order."
    )
    match = MatchField()
    service = serializers.SlugField(
        max_length=60,
        required=False,
        allow_null=True,
        help_text="Service slug; null or left out: the integration's service.",
    )
    severity = serializers.IntegerField(
        min_value=1,
        max_value=4,
        required=False,
        allow_null=True,
        help_text="Default severity level; null or left out: the integration's.",
    )
    enabled = serializers.BooleanField(required=False)
