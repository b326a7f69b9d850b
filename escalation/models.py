"""Escalation policy (§5.1 matrix), per-incident escalation state, escalation events, and the
notification outbox."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from incidents.models import (
    Channel,
    Contact,
    EscalationContact,
    Incident,
    MessageChannel,
    SeverityLevel,
)


class EscalationStep(models.Model):
    """One cell of the escalation matrix (§5.1): after ``elapsed`` since detection, an incident of
    this severity that is still unresolved escalates to ``target``."""

    severity = models.ForeignKey(
        SeverityLevel, to_field="level", on_delete=models.CASCADE, related_name="escalation_steps"
    )
    elapsed = models.DurationField(help_text="Time since detection, e.g. 00:30:00.")
    target = models.ForeignKey(EscalationContact, on_delete=models.PROTECT, related_name="steps")
    history = HistoricalRecords()

    class Meta:
        ordering = ["severity", "elapsed"]
        constraints = [
            models.UniqueConstraint(fields=["severity", "elapsed"], name="escalation_step_unique"),
        ]

    def __str__(self) -> str:
        return f"Sev {self.severity_id} after {self.elapsed}: {self.target}"


class IncidentEscalation(models.Model):
    """An incident's running escalation: the policy snapshot taken when it started and the
    next due time, found by the beat sweep through an index."""

    incident = models.OneToOneField(Incident, on_delete=models.CASCADE, related_name="escalation")
    started_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=200, blank=True)
    policy_snapshot = models.JSONField(
        default=dict,
        help_text="The escalation matrix and contacts in force when escalation started.",
    )
    severity_from = models.DateTimeField(
        "steps counted from",
        default=timezone.now,
        help_text=(
            "Steps of the current severity's row due from this time on fire: the detection "
            "time when escalation starts or severity rises, the moment of a drop or reopen."
        ),
    )
    next_due_at = models.DateTimeField(null=True, blank=True)
    ack_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_due_at"],
                name="escalation_next_due",
                condition=Q(stopped_at__isnull=True),
            ),
            models.Index(
                fields=["ack_due_at"],
                name="escalation_ack_due",
                condition=Q(stopped_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Escalation of {self.incident.number}"


class EscalationEvent(models.Model):
    """A step that fired for an incident. UNIQUE (incident, step) makes each fire exactly once."""

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="escalation_events"
    )
    step = models.CharField(
        max_length=40, help_text='Stable step key, e.g. "ack-timeout" or "sev1-0:30:00".'
    )
    severity = models.PositiveSmallIntegerField()
    elapsed = models.DurationField(null=True, blank=True)
    target = models.CharField(max_length=80, help_text="Escalation level or role notified.")
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(default=timezone.now)
    caught_up = models.BooleanField(
        "sent late", default=False, help_text="Fired late, after the scheduler was down."
    )

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "step"], name="escalation_event_once"),
        ]

    def __str__(self) -> str:
        return f"{self.incident.number}: {self.step} → {self.target}"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """The outbox: written in the transaction of the event that causes it, delivered after
    commit by a task, retried with backoff. One row per message (unique idempotency key);
    delivered at least once, every attempt carrying that key to the provider."""

    # Looked up by incident through notification_incident (incident, created_at): an index of
    # its own would only be one more to write on every insert and claim.
    incident = models.ForeignKey(
        Incident,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    recipient = models.CharField(
        max_length=255, help_text="Address used: email, phone number, Slack handle or URL name."
    )
    channel = models.CharField(max_length=10, choices=MessageChannel.choices)
    template = models.CharField(max_length=80)
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField()
    context = models.JSONField(default=dict, blank=True)
    ack_url = models.TextField(
        blank=True,
        help_text=(
            "The recipient's one-click acknowledge link, for channels that show it as a button. "
            "A credential of the recipient: never shown in the admin or the API."
        ),
    )
    reason = models.CharField(max_length=200)
    # Unique through the constraint notification_idempotency_key below, not unique=True, which
    # on PostgreSQL adds a second index for LIKE 'prefix%' lookups that nothing makes.
    idempotency_key = models.CharField(max_length=200)
    status = models.CharField(
        max_length=10, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its delivery task was published (empty: not yet, or it failed).",
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    urgent = models.BooleanField(
        default=False, help_text="About a Sev 1 or 2 incident: delivered on the urgent queue."
    )
    bulk = models.BooleanField(
        default=False,
        help_text="Part of a mailing: delivered on the bulk queue (its retries too), behind pages.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="notification_due",
                condition=Q(status__in=["pending", "sending"]),
            ),
            models.Index(fields=["incident", "created_at"], name="notification_incident"),
            models.Index(
                fields=["failed_at"], name="notification_failed", condition=Q(status="failed")
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], name="notification_idempotency_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.recipient}: {self.reason}"


class AckOutcome(models.TextChoices):
    ACKNOWLEDGED = "acknowledged", "Acknowledged the incident"
    ALREADY = "already", "Incident was already acknowledged"


class AckLinkUse(models.Model):
    """A one-click acknowledge link that was used. The UNIQUE nonce (each link carries its own)
    makes a link work once, however often or however concurrently it is posted."""

    nonce = models.CharField(max_length=32, unique=True)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="ack_link_uses")
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    used_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=12, choices=AckOutcome.choices)

    class Meta:
        ordering = ["-used_at", "-id"]
        verbose_name = "used acknowledge link"

    def __str__(self) -> str:
        return f"{self.incident.number}: acknowledge link {self.nonce[:8]}… used"
