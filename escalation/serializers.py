"""Output serializers of the escalation API: an incident's notifications and escalation events."""

from __future__ import annotations

from rest_framework import serializers

from .models import EscalationEvent, Notification


class NotificationSerializer(serializers.ModelSerializer):
    contact = serializers.CharField(
        source="contact.name", allow_null=True, default=None, read_only=True
    )

    class Meta:
        model = Notification
        fields = [
            "id",
            "channel",
            "recipient",
            "contact",
            "reason",
            "template",
            "subject",
            "status",
            "attempts",
            "last_error",
            "provider_message_id",
            "idempotency_key",
            "created_at",
            "next_attempt_at",
            "sent_at",
            "failed_at",
        ]
        read_only_fields = fields


class EscalationEventSerializer(serializers.ModelSerializer):
    elapsed_seconds = serializers.SerializerMethodField(
        help_text="The step's time since detection, in seconds (null for none)."
    )

    class Meta:
        model = EscalationEvent
        fields = [
            "id",
            "step",
            "severity",
            "elapsed_seconds",
            "target",
            "due_at",
            "fired_at",
            "caught_up",
        ]
        read_only_fields = fields

    def get_elapsed_seconds(self, event: EscalationEvent) -> int | None:
        return int(event.elapsed.total_seconds()) if event.elapsed is not None else None
