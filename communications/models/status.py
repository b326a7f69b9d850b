"""Public communication (procedure §3.1, §4.2 steps 2-3, §5.2): the status page's components and
their status history, status updates (public incident posts) with their approval workflow, the
first-update clock of the 30-minute rule, scheduled maintenance, and the policy and page settings
that govern them. Writes go through ``communications.services``."""

from __future__ import annotations

__all__ = [
    "CommunicationPolicy",
    "Component",
    "ComponentGroup",
    "ComponentStatus",
    "ComponentStatusInterval",
    "FirstUpdateClock",
    "Maintenance",
    "MaintenanceStatus",
    "StatusPageSettings",
    "StatusUpdate",
    "StatusUpdateComponent",
    "UpdateKind",
    "UpdateState",
    "UpdateStatus",
    "default_approval_severities",
    "default_reminder_minutes",
    "default_social_severities",
]

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from incidents.models import Incident, Service
from incidents.timeformat import when


class ComponentStatus(models.TextChoices):
    """A component's public status: the Statuspage vocabulary, in order of gravity."""

    OPERATIONAL = "operational", "Operational"
    DEGRADED_PERFORMANCE = "degraded_performance", "Degraded performance"
    PARTIAL_OUTAGE = "partial_outage", "Partial outage"
    MAJOR_OUTAGE = "major_outage", "Major outage"
    UNDER_MAINTENANCE = "under_maintenance", "Under maintenance"


class UpdateStatus(models.TextChoices):
    """The public status an update gives its incident (Statuspage's incident statuses)."""

    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"
    POSTMORTEM = "postmortem", "Postmortem"


class UpdateState(models.TextChoices):
    """Where an update is in its workflow: draft -> approved -> published."""

    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved"
    PUBLISHED = "published", "Published"


class UpdateKind(models.TextChoices):
    UPDATE = "update", "Update"
    RESTORATION = "restoration", "Restoration notice"


class MaintenanceStatus(models.TextChoices):
    """Statuspage's scheduled-maintenance statuses (plus cancelled)."""

    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In progress"
    VERIFYING = "verifying", "Verifying"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


def default_approval_severities() -> list[int]:
    return [1, 2]


def default_reminder_minutes() -> list[int]:
    return [15, 25]


def default_social_severities() -> list[int]:
    return [1]


class CommunicationPolicy(models.Model):
    """The communication policy (one row, seeded, editable, audited): which severities need the
    business liaison's approval before an update is published, and the 30-minute rule (§5.2:
    "status page updates within 30 minutes of confirmed incident") with its reminders."""

    approval_severities = models.JSONField(
        default=default_approval_severities,
        help_text="Severity levels whose status updates need the business liaison's approval "
        "before publishing, e.g. [1, 2].",
    )
    first_update_minutes = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="The first published update of a customer-facing incident is due this many "
        "minutes after the incident is confirmed (acknowledged).",
    )
    reminder_minutes = models.JSONField(
        default=default_reminder_minutes,
        help_text="Minutes after confirmation at which the communications lead is reminded "
        "while no update is published, e.g. [15, 25].",
    )
    customer_email_severities = models.JSONField(
        default=default_approval_severities,
        help_text="Severity levels whose published updates and restoration notice are emailed "
        "to the contacts of the affected customers (§5.2: Sev 1-2), e.g. [1, 2].",
    )
    direct_contact_severities = models.JSONField(
        default=default_approval_severities,
        help_text="Severity levels for which each affected enterprise customer with an SLA gets "
        "a direct-contact task for its account owner, e.g. [1, 2].",
    )
    direct_contact_due_minutes = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],
        help_text="A direct-contact task is due this many minutes after it is created.",
    )
    direct_contact_reminder_minutes = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(5)],
        help_text="The account owner is reminded every this many minutes until the task is done.",
    )
    stakeholder_reminder_lead_minutes = models.PositiveIntegerField(
        default=10,
        help_text="When nothing new was written for a stakeholder group, the communications lead "
        "is reminded this many minutes before its update is due.",
    )
    social_severities = models.JSONField(
        default=default_social_severities,
        help_text="Severity levels that count as a widespread outage, for which a social media "
        "post is drafted from each published update, e.g. [1].",
    )
    social_affected_users = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=10000,
        help_text="An incident with at least this many estimated affected users also counts as "
        "a widespread outage, whatever its severity. Empty: severity alone decides.",
    )
    confirmation_link_hours = models.PositiveIntegerField(
        default=48,
        validators=[MinValueValidator(1)],
        help_text="A subscription confirmation link expires after this many hours.",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "communication policy"
        verbose_name_plural = "communication policy"

    def __str__(self) -> str:
        return "Communication policy"


class StatusPageSettings(models.Model):
    """What the public status page calls itself (one row, editable, audited)."""

    name = models.CharField(max_length=120, default="Service status")
    url = models.URLField(
        blank=True, help_text="Public address of the status page (blank: VIGIL_BASE_URL/status/)."
    )
    logo_url = models.URLField(blank=True)
    home_url = models.URLField(blank=True, help_text="Link back to the company's site.")
    support_url = models.URLField(blank=True)
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="IANA time zone the page shows times in."
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "status page settings"
        verbose_name_plural = "status page settings"

    def __str__(self) -> str:
        return self.name


class ComponentGroup(models.Model):
    """A named group of components on the status page."""

    name = models.CharField(max_length=120, unique=True)
    description = models.CharField(max_length=300, blank=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class Component(models.Model):
    """A customer-visible service on the status page: its public name is the service's
    ``public_name``, its status the current one of its status intervals."""

    service = models.OneToOneField(Service, on_delete=models.PROTECT, related_name="component")
    group = models.ForeignKey(
        ComponentGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="components"
    )
    position = models.PositiveIntegerField(default=0)
    description = models.CharField(max_length=300, blank=True, help_text="Public description.")
    status = models.CharField(
        max_length=24, choices=ComponentStatus.choices, default=ComponentStatus.OPERATIONAL
    )
    status_changed_at = models.DateTimeField()
    showcase = models.BooleanField(default=True, help_text="Shown on the status page.")
    only_show_if_degraded = models.BooleanField(default=False)
    start_date = models.DateField(help_text="First day of its uptime history.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["group__position", "position", "service__public_name"]

    def __str__(self) -> str:
        return self.name

    @property
    def code(self) -> str:
        """The component's public id (its service's slug)."""
        return self.service.slug

    @property
    def name(self) -> str:
        return self.service.public_name or self.service.name


class ComponentStatusInterval(models.Model):
    """One stretch of time a component spent in one status: who set it, when, and why (which
    status update or maintenance). The open interval (``ended_at`` null) is the current one;
    uptime is computed from these rows."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="intervals")
    status = models.CharField(max_length=24, choices=ComponentStatus.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)
    status_update = models.ForeignKey(
        "StatusUpdate", null=True, blank=True, on_delete=models.PROTECT, related_name="intervals"
    )
    maintenance = models.ForeignKey(
        "Maintenance", null=True, blank=True, on_delete=models.PROTECT, related_name="intervals"
    )

    class Meta:
        ordering = ["component", "started_at"]
        indexes = [models.Index(fields=["component", "started_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["component"],
                condition=Q(ended_at__isnull=True),
                name="component_one_open_interval",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="component_interval_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.component}: {self.status} from {when(self.started_at)}"


class StatusUpdate(models.Model):
    """A public post about an incident. Drafted, approved where policy needs it, published;
    a published update never changes (a correction is a new update)."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="status_updates")
    kind = models.CharField(max_length=16, choices=UpdateKind.choices, default=UpdateKind.UPDATE)
    state = models.CharField(
        max_length=16, choices=UpdateState.choices, default=UpdateState.DRAFT, db_index=True
    )
    public_title = models.CharField(max_length=200)
    public_status = models.CharField(max_length=16, choices=UpdateStatus.choices)
    body = models.TextField(help_text="Markdown. Raw HTML is shown as text, never as markup.")
    body_html = models.TextField(blank=True, help_text="The body rendered and sanitized.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["incident", "created_at"]
        indexes = [models.Index(fields=["incident", "state", "published_at"])]
        permissions = [
            ("approve_statusupdate", "Can approve status updates (business liaison)"),
            ("publish_statusupdate", "Can publish status updates"),
        ]

    def __str__(self) -> str:
        return f"{self.incident.number}: {self.public_title} ({self.state})"


class StatusUpdateComponent(models.Model):
    """A component an update affects, and the status the update gives it when published
    (``old_status`` is recorded at publication)."""

    status_update = models.ForeignKey(
        StatusUpdate, on_delete=models.CASCADE, related_name="affected"
    )
    component = models.ForeignKey(Component, on_delete=models.PROTECT, related_name="+")
    new_status = models.CharField(max_length=24, choices=ComponentStatus.choices)
    old_status = models.CharField(max_length=24, choices=ComponentStatus.choices, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["status_update", "component"], name="status_update_component_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.component}: {self.new_status}"


class FirstUpdateClock(models.Model):
    """The 30-minute rule for one customer-facing incident: the first published update is due
    ``first_update_minutes`` after the incident is confirmed (acknowledged). The sweep claims
    rows by ``next_check_at`` (indexed); reminders and the miss are each recorded once."""

    incident = models.OneToOneField(
        Incident, on_delete=models.CASCADE, related_name="first_update_clock"
    )
    confirmed_at = models.DateTimeField()
    due_at = models.DateTimeField()
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    reminder_minutes = models.JSONField(
        default=list,
        blank=True,
        help_text="The policy's reminder points when the clock started, e.g. [15, 25]: a "
        "policy edit applies to clocks started after it.",
    )
    reminders_sent = models.JSONField(
        default=list, blank=True, help_text="Reminder minutes already sent, e.g. [15]."
    )
    met_at = models.DateTimeField(null=True, blank=True)
    missed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"First update of {self.incident.number} due {when(self.due_at)}"


class Maintenance(models.Model):
    """A planned maintenance window: its components are under maintenance from its start to
    its end, which move its status by themselves (beat)."""

    title = models.CharField(max_length=200)
    body = models.TextField(
        blank=True, help_text="Markdown. Raw HTML is shown as text, never as markup."
    )
    body_html = models.TextField(blank=True)
    status = models.CharField(
        max_length=16,
        choices=MaintenanceStatus.choices,
        default=MaintenanceStatus.SCHEDULED,
        db_index=True,
    )
    scheduled_for = models.DateTimeField(db_index=True)
    scheduled_until = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    verifying_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    components = models.ManyToManyField(Component, related_name="maintenances", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-scheduled_for"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scheduled_until__gt=models.F("scheduled_for")),
                name="maintenance_ends_after_it_starts",
            )
        ]

    def __str__(self) -> str:
        return self.title
