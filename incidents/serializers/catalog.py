"""Serializers of the service catalogue and the policy tables (severities, priority matrix,
response roles)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from ..models import Channel, Contact, Level, ServiceKind, Tier
from ..services.policy import priority_expected
from .common import TEXT_MAX, BoundedDurationField, TextField


class UsernameField(TextField):
    """A user named by username; resolves to the active user, or None when null is given."""

    default_error_messages = {"unknown": "No active user {username!r}."}

    def to_internal_value(self, data: Any) -> Any:
        username = super().to_internal_value(data)
        user = None
        if len(username) <= 150:
            user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            self.fail("unknown", username=username)
        return user


class ContactIdField(serializers.IntegerField):
    """A contact named by its id."""

    default_error_messages = {"unknown": "No contact {pk}."}

    def to_internal_value(self, data: Any) -> Contact:
        pk = super().to_internal_value(data)
        # The range check comes first: a 30-digit id must not reach the query.
        contact = Contact.objects.filter(pk=pk).first() if 0 < pk < 2**63 else None
        if contact is None:
            self.fail("unknown", pk=pk)
        return contact


# --- services (components) ----------------------------------------------------------------------


class ServiceSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    public_name = serializers.CharField(help_text="Name on the status page; blank hides it.")
    description = serializers.CharField()
    kind = serializers.ChoiceField(choices=ServiceKind.choices)
    tier = serializers.ChoiceField(choices=Tier.choices)
    customer_facing = serializers.BooleanField()
    owner = serializers.CharField(allow_null=True, help_text="Username of the owner.")
    is_active = serializers.BooleanField()

    def to_representation(self, service: Any) -> dict[str, Any]:
        return {
            "slug": service.slug,
            "name": service.name,
            "public_name": service.public_name,
            "description": service.description,
            "kind": service.kind,
            "tier": service.tier,
            "customer_facing": service.customer_facing,
            "owner": service.owner.get_username() if service.owner_id else None,
            "is_active": service.is_active,
        }


class ServiceWriteSerializer(serializers.Serializer):
    """POST needs ``slug`` and ``name``; PATCH changes only the fields given."""

    slug = serializers.SlugField(max_length=60)
    name = TextField(max_length=120)
    public_name = TextField(max_length=120, required=False, allow_blank=True)
    description = TextField(max_length=TEXT_MAX, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=ServiceKind.choices, required=False)
    tier = serializers.ChoiceField(choices=Tier.choices, required=False)
    customer_facing = serializers.BooleanField(required=False)
    owner = UsernameField(required=False, allow_null=True, help_text="Username of the owner.")
    is_active = serializers.BooleanField(required=False)


# --- policy -------------------------------------------------------------------------------------


class SeverityLevelSerializer(serializers.Serializer):
    level = serializers.IntegerField(min_value=1, max_value=4)
    name = serializers.CharField()
    definition = serializers.CharField()
    business_impact = serializers.CharField()
    examples = serializers.ListField(child=serializers.CharField())
    response_target = BoundedDurationField(help_text="ISO 8601 duration, e.g. PT15M.")
    resolution_target = BoundedDurationField(help_text="ISO 8601 duration, e.g. PT4H.")
    response_target_seconds = serializers.IntegerField()
    resolution_target_seconds = serializers.IntegerField()
    notification_channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices)
    )
    default_impact = serializers.ChoiceField(
        choices=Level.choices, help_text="Impact a new incident of this level starts with."
    )
    default_urgency = serializers.ChoiceField(
        choices=Level.choices, help_text="Urgency a new incident of this level starts with."
    )
    expected_priority = serializers.IntegerField(
        min_value=1,
        max_value=4,
        help_text="Default impact × urgency in the priority matrix: the priority this level "
        "goes with.",
    )

    def to_representation(self, level: Any) -> dict[str, Any]:
        duration = BoundedDurationField()
        return {
            "level": level.level,
            "name": level.name,
            "definition": level.definition,
            "business_impact": level.business_impact,
            "examples": level.example_list,
            "response_target": duration.to_representation(level.response_target),
            "resolution_target": duration.to_representation(level.resolution_target),
            "response_target_seconds": int(level.response_target.total_seconds()),
            "resolution_target_seconds": int(level.resolution_target.total_seconds()),
            "notification_channels": list(level.notification_channels),
            "default_impact": level.default_impact,
            "default_urgency": level.default_urgency,
            "expected_priority": priority_expected(level),
        }


class SeverityLevelUpdateSerializer(serializers.Serializer):
    name = TextField(max_length=40, required=False)
    definition = TextField(max_length=TEXT_MAX, required=False)
    business_impact = TextField(max_length=200, required=False)
    examples = serializers.ListField(
        child=TextField(max_length=500, allow_blank=True), required=False, max_length=50
    )
    response_target = BoundedDurationField(
        required=False, help_text="ISO 8601 (PT15M) or HH:MM:SS."
    )
    resolution_target = BoundedDurationField(
        required=False, help_text="ISO 8601 (PT4H) or HH:MM:SS."
    )
    notification_channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices),
        required=False,
        allow_empty=False,
        max_length=len(Channel.choices),
    )
    default_impact = serializers.ChoiceField(choices=Level.choices, required=False)
    default_urgency = serializers.ChoiceField(choices=Level.choices, required=False)

    def validate_examples(self, value: list[str]) -> str:
        return "\n".join(line.strip() for line in value if line.strip())


class PriorityCellSerializer(serializers.Serializer):
    urgency = serializers.ChoiceField(choices=Level.choices)
    impact = serializers.ChoiceField(choices=Level.choices)
    priority = serializers.IntegerField(min_value=1, max_value=4)

    def to_representation(self, cell: Any) -> dict[str, Any]:
        return {"urgency": cell.urgency, "impact": cell.impact, "priority": cell.priority}


class PriorityCellUpdateSerializer(serializers.Serializer):
    priority = serializers.IntegerField(min_value=1, max_value=4)


class ContactSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    phone = serializers.CharField()
    email = serializers.CharField()
    slack_handle = serializers.CharField()


def _contact(contact: Contact | None) -> dict[str, Any] | None:
    if contact is None:
        return None
    return {
        "id": contact.pk,
        "name": contact.name,
        "phone": contact.phone,
        "email": contact.email,
        "slack_handle": contact.slack_handle,
    }


class ResponseRoleSerializer(serializers.Serializer):
    key = serializers.SlugField()
    name = serializers.CharField()
    responsibilities = serializers.ListField(child=serializers.CharField())
    primary_contact = ContactSerializer(allow_null=True)
    backup_contact = ContactSerializer(allow_null=True)
    group = serializers.CharField(
        allow_null=True, help_text="Permission group whose members act in this role."
    )
    position = serializers.IntegerField()

    def to_representation(self, role: Any) -> dict[str, Any]:
        return {
            "key": role.key,
            "name": role.name,
            "responsibilities": role.responsibility_list,
            "primary_contact": _contact(role.primary_contact),
            "backup_contact": _contact(role.backup_contact),
            "group": role.group.name if role.group_id else None,
            "position": role.position,
        }


class ResponseRoleUpdateSerializer(serializers.Serializer):
    name = TextField(max_length=80, required=False)
    responsibilities = serializers.ListField(
        child=TextField(max_length=500, allow_blank=True), required=False, max_length=50
    )
    primary_contact = ContactIdField(required=False, allow_null=True, help_text="Contact id.")
    backup_contact = ContactIdField(required=False, allow_null=True, help_text="Contact id.")
    position = serializers.IntegerField(required=False, min_value=0, max_value=32767)

    def validate_responsibilities(self, value: list[str]) -> str:
        return "\n".join(line.strip() for line in value if line.strip())


__all__ = [
    "ContactSerializer",
    "PriorityCellSerializer",
    "PriorityCellUpdateSerializer",
    "ResponseRoleSerializer",
    "ResponseRoleUpdateSerializer",
    "ServiceSerializer",
    "ServiceWriteSerializer",
    "SeverityLevelSerializer",
    "SeverityLevelUpdateSerializer",
]
