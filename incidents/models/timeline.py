"""The incident timeline (§6.1): a chronological, append-only record of what happened."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from ..timeformat import when
from .incident import Incident


class Source(models.TextChoices):
    """Where an action came from; every service takes one."""

    ADMIN = "admin", "Admin"
    API = "api", "API"
    WEBHOOK = "webhook", "Webhook"
    EMAIL = "email", "Email"
    SYSTEM = "system", "System"


class Kind(models.TextChoices):
    CREATED = "created", "Created"
    NOTE = "note", "Note"
    DECISION = "decision", "Decision"
    STATUS = "status", "Status change"
    SEVERITY = "severity", "Severity change"
    PRIORITY = "priority", "Priority change"
    ROLE = "role", "Role assignment"
    UPDATE = "update", "Details updated"
    SLA = "sla", "SLA"
    NOTIFICATION = "notification", "Notification"
    ESCALATION = "escalation", "Escalation"
    ALERT = "alert", "Alert"
    COMMUNICATION = "communication", "Communication"
    SYSTEM = "system", "Vigil itself"


class AppendOnlyError(Exception):
    """Raised on any attempt to edit or delete a timeline entry."""


class TimelineQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Timeline entries are never edited.")

    def delete(self):
        raise AppendOnlyError("Timeline entries are never deleted.")


class TimelineEntry(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="timeline")
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    objects = TimelineQuerySet.as_manager()

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["incident", "occurred_at", "id"], name="timeline_order")]
        verbose_name_plural = "timeline entries"

    def __str__(self) -> str:
        return f"{when(self.occurred_at)} {self.get_kind_display()}: {self.message[:60]}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("Timeline entries are never edited.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Timeline entries are never deleted.")

    @property
    def actor_label(self) -> str:
        if self.actor_id is None:
            return "Vigil" if self.source == Source.SYSTEM else self.get_source_display()
        return self.actor.get_full_name() or self.actor.get_username()
