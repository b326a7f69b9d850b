"""Alerts (§7): the alerts made from integrations' deliveries, the groups that gather them
into one incident, and the alert rules of §7.2 that give an alert its severity and action."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from .detection import AlertAction, Integration, validate_string_list
from .incident import Incident
from .policy import SeverityLevel


class AlertGroup(models.Model):
    """Alerts of one sender that belong together (one Alertmanager group, one PagerDuty
    dedup key, one value of the grouping labels) and the incident they currently feed.

    Its row lock serialises the processing of a group, so concurrent deliveries of one
    group open one incident, not one each.
    """

    integration = models.ForeignKey(
        Integration, on_delete=models.PROTECT, related_name="alert_groups"
    )
    key_hash = models.CharField(max_length=64)
    key = models.TextField(help_text="The group key as the sender gave it (or the labels).")
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.PROTECT, related_name="alert_groups"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["integration", "key_hash"], name="alert_group_unique"),
        ]

    def __str__(self) -> str:
        return self.key[:80]


class AlertStatus(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class AlertRule(models.Model):
    """A row of the alert configuration table (§7.2).

    An alert matches when its ``metric`` label equals ``key`` or its ``match_label`` label is
    one of ``match_values`` (case-insensitive); with a ``threshold``, a value read from the
    alert (Grafana ``values``, then labels, then annotations, under ``value_keys``) must also
    reach it. The first matching rule by ``position`` gives the severity and the action.
    """

    key = models.SlugField(
        max_length=40, unique=True, help_text="Stable metric key, e.g. error_rate."
    )
    name = models.CharField(max_length=80)
    match_label = models.CharField(max_length=100, default="alertname")
    match_values = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text='Values of the match label that mean this metric, e.g. ["HighErrorRate"].',
    )
    threshold = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="The alert's value must reach this (in the rule's unit) for the rule to apply.",
    )
    unit = models.CharField(max_length=20, blank=True, help_text='e.g. "s", "%", "per minute".')
    value_keys = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text=(
            "Where the value is read from, in order: keys of Grafana's values, then of the "
            "labels, then of the annotations. No value found: the threshold is not checked."
        ),
    )
    severity = models.ForeignKey(
        SeverityLevel, to_field="level", on_delete=models.PROTECT, related_name="alert_rules"
    )
    action = models.CharField(max_length=20, choices=AlertAction.choices)
    enabled = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(1000)]
    )
    description = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """One alert as its sender identifies it (fingerprint or dedup key), from firing to
    resolved. Repeats while it fires are counted on the same row: at most one firing alert
    per (integration, fingerprint), enforced by a partial unique constraint."""

    integration = models.ForeignKey(Integration, on_delete=models.PROTECT, related_name="alerts")
    group = models.ForeignKey(AlertGroup, on_delete=models.PROTECT, related_name="alerts")
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    fingerprint = models.CharField(max_length=255)
    status = models.CharField(
        max_length=10, choices=AlertStatus.choices, default=AlertStatus.FIRING
    )
    title = models.CharField(max_length=255)
    labels = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    raw = models.JSONField(default=dict, blank=True, help_text="The alert as last received.")
    severity = models.ForeignKey(
        SeverityLevel, to_field="level", on_delete=models.PROTECT, related_name="+"
    )
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    action = models.CharField(max_length=20, choices=AlertAction.choices, blank=True)
    value = models.FloatField(null=True, blank=True)
    starts_at = models.DateTimeField()
    starts_at_estimated = models.BooleanField(
        default=False,
        help_text="The sender's start time was missing or unreadable; the receipt time is used.",
    )
    ends_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    last_received_at = models.DateTimeField(default=timezone.now)
    count = models.PositiveIntegerField(default=1)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    maintenance = models.ForeignKey(
        "MaintenanceWindow",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="alerts",
        help_text="Received during this maintenance window: recorded, no incident, no page.",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "fingerprint"],
                condition=Q(status="firing"),
                name="alert_firing_once",
            ),
        ]
        indexes = [
            models.Index(fields=["incident", "status"], name="alert_incident_status"),
            models.Index(
                fields=["integration", "fingerprint", "-last_received_at"],
                name="alert_fingerprint_latest",
            ),
            models.Index(fields=["-received_at"], name="alert_received"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.get_status_display().lower()})"
