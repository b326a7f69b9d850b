"""Problems reported by people and checks rather than by monitoring (§4.1): customer reports,
support escalations, third-party notifications, routine system checks, and the inbound
emails they arrive in. Each report is kept as it was received, with its reporter."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .incident import DetectionSource, Incident
from .timeline import Source


class ReportKind(models.TextChoices):
    """The §4.1 detection sources a person or a check reports through (same values)."""

    CUSTOMER_REPORT = DetectionSource.CUSTOMER_REPORT.value, "Customer report"
    SUPPORT_ESCALATION = DetectionSource.SUPPORT_ESCALATION.value, "Support escalation"
    THIRD_PARTY = DetectionSource.THIRD_PARTY.value, "Third-party notification"
    ROUTINE_CHECK = DetectionSource.ROUTINE_CHECK.value, "Routine system check"


class IncomingReport(models.Model):
    """One report as received: who reported what, through which door, and the incident it
    opened or was appended to. Written only by ``incidents.services.reports``."""

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="incoming_reports"
    )
    opened_incident = models.BooleanField(
        default=False, help_text="The report opened the incident (rather than being appended)."
    )
    kind = models.CharField(max_length=30, choices=ReportKind.choices)
    channel = models.CharField(
        max_length=10, choices=Source.choices, help_text="Admin form, API or inbound email."
    )
    reporter_name = models.CharField(max_length=200, blank=True)
    reporter_email = models.EmailField(blank=True)
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField()
    services = models.JSONField(
        default=list, blank=True, help_text="Slugs of the services the reporter named."
    )
    severity = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The severity the reporter gave, if any."
    )
    message_id = models.CharField(
        max_length=255,
        blank=True,
        help_text="Inbound email: the Message-ID, so a redelivered message is taken once.",
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The staff member or API user who filed it (none for inbound email).",
    )
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message_id"],
                condition=~Q(message_id=""),
                name="incoming_report_message_once",
            ),
        ]
        indexes = [
            models.Index(fields=["incident", "received_at"], name="incoming_report_incident"),
            models.Index(fields=["-received_at"], name="incoming_report_received"),
        ]

    def __str__(self) -> str:
        who = self.reporter_name or self.reporter_email or "unknown reporter"
        return f"{self.get_kind_display()} from {who}"

    @property
    def reporter_label(self) -> str:
        if self.reporter_name and self.reporter_email:
            return f"{self.reporter_name} <{self.reporter_email}>"
        return self.reporter_name or self.reporter_email or "an unnamed reporter"
