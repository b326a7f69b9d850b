"""Where an integration's alerts go: routing rules that send them to a service with a default
severity, and maintenance windows in which they are recorded but open no incident."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from ..timeformat import when
from .detection import Integration
from .incident import Service
from .policy import SeverityLevel


class MaintenanceWindow(models.Model):
    """A window in which an integration's (or a service's) alerts are recorded but open no
    incident and page no one. Not the status page's announced maintenance (communications):
    this one is internal, about what monitoring says during planned work."""

    reason = models.CharField(max_length=200)
    integration = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="maintenance_windows",
    )
    service = models.ForeignKey(
        Service,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="maintenance_windows",
        help_text="Every alert routed to this service, from any integration.",
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-starts_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")),
                name="maintenance_window_ends_after_it_starts",
            ),
            models.CheckConstraint(
                condition=Q(integration__isnull=False) | Q(service__isnull=False),
                name="maintenance_window_has_a_target",
            ),
        ]
        indexes = [models.Index(fields=["ends_at"], name="maintenance_window_ends")]

    def __str__(self) -> str:
        return f"{self.reason} ({when(self.starts_at)} – {when(self.ends_at)})"


class RoutingRule(models.Model):
    """Per integration: alerts whose labels match go to ``service`` with ``severity`` as
    their default severity (the §7.2 alert rules and the sender's own severity still come
    first). The first enabled rule by position wins; none: the integration's own."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="routing_rules"
    )
    position = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(1000)]
    )
    match = models.JSONField(
        default=dict,
        help_text=(
            'Labels and the values they must have, e.g. {"team": "payments", "env": '
            '["prod", "production"]}: every label must match one of its values '
            "(case-insensitive)."
        ),
    )
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    severity = models.ForeignKey(
        SeverityLevel,
        to_field="level",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Default severity of the matched alerts. Blank: the integration's.",
    )
    enabled = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["integration", "position", "id"]

    def __str__(self) -> str:
        return f"{self.integration}: {self.match}"
