"""Durable incident events: what happened to an incident, recorded in the transaction that caused
it, and which of the apps following incidents have handled it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .incident import Incident
from .timeline import Source


class EventStatus(models.TextChoices):
    """An event's work: every subscribed handler to run once (see ``incidents.queue``)."""

    PENDING = "pending", "Waiting for its handlers"
    RUNNING = "running", "Being handled"
    DONE = "done", "Handled"
    FAILED = "failed", "A handler gave up"


class IncidentEvent(models.Model):
    """One event of one incident (``incident_created``, ``incident_transitioned``, ...).

    Written by ``incidents.events.announce`` in the causing transaction: it commits with the
    change or not at all. Its id is monotonic, and the lifecycle services lock the incident row
    before announcing, so an incident's events commit in id order; the dispatcher handles them
    in that order for each handler."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    name = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True, help_text="Ids and values, never objects.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    occurred_at = models.DateTimeField(default=timezone.now)
    urgent = models.BooleanField(
        default=False,
        help_text="Severity 1 or 2 when it happened: handled on the urgent queue.",
    )
    status = models.CharField(
        max_length=10, choices=EventStatus.choices, default=EventStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a task following it was published (empty: not yet, or it failed).",
    )
    last_error = models.TextField(blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="incident_event_due",
                condition=Q(status__in=["pending", "running"]),
            ),
            models.Index(
                fields=["incident", "id"],
                name="incident_event_open",
                condition=Q(status__in=["pending", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class HandlingStatus(models.TextChoices):
    DONE = "done", "Done"
    RETRYING = "retrying", "Failed, will retry"
    FAILED = "failed", "Failed, gave up"


class EventHandling(models.Model):
    """One handler's work on one event. UNIQUE (event, handler): the row is written in the
    handler's own transaction together with everything the handler wrote, so a handler's
    effects happen once per event, however many dispatchers run."""

    event = models.ForeignKey(IncidentEvent, on_delete=models.CASCADE, related_name="handlings")
    handler = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=HandlingStatus.choices)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["event_id", "handler"]
        constraints = [
            models.UniqueConstraint(fields=["event", "handler"], name="event_handled_once"),
        ]
        indexes = [
            models.Index(
                fields=["finished_at"], name="event_handling_failed", condition=Q(status="failed")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.handler} on {self.event}"
