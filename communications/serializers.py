"""Input and output shapes of the status-update and communication-policy API. Plain
serializers: the rules live in ``communications.services``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from incidents.serializers import UserRefSerializer, user_ref

from .models import ComponentStatus, StatusUpdate, UpdateStatus
from .selectors import DELIVERY_COUNTED
from .services.updates import BODY_MAX, TITLE_MAX, TITLE_PROMPT


class AffectedComponentSerializer(serializers.Serializer):
    component = serializers.CharField(
        max_length=60, help_text="The component's code (its service's slug), e.g. `checkout`."
    )
    status = serializers.ChoiceField(
        choices=ComponentStatus.choices, help_text="The status the update gives the component."
    )


class AffectedComponentOutSerializer(serializers.Serializer):
    component = serializers.CharField(help_text="The component's code.")
    name = serializers.CharField(help_text="The component's public name.")
    status = serializers.CharField(help_text="The status the update gives it.")
    old_status = serializers.CharField(
        help_text="Its status before the update was published; empty until then."
    )


class StatusUpdateInputSerializer(serializers.Serializer):
    public_title = serializers.CharField(
        max_length=TITLE_MAX,
        required=False,
        allow_blank=True,
        help_text=f"Customer-facing title. Omitted or blank: `{TITLE_PROMPT}`, which must be "
        "replaced before the update is approved or published (the incident's internal title is "
        "never used).",
    )
    public_status = serializers.ChoiceField(choices=UpdateStatus.choices)
    body = serializers.CharField(
        max_length=BODY_MAX,
        trim_whitespace=False,
        help_text="Markdown. Raw HTML is shown as text; only http, https and mailto links.",
    )
    components = AffectedComponentSerializer(
        many=True,
        required=False,
        help_text="Affected components and the status each gets when the update is published.",
    )

    def validated_components(self) -> list[dict[str, Any]] | None:
        rows = self.validated_data.get("components")
        if rows is None:
            return None
        return [{"component": row["component"], "status": row["status"]} for row in rows]


class DeliveriesSerializer(serializers.Serializer):
    """How many of a published update's messages (subscriber and customer emails, subscriber
    webhooks) are in each delivery state, as the email provider's tracking reported them."""

    queued = serializers.IntegerField(help_text="Waiting in the outbox, or deferred.")
    sent = serializers.IntegerField(help_text="Handed to the provider.")
    delivered = serializers.IntegerField()
    bounced = serializers.IntegerField(help_text="Bounced or rejected.")
    complained = serializers.IntegerField(help_text="Marked as spam, or unsubscribed there.")
    failed = serializers.IntegerField(help_text="Given up by the outbox.")


class StatusUpdateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.SerializerMethodField(help_text="The incident's ID.")
    kind = serializers.CharField(help_text="`update` or `restoration` (the restoration notice).")
    state = serializers.CharField(help_text="`draft`, `approved` or `published`.")
    public_title = serializers.CharField()
    title_is_prompt = serializers.SerializerMethodField(
        help_text="True while the title is still the prompt to write one."
    )
    public_status = serializers.CharField()
    body = serializers.CharField(help_text="Markdown, as written.")
    body_html = serializers.CharField(help_text="The body rendered and sanitized.")
    components = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    approved_by = serializers.SerializerMethodField()
    approved_at = serializers.DateTimeField(allow_null=True)
    published_by = serializers.SerializerMethodField()
    published_at = serializers.DateTimeField(allow_null=True)
    deliveries = serializers.SerializerMethodField(
        help_text="Its messages per delivery state (all zero before it is published)."
    )

    def get_incident(self, obj: StatusUpdate) -> str:
        return obj.incident.number

    def get_title_is_prompt(self, obj: StatusUpdate) -> bool:
        return obj.public_title == TITLE_PROMPT

    @extend_schema_field(DeliveriesSerializer)
    def get_deliveries(self, obj: StatusUpdate) -> dict[str, int]:
        return {name: getattr(obj, f"deliveries_{name}", None) or 0 for name in DELIVERY_COUNTED}

    @extend_schema_field(AffectedComponentOutSerializer(many=True))
    def get_components(self, obj: StatusUpdate) -> list[dict[str, Any]]:
        return [
            {
                "component": row.component.code,
                "name": row.component.name,
                "status": row.new_status,
                "old_status": row.old_status,
            }
            for row in obj.affected.all()
        ]

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_created_by(self, obj: StatusUpdate) -> dict[str, Any] | None:
        return user_ref(obj.created_by)

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_approved_by(self, obj: StatusUpdate) -> dict[str, Any] | None:
        return user_ref(obj.approved_by)

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_published_by(self, obj: StatusUpdate) -> dict[str, Any] | None:
        return user_ref(obj.published_by)


class CommunicationPolicySerializer(serializers.Serializer):
    approval_severities = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Severity levels whose updates need the business liaison's approval.",
    )
    first_update_minutes = serializers.IntegerField(
        help_text="The first update is due this many minutes after confirmation."
    )
    reminder_minutes = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Minutes after confirmation at which the communications lead is reminded.",
    )


class CommunicationPolicyInputSerializer(serializers.Serializer):
    approval_severities = serializers.ListField(
        child=serializers.IntegerField(), required=False, max_length=10
    )
    first_update_minutes = serializers.IntegerField(required=False)
    reminder_minutes = serializers.ListField(
        child=serializers.IntegerField(), required=False, max_length=20
    )
