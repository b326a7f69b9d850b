"""Services (components), incidents and their lifecycle, role assignments."""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django_fsm import FSMField, transition
from simple_history.models import HistoricalRecords
from simple_history.signals import (
    post_create_historical_m2m_records,
    pre_create_historical_m2m_records,
)

from ..bulk import rows_insert
from .policy import Level, ResponseRole, SeverityLevel


class ServiceKind(models.TextChoices):
    """The kinds of thing the procedure covers (§1.2)."""

    PRODUCTION = "production", "Production system"
    CUSTOMER_APP = "customer_app", "Customer-facing application"
    INTERNAL = "internal", "Internal business system"
    INFRASTRUCTURE = "infrastructure", "Infrastructure component"
    THIRD_PARTY = "third_party", "Third-party dependency"


class Tier(models.IntegerChoices):
    TIER_1 = 1, "Tier 1 – business critical"
    TIER_2 = 2, "Tier 2 – important"
    TIER_3 = 3, "Tier 3 – supporting"


class Service(models.Model):
    """A service or component that incidents affect and the status page lists."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    public_name = models.CharField(
        max_length=120, blank=True, help_text="Name on the public status page; blank hides it."
    )
    description = models.TextField(blank=True)
    kind = models.CharField(
        max_length=20, choices=ServiceKind.choices, default=ServiceKind.PRODUCTION
    )
    tier = models.PositiveSmallIntegerField(choices=Tier.choices, default=Tier.TIER_2)
    customer_facing = models.BooleanField(default=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_services",
    )
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Status(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    INVESTIGATING = "investigating", "Investigating"
    MITIGATING = "mitigating", "Mitigating"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (
    Status.OPEN,
    Status.ACKNOWLEDGED,
    Status.INVESTIGATING,
    Status.MITIGATING,
    Status.MONITORING,
)
WORKING_STATUSES = ACTIVE_STATUSES[1:]


class ReportStatus(models.TextChoices):
    """The report-level status of §6.2, derived from the lifecycle status."""

    OPEN = "Open"
    IN_PROGRESS = "In Progress"
    RESOLVED = "Resolved"
    CLOSED = "Closed"


REPORT_STATUS = {
    Status.OPEN: ReportStatus.OPEN,
    Status.ACKNOWLEDGED: ReportStatus.IN_PROGRESS,
    Status.INVESTIGATING: ReportStatus.IN_PROGRESS,
    Status.MITIGATING: ReportStatus.IN_PROGRESS,
    Status.MONITORING: ReportStatus.IN_PROGRESS,
    Status.RESOLVED: ReportStatus.RESOLVED,
    Status.CLOSED: ReportStatus.CLOSED,
    Status.CANCELLED: ReportStatus.CLOSED,
}


class DetectionSource(models.TextChoices):
    """Detection sources of §4.1."""

    MONITORING = "monitoring", "Monitoring alert"
    CUSTOMER_REPORT = "customer_report", "Customer report"
    SUPPORT_ESCALATION = "support_escalation", "Support escalation"
    SECURITY_MONITORING = "security_monitoring", "Security monitoring"
    THIRD_PARTY = "third_party", "Third-party notification"
    ROUTINE_CHECK = "routine_check", "Routine system check"


# Fields a close needs filled in (§6.2 report); resolve needs the resolution.
CLOSE_REQUIRED_FIELDS = ("summary", "root_cause", "resolution", "business_impact")
RESOLVE_REQUIRED_FIELDS = ("resolution",)

# Timestamps that must be in this order when set (§6.1 timeline integrity).
ORDERED_TIMESTAMPS = (
    "impact_started_at",
    "detected_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
)


def missing_fields(incident: Incident, fields: tuple[str, ...]) -> list[str]:
    return [name for name in fields if not (getattr(incident, name) or "").strip()]


def _can_resolve(incident: Incident) -> bool:
    return not missing_fields(incident, RESOLVE_REQUIRED_FIELDS)


def _can_close(incident: Incident) -> bool:
    return not missing_fields(incident, CLOSE_REQUIRED_FIELDS)


def timestamp_order_errors(values: dict[str, datetime | None]) -> dict[str, str]:
    """Return {field: message} for every set timestamp earlier than an earlier-stage one."""
    errors: dict[str, str] = {}
    previous_name, previous_value = None, None
    for name in ORDERED_TIMESTAMPS:
        value = values.get(name)
        if value is None:
            continue
        if previous_value is not None and value < previous_value:
            label = Incident._meta.get_field(name).verbose_name
            before = Incident._meta.get_field(previous_name).verbose_name
            errors[name] = f"{label.capitalize()} cannot be earlier than {before}."
        previous_name, previous_value = name, value
    return errors


class IncidentQuerySet(models.QuerySet):
    def active(self) -> IncidentQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def response_breached(self, now: datetime | None = None) -> IncidentQuerySet:
        now = now or timezone.now()
        return self.filter(_response_breached_q(now))

    def resolution_breached(self, now: datetime | None = None) -> IncidentQuerySet:
        now = now or timezone.now()
        return self.filter(_resolution_breached_q(now))

    def breached(self, now: datetime | None = None) -> IncidentQuerySet:
        now = now or timezone.now()
        return self.filter(_response_breached_q(now) | _resolution_breached_q(now))

    def not_breached(self, now: datetime | None = None) -> IncidentQuerySet:
        now = now or timezone.now()
        return self.exclude(_response_breached_q(now) | _resolution_breached_q(now))


def _response_breached_q(now: datetime) -> Q:
    late_ack = Q(acknowledged_at__isnull=False, acknowledged_at__gt=models.F("response_due_at"))
    still_waiting = Q(
        acknowledged_at__isnull=True, response_due_at__lt=now, status__in=ACTIVE_STATUSES
    )
    return Q(response_breach_recorded=True) | late_ack | still_waiting


def _resolution_breached_q(now: datetime) -> Q:
    late = Q(resolved_at__isnull=False, resolved_at__gt=models.F("resolution_due_at"))
    still_open = Q(resolved_at__isnull=True, resolution_due_at__lt=now, status__in=ACTIVE_STATUSES)
    return Q(resolution_breach_recorded=True) | late | still_open


class IncidentHistoricalRecords(HistoricalRecords):
    """simple-history's records of an incident, with one difference: the first record of a new
    incident copies the service links that creation has just inserted and hands over as
    ``_new_service_links`` (``incidents.services.creation``), instead of reading them back."""

    def create_historical_record_m2ms(self, history_instance, instance):
        links = instance.__dict__.pop("_new_service_links", None)
        if links is None or any(link.pk is None for link in links):
            super().create_historical_record_m2ms(history_instance, instance)
            return
        for field in history_instance._history_m2m_fields:
            model = self.m2m_models[field]
            columns = [f.attname for f in getattr(instance, field.name).through._meta.fields]
            rows = [
                model(history=history_instance, **{name: getattr(link, name) for name in columns})
                for link in links
            ]
            pre_create_historical_m2m_records.send(
                sender=model,
                rows=rows,
                history_instance=history_instance,
                instance=instance,
                field=field,
            )
            created = model.objects.bulk_create(rows)
            post_create_historical_m2m_records.send(
                sender=model,
                created_rows=created,
                history_instance=history_instance,
                instance=instance,
                field=field,
            )

    def create_first_records(self, items: list[tuple[Any, list[Any], Any]], *, reason: str) -> None:
        """The first history records ("+") of new incidents, each with the service links
        creation has just inserted for it, as :meth:`create_historical_record` writes one:
        one INSERT for the records and one for their links, however many incidents.
        ``items``: (incident, its links, who created it)."""
        if not items:
            return
        # The descriptor itself: reading ``Incident.history`` builds a manager class each time
        # (``HistoryManager.from_queryset``), about 0.2 ms.
        history = inspect.getattr_static(type(items[0][0]), self.manager_name).model
        records = []
        for instance, _links, actor in items:
            instance._history_user = actor
            records.append(
                history(
                    history_date=getattr(instance, "_history_date", timezone.now()),
                    history_type="+",
                    history_user=self.get_history_user(instance),
                    history_change_reason=reason[:100],
                    **{
                        f.attname: getattr(instance, f.attname)
                        for f in self.fields_included(instance)
                    },
                )
            )
        rows_insert(records)
        rows: dict[Any, list[Any]] = {}
        for record, (instance, links, _actor) in zip(records, items, strict=True):
            for field in record._history_m2m_fields:
                model = self.m2m_models[field]
                columns = [f.attname for f in getattr(instance, field.name).through._meta.fields]
                rows.setdefault(model, []).extend(
                    model(history=record, **{name: getattr(link, name) for name in columns})
                    for link in links
                )
        for created in rows.values():
            if created:
                rows_insert(created)


# The incident's history, services included; kept by name so that a new incident's first
# record can be written once its services are set (``incidents.services.creation``).
INCIDENT_HISTORY = IncidentHistoricalRecords(m2m_fields=["services"])


class Incident(models.Model):
    """An incident (§2, §4.2, §6). Its status changes only through the lifecycle services."""

    number = models.CharField("ID", max_length=24, unique=True, editable=False)
    day = models.DateField(editable=False)
    sequence = models.PositiveIntegerField(editable=False)

    title = models.CharField(max_length=200)
    summary = models.TextField(
        blank=True, help_text="Brief description of the incident and impact."
    )
    severity = models.ForeignKey(
        SeverityLevel, to_field="level", on_delete=models.PROTECT, related_name="incidents"
    )
    impact = models.CharField(max_length=10, choices=Level.choices, default=Level.MEDIUM)
    urgency = models.CharField(max_length=10, choices=Level.choices, default=Level.MEDIUM)
    priority = models.PositiveSmallIntegerField(editable=False, db_index=True)
    status = FSMField(max_length=20, choices=Status.choices, default=Status.OPEN)

    detection_source = models.CharField(
        max_length=30, choices=DetectionSource.choices, default=DetectionSource.MONITORING
    )
    services = models.ManyToManyField(Service, blank=True, related_name="incidents")
    customer_facing = models.BooleanField(default=False)
    affected_users = models.PositiveIntegerField(
        null=True, blank=True, help_text="Estimated number of affected users."
    )
    business_impact = models.TextField(
        blank=True, help_text="Quantified impact on users, revenue, reputation."
    )
    root_cause = models.TextField(blank=True)
    resolution = models.TextField(blank=True, help_text="Steps taken to resolve the incident.")
    lessons_learned = models.TextField(blank=True)

    cancel_reason = models.TextField(blank=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="duplicates"
    )

    impact_started_at = models.DateTimeField("impact started", null=True, blank=True)
    detected_at = models.DateTimeField("detected", default=timezone.now)
    acknowledged_at = models.DateTimeField("acknowledged", null=True, blank=True, editable=False)
    mitigated_at = models.DateTimeField("mitigated", null=True, blank=True, editable=False)
    resolved_at = models.DateTimeField("resolved", null=True, blank=True, editable=False)
    closed_at = models.DateTimeField("closed", null=True, blank=True, editable=False)
    cancelled_at = models.DateTimeField("cancelled", null=True, blank=True, editable=False)

    response_due_at = models.DateTimeField("response due", editable=False)
    resolution_due_at = models.DateTimeField("resolution due", editable=False)
    # Set in the transaction that records an SlaBreach of the target, never cleared: a due
    # time moved later afterwards (a lower severity on a running clock, a reopened incident)
    # cannot turn a recorded breach back into a met target.
    response_breach_recorded = models.BooleanField(default=False, editable=False)
    resolution_breach_recorded = models.BooleanField(default=False, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    history = INCIDENT_HISTORY
    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "sequence"], name="incident_day_sequence_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-detected_at"], name="incident_status_detected"),
            models.Index(fields=["-detected_at"], name="incident_detected"),
            models.Index(fields=["severity", "status"], name="incident_severity_status"),
            models.Index(fields=["response_due_at"], name="incident_response_due"),
            models.Index(fields=["resolution_due_at"], name="incident_resolution_due"),
            models.Index(fields=["-created_at"], name="incident_created"),
        ]
        permissions = [
            ("acknowledge_incident", "Can acknowledge an incident"),
            ("investigate_incident", "Can move an incident to investigating"),
            ("mitigate_incident", "Can move an incident to mitigating"),
            ("monitor_incident", "Can move an incident to monitoring"),
            ("resolve_incident", "Can resolve an incident"),
            ("reopen_incident", "Can reopen a resolved incident"),
            ("close_incident", "Can close an incident"),
            ("cancel_incident", "Can cancel an incident"),
            ("change_incident_severity", "Can change an incident's severity"),
            ("assign_incident_roles", "Can assign response roles on an incident"),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("admin:incidents_incident_change", args=[self.pk])

    # --- derived state ---------------------------------------------------------------------------

    @property
    def report_status(self) -> str:
        return REPORT_STATUS[self.status].value

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def response_breached_at(self, now: datetime | None = None) -> bool:
        if self.response_breach_recorded:
            return True
        if self.acknowledged_at is not None:
            return self.acknowledged_at > self.response_due_at
        return self.is_active and (now or timezone.now()) > self.response_due_at

    def resolution_breached_at(self, now: datetime | None = None) -> bool:
        if self.resolution_breach_recorded:
            return True
        if self.resolved_at is not None:
            return self.resolved_at > self.resolution_due_at
        return self.is_active and (now or timezone.now()) > self.resolution_due_at

    @property
    def response_breached(self) -> bool:
        return self.response_breached_at()

    @property
    def resolution_breached(self) -> bool:
        return self.resolution_breached_at()

    def clean(self) -> None:
        errors = timestamp_order_errors({name: getattr(self, name) for name in ORDERED_TIMESTAMPS})
        if errors:
            raise ValidationError(errors)

    # --- lifecycle: transitions only set fields; the services in incidents.services.lifecycle
    # lock the row, check permission and guards, and write the timeline ------------------------

    @transition(
        field=status,
        source=Status.OPEN,
        target=Status.ACKNOWLEDGED,
        permission="incidents.acknowledge_incident",
    )
    def acknowledge(self, *, at: datetime) -> None:
        self.acknowledged_at = at

    @transition(
        field=status,
        source=[Status.OPEN, Status.ACKNOWLEDGED, Status.MITIGATING, Status.MONITORING],
        target=Status.INVESTIGATING,
        permission="incidents.investigate_incident",
    )
    def investigate(self, *, at: datetime) -> None:
        self.acknowledged_at = self.acknowledged_at or at

    @transition(
        field=status,
        source=[Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MONITORING],
        target=Status.MITIGATING,
        permission="incidents.mitigate_incident",
    )
    def mitigate(self, *, at: datetime) -> None:
        self.acknowledged_at = self.acknowledged_at or at

    @transition(
        field=status,
        source=[Status.OPEN, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATING],
        target=Status.MONITORING,
        permission="incidents.monitor_incident",
    )
    def monitor(self, *, at: datetime) -> None:
        self.acknowledged_at = self.acknowledged_at or at
        self.mitigated_at = self.mitigated_at or at

    @transition(
        field=status,
        source=list(ACTIVE_STATUSES),
        target=Status.RESOLVED,
        conditions=[_can_resolve],
        permission="incidents.resolve_incident",
    )
    def resolve(self, *, at: datetime) -> None:
        self.acknowledged_at = self.acknowledged_at or at
        self.mitigated_at = self.mitigated_at or at
        self.resolved_at = at

    @transition(
        field=status,
        source=Status.RESOLVED,
        target=Status.INVESTIGATING,
        permission="incidents.reopen_incident",
    )
    def reopen(self, *, at: datetime) -> None:
        self.resolved_at = None

    @transition(
        field=status,
        source=Status.RESOLVED,
        target=Status.CLOSED,
        conditions=[_can_close],
        permission="incidents.close_incident",
    )
    def close(self, *, at: datetime) -> None:
        self.closed_at = at

    @transition(
        field=status,
        source=list(ACTIVE_STATUSES),
        target=Status.CANCELLED,
        permission="incidents.cancel_incident",
    )
    def cancel(self, *, at: datetime, reason: str, duplicate_of: Incident | None) -> None:
        self.cancelled_at = at
        self.cancel_reason = reason
        self.duplicate_of = duplicate_of


class IncidentDaySequence(models.Model):
    """The last sequence number handed out for a day; its row lock serialises ID allocation."""

    day = models.DateField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day}: {self.last}"


class RoleAssignment(models.Model):
    """Who holds a response role (§3.1) on one incident."""

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="role_assignments"
    )
    role = models.ForeignKey(ResponseRole, on_delete=models.PROTECT, related_name="assignments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="incident_roles"
    )
    assigned_at = models.DateTimeField(default=timezone.now)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["role__position"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "role"], name="role_assignment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.user}"
