"""Measuring the procedure (§9.1, §9.2, §8.3): the KPI definitions (policy data, seeded with
§9.1's five targets, editable, audited), the KPI policy (how first-contact resolution is judged,
the time zone of a month, the monthly report's recipients, the survey), the stored monthly
rollups, the monthly reports and the customer satisfaction survey. Writes go through
``kpis.services``; no app below imports this one."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from simple_history.models import HistoricalRecords

from incidents.models import Incident, Service


class Measure(models.TextChoices):
    """What a KPI measures. Times are in minutes; first-contact resolution is a percentage of
    the resolved incidents; satisfaction is the mean 1-5 survey rating."""

    DETECT = "detect", "Time to detect (impact start → detection)"
    RESPOND = "respond", "Time to respond (detection → acknowledgement)"
    RESOLVE = "resolve", "Time to resolve (detection → resolution)"
    FIRST_CONTACT = "first_contact", "First contact resolution (% of resolved incidents)"
    SATISFACTION = "satisfaction", "Customer satisfaction (mean 1-5 survey rating)"


TIME_MEASURES = frozenset({Measure.DETECT, Measure.RESPOND, Measure.RESOLVE})


class Statistic(models.TextChoices):
    MEAN = "mean", "Mean"
    MEDIAN = "median", "Median"
    P90 = "p90", "90th percentile"


class KpiDefinition(models.Model):
    """One KPI: a measure, the incidents it is taken over (severities; empty is every
    severity), the statistic judged and its target. Lower is better for times; higher is better
    for first-contact resolution and satisfaction."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=120)
    measure = models.CharField(max_length=16, choices=Measure.choices)
    target = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        validators=[MinValueValidator(0)],
        help_text="Minutes for a time, a percentage for first-contact resolution, a score out "
        "of 5 for satisfaction.",
    )
    statistic = models.CharField(
        max_length=8,
        choices=Statistic.choices,
        default=Statistic.MEAN,
        help_text="The statistic judged against the target (mean, median and 90th percentile "
        "are all shown).",
    )
    severities = models.JSONField(
        default=list,
        blank=True,
        help_text="Severity levels measured, e.g. [1]. Empty: every severity.",
    )
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "KPI definition"

    def __str__(self) -> str:
        return self.name

    @property
    def higher_is_better(self) -> bool:
        return self.measure not in TIME_MEASURES

    @property
    def unit(self) -> str:
        if self.measure in TIME_MEASURES:
            return "minutes"
        return "percent" if self.measure == Measure.FIRST_CONTACT else "score"


class FirstContactRule(models.TextChoices):
    NO_ESCALATION = (
        "no_escalation",
        "Resolved without any escalation step firing and without a reopen",
    )
    FIRST_LEAD = (
        "first_lead",
        "Resolved by the first technical lead assigned (never reassigned), without a reopen",
    )


class KpiPolicy(models.Model):
    """The KPI policy (one row, seeded, editable, audited)."""

    first_contact_rule = models.CharField(
        max_length=16, choices=FirstContactRule.choices, default=FirstContactRule.NO_ESCALATION
    )
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="Where a month starts and ends, e.g. Europe/Paris.",
    )
    report_recipients = models.TextField(
        blank=True,
        help_text="Management contacts who get the monthly report: one e-mail address per line.",
    )
    survey_enabled = models.BooleanField(
        default=True,
        help_text="After a customer-facing incident resolves, its affected customers' contacts "
        "get a one-click satisfaction survey.",
    )
    survey_expiry_days = models.PositiveSmallIntegerField(
        default=14,
        validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text="A survey link works for this many days.",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "KPI policy"
        verbose_name_plural = "KPI policy"

    def __str__(self) -> str:
        return "KPI policy"


class KpiMonth(models.Model):
    """A calendar month (in the policy's time zone) whose rollups are stored. ``stale`` months
    are recomputed by the nightly task and after a late change to one of their incidents."""

    month = models.DateField(unique=True, help_text="The first day of the month.")
    stale = models.BooleanField(default=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-month"]
        indexes = [models.Index(fields=["stale", "month"], name="kpi_month_stale")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m}"


class KpiRollup(models.Model):
    """A KPI's figures for one month, over every severity in its scope (``severity`` null) or
    one, and over every service (``service`` null) or one."""

    month = models.ForeignKey(KpiMonth, on_delete=models.CASCADE, related_name="rollups")
    definition = models.ForeignKey(KpiDefinition, on_delete=models.CASCADE, related_name="rollups")
    severity = models.PositiveSmallIntegerField(null=True, blank=True)
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    sample = models.PositiveIntegerField(default=0)
    unmeasurable = models.PositiveIntegerField(default=0)
    mean = models.FloatField(null=True, blank=True)
    median = models.FloatField(null=True, blank=True)
    p90 = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "month",
                "definition",
                "severity",
                "service",
                condition=Q(severity__isnull=False, service__isnull=False),
                name="kpi_rollup_unique",
            ),
            models.UniqueConstraint(
                "month",
                "definition",
                "severity",
                condition=Q(severity__isnull=False, service__isnull=True),
                name="kpi_rollup_unique_all_services",
            ),
            models.UniqueConstraint(
                "month",
                "definition",
                "service",
                condition=Q(severity__isnull=True, service__isnull=False),
                name="kpi_rollup_unique_all_severities",
            ),
            models.UniqueConstraint(
                "month",
                "definition",
                condition=Q(severity__isnull=True, service__isnull=True),
                name="kpi_rollup_unique_all",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.definition_id} {self.month_id} sev={self.severity} service={self.service_id}"


class MonthlyReport(models.Model):
    """The monthly report (§9.2, §8.3) of one month: generated on the 1st for the previous
    month, regenerable on demand, e-mailed to the management contacts once."""

    month = models.DateField(unique=True, help_text="The first day of the month reported.")
    markdown = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)
    generated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    version = models.PositiveIntegerField(default=0)
    emailed_at = models.DateTimeField(null=True, blank=True)
    emailed_to = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-month"]
        permissions = [("regenerate_monthlyreport", "Can regenerate a monthly report")]

    def __str__(self) -> str:
        return f"Monthly report {self.month:%Y-%m}"


class SurveyInvitation(models.Model):
    """One customer contact's satisfaction survey for one incident: at most one per address and
    incident, so no rating is counted twice. The rating is recorded by the first click in the
    e-mail and may be changed through the same link until the contact sends the comment page
    (which finalises it) or the link expires."""

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="survey_invitations"
    )
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    customer_name = models.CharField(max_length=200, blank=True)
    contact = models.ForeignKey(
        "communications.CustomerContact",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    sent_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    rating = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    token_version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-sent_at", "-id"]
        constraints = [
            models.UniqueConstraint("incident", Lower("email"), name="survey_invitation_once"),
            models.CheckConstraint(
                condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=5),
                name="survey_rating_1_to_5",
            ),
        ]
        indexes = [models.Index(fields=["incident", "rated_at"], name="survey_incident_rated")]

    def __str__(self) -> str:
        return f"Survey {self.incident_id} → {self.email}"
