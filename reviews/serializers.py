"""The shapes of post-incident reviews in the staff API: a review as read (with its attendees
and, on its own page, the incident's times against target), and the bodies of its writes
(sections, held, book, reschedule, cancel).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from incidents.serializers import UserRefSerializer, user_ref

from .models import CauseCategory, Review, ReviewStatus
from .services.review_page import review_kpis
from .services.reviews import CAUSE_CATEGORY_FIELD, SECTION_FIELDS, SECTION_MAX


def _overdue(review: Review, today: date | None = None) -> bool:
    today = today or timezone.localdate()
    return review.status == ReviewStatus.BOOKED and review.due_date < today


class AttendeeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.EmailField()
    reason = serializers.CharField()
    attended = serializers.BooleanField(allow_null=True)


class KpiSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="detect, acknowledge, mitigate or resolve.")
    label = serializers.CharField()
    seconds = serializers.IntegerField(allow_null=True, help_text="Null: not recorded.")
    target_seconds = serializers.IntegerField(allow_null=True, help_text="Null: no target.")
    met = serializers.BooleanField(allow_null=True)


class ReviewSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.SerializerMethodField(help_text="The incident's public ID.")
    status = serializers.CharField(help_text="booked, held, published or cancelled.")
    overdue = serializers.SerializerMethodField(help_text="Booked and past its due date.")
    required = serializers.BooleanField()
    due_date = serializers.DateField()
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    location = serializers.CharField()
    facilitator = serializers.SerializerMethodField()
    facilitator_name = serializers.CharField()
    facilitator_email = serializers.CharField()
    held_at = serializers.DateTimeField(allow_null=True)
    published_at = serializers.DateTimeField(allow_null=True)
    published_by = serializers.SerializerMethodField()
    has_action_items = serializers.SerializerMethodField()
    sections = serializers.SerializerMethodField(help_text="§8.2's sections, Markdown.")
    cause_category = serializers.CharField(
        help_text="The primary cause's category: "
        + ", ".join(CauseCategory.values)
        + "; blank when not categorised."
    )
    cause_category_label = serializers.SerializerMethodField()
    attendees = serializers.SerializerMethodField()
    kpis = serializers.SerializerMethodField(help_text="The incident's times against target.")

    def get_incident(self, obj: Review) -> str:
        return obj.incident.number

    def get_overdue(self, obj: Review) -> bool:
        return _overdue(obj)

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_facilitator(self, obj: Review) -> dict[str, Any] | None:
        return user_ref(obj.facilitator)

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_published_by(self, obj: Review) -> dict[str, Any] | None:
        return user_ref(obj.published_by)

    def get_cause_category_label(self, obj: Review) -> str:
        return obj.get_cause_category_display() if obj.cause_category else "Not categorised"

    def get_has_action_items(self, obj: Review) -> bool:
        return bool(getattr(obj, "has_actions", False))

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_sections(self, obj: Review) -> dict[str, str]:
        return {field: getattr(obj, field) for field in SECTION_FIELDS}

    @extend_schema_field(AttendeeSerializer(many=True))
    def get_attendees(self, obj: Review) -> list[dict[str, Any]]:
        return [
            {
                "id": a.pk,
                "name": a.name,
                "email": a.email,
                "reason": a.reason,
                "attended": a.attended,
            }
            for a in obj.attendees.all()
            if a.removed_at is None
        ]

    @extend_schema_field(KpiSerializer(many=True))
    def get_kpis(self, obj: Review) -> list[dict[str, Any]]:
        if not self.context.get("detail"):
            return []
        return [
            {
                "key": k.key,
                "label": k.label,
                "seconds": int(k.taken.total_seconds()) if k.taken is not None else None,
                "target_seconds": int(k.target.total_seconds()) if k.target is not None else None,
                "met": k.met,
            }
            for k in review_kpis(incident=obj.incident)
        ]


def _validate_sections(self: serializers.Serializer, attrs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(self.initial_data) - {*SECTION_FIELDS, CAUSE_CATEGORY_FIELD})
    if unknown:
        raise serializers.ValidationError(
            {name: "Not a section of the review." for name in unknown}
        )
    if not attrs:
        raise serializers.ValidationError("Give at least one section.")
    return attrs


SectionsSerializer = type(
    "SectionsSerializer",
    (serializers.Serializer,),
    {
        **{
            field: serializers.CharField(
                required=False,
                allow_blank=True,
                trim_whitespace=False,
                max_length=SECTION_MAX,
                help_text="Markdown (rendered sanitized).",
            )
            for field in SECTION_FIELDS
        },
        CAUSE_CATEGORY_FIELD: serializers.ChoiceField(
            choices=CauseCategory.choices,
            required=False,
            allow_blank=True,
            help_text="The primary cause's category; blank: not categorised.",
        ),
        "validate": _validate_sections,
    },
)


class AttendanceSerializer(serializers.Serializer):
    attendee = serializers.IntegerField(help_text="The attendee's id.")
    attended = serializers.BooleanField(allow_null=True)


class HeldSerializer(serializers.Serializer):
    held_at = serializers.DateTimeField(
        required=False, help_text="When the meeting took place (default: now; not in future)."
    )
    attendance = AttendanceSerializer(many=True, required=False)


class BookSerializer(serializers.Serializer):
    incident = serializers.CharField(help_text="The incident's public ID.", max_length=40)


class RescheduleSerializer(serializers.Serializer):
    starts_at = serializers.DateTimeField(help_text="The new start (in the future).")
    location = serializers.CharField(
        required=False, allow_blank=True, max_length=300, help_text="Room or meeting link."
    )


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Why it is cancelled.")
