"""SLA breaches noted on incidents; the unique row makes each breach recorded exactly once."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .incident import Incident


class SlaTarget(models.TextChoices):
    RESPONSE = "response", "Response"
    RESOLUTION = "resolution", "Resolution"


class SlaBreach(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="sla_breaches")
    target = models.CharField(max_length=12, choices=SlaTarget.choices)
    due_at = models.DateTimeField()
    noted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # A breach is a target missed at a given due time: noted once, however many sweeps
        # run; a severity change that moves the due time makes a new breach possible.
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "target", "due_at"], name="sla_breach_once_per_due"
            ),
        ]
        verbose_name = "SLA breach"

    def __str__(self) -> str:
        return f"{self.incident.number}: {self.get_target_display()} target breached"
