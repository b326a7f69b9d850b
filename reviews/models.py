"""Post-incident reviews (procedure §4.2 step 4, §8): the review policy, the review of an
incident (booked within the business-day limit after closure, run to §8.2's agenda, published
read-only), its attendees, its action items, the 48-hour documentation rule, and the knowledge
base (articles from lessons learned, runbook links per service). Writes go through
``reviews.services``; the incident core never imports this app."""

from __future__ import annotations

import uuid
from datetime import time

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from incidents.models import Incident, Service


def default_required_severities() -> list[int]:
    return [1, 2]


def default_meeting_minutes() -> dict[str, int]:
    return {"1": 90, "2": 60, "3": 60, "4": 60}


class ReviewPolicy(models.Model):
    """The review policy (one row, seeded, editable, audited): which severities need a review,
    the business-day limit after closure (§8.1: 5), the meeting length per severity (60-90
    minutes), working hours and time zone for proposed slots, whether a booked review is a
    close guard for Sev 1, and the 48-hour documentation rule (§4.2 step 4)."""

    required_severities = models.JSONField(
        default=default_required_severities,
        help_text="Severity levels whose closure books a review, e.g. [1, 2]. Others may book "
        "one on demand.",
    )
    business_days = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(30)],
        help_text="The review is due by this business day after closure (weekends, the "
        "country's public holidays and the company closures below are skipped).",
    )
    meeting_minutes = models.JSONField(
        default=default_meeting_minutes,
        help_text='Meeting length in minutes per severity, e.g. {"1": 90, "2": 60}.',
    )
    workday_start = models.TimeField(default=time(9, 0))
    workday_end = models.TimeField(default=time(17, 0))
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="Time zone of the working hours, e.g. Europe/Paris."
    )
    close_guard_severities = models.JSONField(
        default=list,
        blank=True,
        help_text="Severity levels that may only be closed once their review is booked, e.g. "
        "[1]. Empty: closing never waits for a review.",
    )
    documentation_hours = models.PositiveSmallIntegerField(
        default=48,
        validators=[MinValueValidator(1)],
        help_text="The incident report (its fields and lessons learned) is due this many hours "
        "after resolution (§4.2 step 4).",
    )
    documentation_reminder_hours = models.PositiveSmallIntegerField(
        default=12,
        help_text="The incident manager is reminded this many hours before the report is due.",
    )
    action_reminder_days = models.PositiveSmallIntegerField(
        default=2, help_text="An action item's owner is reminded this many days before it is due."
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "review policy"
        verbose_name_plural = "review policy"

    def __str__(self) -> str:
        return "Review policy"

    def meeting_length(self, severity: int) -> int:
        minutes = (self.meeting_minutes or {}).get(str(severity))
        return int(minutes) if minutes else 60


class ClosureDay(models.Model):
    """A company-specific day off (besides weekends and the country's public holidays, which
    come from the ``holidays`` package): not a business day for review deadlines."""

    date = models.DateField(unique=True)
    name = models.CharField(max_length=120)
    history = HistoricalRecords()

    class Meta:
        ordering = ["date"]

    def __str__(self) -> str:
        return f"{self.date}: {self.name}"


class ReviewStatus(models.TextChoices):
    BOOKED = "booked", "Booked"
    HELD = "held", "Held"
    PUBLISHED = "published", "Published"
    CANCELLED = "cancelled", "Cancelled"


class CauseCategory(models.TextChoices):
    """What kind of cause the primary cause was: counted by the monthly report (§9.2: common
    root causes)."""

    CHANGE = "change", "Change or deployment"
    CONFIGURATION = "configuration", "Configuration"
    CAPACITY = "capacity", "Capacity or load"
    SOFTWARE = "software", "Software defect"
    INFRASTRUCTURE = "infrastructure", "Hardware or infrastructure"
    THIRD_PARTY = "third_party", "Third-party dependency"
    SECURITY = "security", "Security"
    HUMAN = "human", "Human or process error"
    UNKNOWN = "unknown", "Not determined"


class Review(models.Model):
    """The post-incident review of one incident (§8): booked with its due date (the policy's
    business day after closure), a facilitator and a slot; written while booked or held
    (§8.2's agenda: overview, went well, went wrong by category, root cause, lessons,
    actions); published read-only and attached to the incident's report.

    ``uid`` and ``sequence`` are the calendar invitation's UID (stable) and SEQUENCE (one more
    at each reschedule)."""

    incident = models.OneToOneField(Incident, on_delete=models.CASCADE, related_name="review")
    status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.BOOKED
    )
    required = models.BooleanField(
        default=True, help_text="Booked because the policy requires it (not on demand)."
    )
    due_date = models.DateField(help_text="Held by this day (the business-day limit).")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    location = models.CharField(max_length=300, blank=True, help_text="Room or meeting link.")
    facilitator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    facilitator_name = models.CharField(max_length=200, blank=True)
    facilitator_email = models.EmailField(
        blank=True, help_text="An external facilitator (no Vigil login)."
    )
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    sequence = models.PositiveIntegerField(default=0)

    overview = models.TextField(blank=True, help_text="Markdown.")
    went_well = models.TextField(blank=True, help_text="Markdown.")
    wrong_detection = models.TextField("detection delays", blank=True)
    wrong_communication = models.TextField("communication failures", blank=True)
    wrong_technical = models.TextField("technical issues", blank=True)
    wrong_process = models.TextField("process breakdowns", blank=True)
    primary_cause = models.TextField(blank=True)
    cause_category = models.CharField(
        "root cause category",
        max_length=16,
        choices=CauseCategory.choices,
        blank=True,
        help_text="The kind of the primary cause, counted in the monthly report.",
    )
    contributing_factors = models.TextField(blank=True)
    systemic_issues = models.TextField(blank=True)
    lessons_learned = models.TextField(blank=True)
    no_actions_reason = models.TextField(
        blank=True, help_text="Why this review records no action item (needed to publish one)."
    )

    held_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_reason = models.TextField(blank=True)
    overdue_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was found not held by its due date."
    )
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["due_date", "id"]
        permissions = [
            ("publish_review", "Can publish a review"),
            ("book_review", "Can book, reschedule or cancel a review"),
        ]

    def __str__(self) -> str:
        return f"Review of {self.incident}"


class AttendeeReason(models.TextChoices):
    FACILITATOR = "facilitator", "Facilitator"
    RESPONSE_TEAM = "response_team", "Response team"
    SERVICE_OWNER = "service_owner", "Owner of an affected service"
    MANAGEMENT = "management", "Management (escalation)"
    ADDED = "added", "Added by hand"


class ReviewAttendee(models.Model):
    """Someone invited to a review (§8.1: response team, affected system owners, management),
    why, and whether they attended."""

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="attendees")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField()
    reason = models.CharField(max_length=16, choices=AttendeeReason.choices)
    attended = models.BooleanField(null=True, blank=True)
    invited_sequence = models.PositiveIntegerField(
        null=True, blank=True, help_text="The invitation SEQUENCE last sent to them."
    )
    removed_at = models.DateTimeField(
        null=True, blank=True, help_text="Uninvited: sent a cancellation."
    )

    class Meta:
        ordering = ["review", "reason", "name", "id"]
        constraints = [
            models.UniqueConstraint("review", "email", name="review_attendee_once"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.email} ({self.get_reason_display()})"


class ActionKind(models.TextChoices):
    """§8.2's four kinds of action item."""

    IMMEDIATE_FIX = "immediate_fix", "Immediate fix"
    LONG_TERM = "long_term", "Long-term improvement"
    PROCESS = "process", "Process update"
    TRAINING = "training", "Training need"


class ActionPriority(models.TextChoices):
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


class ActionStatus(models.TextChoices):
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    WONT_DO = "wont_do", "Won't do"


class ActionItem(models.Model):
    """A follow-up action of an incident (from its review, or added from the incident): owned,
    dated, reminded before and after its due date, and listed in the incident's report."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="action_items")
    review = models.ForeignKey(
        Review, null=True, blank=True, on_delete=models.SET_NULL, related_name="action_items"
    )
    kind = models.CharField(max_length=14, choices=ActionKind.choices)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Markdown.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="action_items"
    )
    due_date = models.DateField()
    priority = models.CharField(
        max_length=8, choices=ActionPriority.choices, default=ActionPriority.MEDIUM
    )
    status = models.CharField(
        max_length=12, choices=ActionStatus.choices, default=ActionStatus.OPEN
    )
    wont_do_reason = models.TextField(blank=True)
    tracker_url = models.URLField(
        "tracker link", max_length=500, blank=True, help_text="Jira or GitHub issue."
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.JSONField(
        default=list, blank=True, help_text="Reminders already sent, e.g. ['before', 'due']."
    )
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [
            models.Index(
                fields=["next_reminder_at"],
                name="action_item_reminder_due",
                condition=Q(status__in=["open", "in_progress"]),
            ),
            models.Index(fields=["owner", "status"], name="action_item_owner"),
        ]

    def __str__(self) -> str:
        return self.title


class DocumentationClock(models.Model):
    """§4.2 step 4's 48-hour rule for one resolved incident: the report (its fields and
    lessons learned) is due ``documentation_hours`` after resolution; the incident manager is
    reminded before; a miss is recorded once."""

    incident = models.OneToOneField(
        Incident, on_delete=models.CASCADE, related_name="documentation_clock"
    )
    resolved_at = models.DateTimeField()
    due_at = models.DateTimeField()
    reminder_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    missed_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"Documentation of {self.incident}"


class KnowledgeArticle(models.Model):
    """A knowledge-base article (§4.2 step 4, §8.3): lessons learned from a published review,
    or written by hand; Markdown, sanitized; linked to the services it concerns."""

    title = models.CharField(max_length=200)
    body = models.TextField(help_text="Markdown. Raw HTML is shown as text.")
    body_html = models.TextField(blank=True, editable=False)
    services = models.ManyToManyField(Service, blank=True, related_name="knowledge_articles")
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review = models.OneToOneField(
        Review, null=True, blank=True, on_delete=models.SET_NULL, related_name="article"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(m2m_fields=[services])

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title


class RunbookLink(models.Model):
    """A runbook or documentation link of a service (§8.3), shown on its incidents' pages."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="runbook_links")
    title = models.CharField(max_length=200)
    url = models.URLField(max_length=500)
    position = models.PositiveIntegerField(default=0)
    history = HistoricalRecords()

    class Meta:
        ordering = ["service", "position", "id"]

    def __str__(self) -> str:
        return f"{self.service}: {self.title}"
