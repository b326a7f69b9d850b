"""The stakeholder schedule (procedure §5.2's table as data): groups with members, channel,
interval per severity and content kind; per active incident, the schedule of each group, the
internal notes written for it and every send (exactly one per incident, group and due time)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from incidents.models import Channel, Contact, Incident

__all__ = [
    "ContentKind",
    "SendKind",
    "StakeholderGroup",
    "StakeholderMember",
    "StakeholderNote",
    "StakeholderSchedule",
    "StakeholderSend",
]


class ContentKind(models.TextChoices):
    """What a stakeholder group's update is about (§5.2's "Content" column)."""

    STATUS_ETA = "status_eta", "Status and ETA"
    IMPACT = "impact", "Impact assessment"
    TALKING_POINTS = "talking_points", "Talking points"
    SERVICE_IMPACT = "service_impact", "Service impact"


class StakeholderGroup(models.Model):
    """A row of §5.2's stakeholder table: who, on which channel, how often for which severity
    (``intervals``: minutes per severity level; a severity that is not listed gets no scheduled
    update), and what the update says. A group with no interval at all is "as needed": sent on
    demand from the incident page."""

    name = models.CharField(max_length=120, unique=True)
    position = models.PositiveIntegerField(default=0)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    extra_channels = models.JSONField(
        default=list,
        blank=True,
        help_text='Further channels every update also goes out on, e.g. ["sms"] for the '
        "executive team's 'email/phone'.",
    )
    intervals = models.JSONField(
        default=dict,
        blank=True,
        help_text='Minutes between updates per severity, e.g. {"1": 120}. Empty: as needed.',
    )
    content = models.CharField(max_length=16, choices=ContentKind.choices)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    def interval_for(self, severity: int) -> int | None:
        minutes = (self.intervals or {}).get(str(severity))
        return int(minutes) if minutes else None

    @property
    def as_needed(self) -> bool:
        return not any((self.intervals or {}).values())


class StakeholderMember(models.Model):
    """One recipient of a stakeholder group: a contact of the policy, a staff user, or a bare
    address on the group's channel (a Slack channel such as ``#support``, a mailing list)."""

    group = models.ForeignKey(StakeholderGroup, on_delete=models.CASCADE, related_name="members")
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    address = models.CharField(max_length=254, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["group", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(contact__isnull=False) | Q(user__isnull=False) | ~Q(address=""),
                name="stakeholder_member_has_someone",
            )
        ]

    def __str__(self) -> str:
        return str(self.contact or self.user or self.address)


class StakeholderNote(models.Model):
    """An internal note written for one stakeholder group on one incident: what its next
    update says (status and ETA, impact assessment, talking points...)."""

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="stakeholder_notes"
    )
    group = models.ForeignKey(StakeholderGroup, on_delete=models.PROTECT, related_name="notes")
    body = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Note for {self.group} on {self.incident}"


class StakeholderSchedule(models.Model):
    """The schedule of one stakeholder group on one active incident: when its next update is
    due, when the last one went out, and whether the communications lead was reminded for the
    coming one. The beat sweep claims due rows; ``stopped_at`` ends it (resolution)."""

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="stakeholder_schedules"
    )
    group = models.ForeignKey(StakeholderGroup, on_delete=models.PROTECT, related_name="schedules")
    interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    next_due_at = models.DateTimeField(null=True, blank=True)
    reminder_at = models.DateTimeField(null=True, blank=True)
    reminded_for = models.DateTimeField(
        null=True, blank=True, help_text="The due time the lead was last reminded for."
    )
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_note = models.ForeignKey(
        StakeholderNote, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["incident", "group__position"]
        constraints = [
            models.UniqueConstraint("incident", "group", name="stakeholder_schedule_once")
        ]

    def __str__(self) -> str:
        return f"{self.group} on {self.incident}"


class SendKind(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled update"
    NO_CHANGE = "no_change", "No change since the last update"
    ON_DEMAND = "on_demand", "Sent on demand"
    FINAL = "final", "Final update (resolved)"
    REMINDER = "reminder", "Reminder to the communications lead"


class StakeholderSend(models.Model):
    """One update (or reminder) of the stakeholder schedule, sent exactly once per incident,
    group, due time and kind: the unique constraint is what concurrent sweeps and a catch-up
    after downtime meet."""

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="stakeholder_sends"
    )
    group = models.ForeignKey(StakeholderGroup, on_delete=models.PROTECT, related_name="sends")
    kind = models.CharField(max_length=10, choices=SendKind.choices)
    due_at = models.DateTimeField()
    sent_at = models.DateTimeField()
    late = models.BooleanField(default=False)
    note = models.ForeignKey(
        StakeholderNote, null=True, blank=True, on_delete=models.SET_NULL, related_name="sends"
    )
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    recipients = models.PositiveSmallIntegerField(default=0)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-due_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                "incident", "group", "due_at", "kind", name="stakeholder_send_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.group} on {self.incident}"
