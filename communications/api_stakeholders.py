"""The stakeholder schedule in the staff API (§5.2):

* ``GET /api/v1/stakeholder-groups/``: the groups of the stakeholder table, with their channels,
  intervals per severity, content kind and members;
* ``GET /api/v1/incidents/{id}/stakeholder-schedule/``: each active group's schedule on the
  incident (next due, last sent, late);
* ``POST /api/v1/incidents/{id}/stakeholder-notes/``: write a note for a group (what its next
  update says);
* ``POST /api/v1/incidents/{id}/stakeholder-sends/``: send a group its update now ("as needed"
  groups such as Partners, or any group).

Reading needs the view permission every role holds; writes are decided by the services (the
same checks as the admin): a Viewer gets 403, bad input a 400 with the field's reason.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.errors import InvalidInput
from incidents.models import Source
from incidents.serializers import user_ref

from .api import ID_PARAMETER, _incident_or_404
from .models import (
    StakeholderGroup,
    StakeholderNote,
    StakeholderSchedule,
    StakeholderSend,
)
from .services.stakeholders import (
    NOTE_MAX,
    stakeholder_note_write,
    stakeholder_schedule_list,
    stakeholder_send_now,
)

TAG = ["stakeholder updates"]


class StakeholderMemberSerializer(serializers.Serializer):
    contact = serializers.CharField(allow_null=True, help_text="The policy contact's name.")
    user = serializers.CharField(allow_null=True, help_text="The staff user's username.")
    address = serializers.CharField(help_text="A bare address on the group's channel.")


class StakeholderGroupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    position = serializers.IntegerField()
    channel = serializers.CharField()
    extra_channels = serializers.ListField(child=serializers.CharField())
    intervals = serializers.DictField(
        child=serializers.IntegerField(), help_text="Minutes between updates per severity."
    )
    as_needed = serializers.BooleanField()
    content = serializers.CharField()
    active = serializers.BooleanField()
    members = serializers.SerializerMethodField()

    def get_members(self, obj: StakeholderGroup) -> list[dict]:
        return [
            {
                "contact": m.contact.name if m.contact else None,
                "user": m.user.get_username() if m.user else None,
                "address": m.address,
            }
            for m in obj.members.all()
        ]


class StakeholderScheduleRowSerializer(serializers.Serializer):
    group = serializers.IntegerField(source="group.pk")
    group_name = serializers.CharField(source="group.name")
    channel = serializers.CharField(source="group.channel")
    content = serializers.CharField(source="group.content")
    interval_minutes = serializers.IntegerField(allow_null=True)
    frequency = serializers.CharField()
    next_due_at = serializers.DateTimeField(allow_null=True)
    last_sent_at = serializers.DateTimeField(allow_null=True)
    last_kind = serializers.CharField(help_text="Kind of the last update sent; empty: none yet.")
    late = serializers.BooleanField(
        help_text="The last update went out late, or the next is overdue."
    )
    stopped_at = serializers.DateTimeField(allow_null=True)


class StakeholderNoteInputSerializer(serializers.Serializer):
    group = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="The stakeholder group's id."
    )
    body = serializers.CharField(max_length=NOTE_MAX, help_text="What the next update says.")


class StakeholderSendInputSerializer(serializers.Serializer):
    group = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="The stakeholder group's id."
    )


class StakeholderNoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    group = serializers.IntegerField(source="group_id")
    body = serializers.CharField()
    author = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_author(self, obj: StakeholderNote) -> dict | None:
        return user_ref(obj.author)


class StakeholderSendSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    group = serializers.IntegerField(source="group_id")
    kind = serializers.CharField()
    due_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField()
    late = serializers.BooleanField()
    recipients = serializers.IntegerField()
    subject = serializers.CharField()
    body = serializers.CharField()


def _group(pk: int) -> StakeholderGroup:
    group = StakeholderGroup.objects.filter(pk=pk).first()
    if group is None:
        raise InvalidInput({"group": f"No stakeholder group has the id {pk}."})
    return group


class StakeholderGroupListView(VigilAPIView):
    permission_model = StakeholderGroup
    queryset = StakeholderGroup.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=TAG,
        operation_id="stakeholder_groups_list",
        summary="List the stakeholder groups",
        description="§5.2's stakeholder table as Vigil runs it, in table order.",
        responses={200: StakeholderGroupSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        groups = StakeholderGroup.objects.prefetch_related("members__contact", "members__user")
        return Response(StakeholderGroupSerializer(groups, many=True).data)


class StakeholderScheduleView(VigilAPIView):
    permission_model = StakeholderSchedule
    queryset = StakeholderSchedule.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=TAG,
        operation_id="stakeholder_schedule_retrieve",
        summary="An incident's stakeholder schedule",
        description="Each active group: its interval, next due time, last update and whether "
        "it is late. Groups without an interval for the severity are 'as needed'.",
        parameters=[ID_PARAMETER],
        responses={
            200: StakeholderScheduleRowSerializer(many=True),
            **error_responses(*READ_ERRORS),
        },
    )
    def get(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        rows = stakeholder_schedule_list(incident=incident)
        return Response(StakeholderScheduleRowSerializer(rows, many=True).data)


class StakeholderNoteCreateView(VigilAPIView):
    permission_model = StakeholderNote
    queryset = StakeholderNote.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=TAG,
        operation_id="stakeholder_notes_create",
        summary="Write a note for a stakeholder group",
        description="The group's next update is composed from its latest note. The "
        "communications lead and incident managers may; 400 for an unknown group, an empty or "
        "too long body, or an incident that is no longer active.",
        parameters=[ID_PARAMETER],
        request=StakeholderNoteInputSerializer,
        responses={201: StakeholderNoteSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        serializer = StakeholderNoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        note = stakeholder_note_write(
            incident=incident,
            group=_group(data["group"]),
            body=data["body"],
            actor=request.user,
            source=Source.API,
        )
        return Response(StakeholderNoteSerializer(note).data, status=status.HTTP_201_CREATED)


class StakeholderSendCreateView(VigilAPIView):
    permission_model = StakeholderSend
    queryset = StakeholderSend.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=TAG,
        operation_id="stakeholder_sends_create",
        summary="Send a stakeholder group its update now",
        description="Composed from the latest note written for the group (or the latest "
        "published status update). 400 when nothing new was written since its last update, "
        "for an unknown group, or an incident that is no longer active.",
        parameters=[ID_PARAMETER],
        request=StakeholderSendInputSerializer,
        responses={201: StakeholderSendSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        serializer = StakeholderSendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        send = stakeholder_send_now(
            incident=incident,
            group=_group(serializer.validated_data["group"]),
            actor=request.user,
            source=Source.API,
        )
        return Response(StakeholderSendSerializer(send).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("stakeholder-groups/", StakeholderGroupListView.as_view(), name="stakeholder-group-list"),
    path(
        "incidents/<str:id>/stakeholder-schedule/",
        StakeholderScheduleView.as_view(),
        name="stakeholder-schedule",
    ),
    path(
        "incidents/<str:id>/stakeholder-notes/",
        StakeholderNoteCreateView.as_view(),
        name="stakeholder-note-list",
    ),
    path(
        "incidents/<str:id>/stakeholder-sends/",
        StakeholderSendCreateView.as_view(),
        name="stakeholder-send-list",
    ),
]
