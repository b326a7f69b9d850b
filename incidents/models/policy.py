"""Policy as data: the procedure's tables (§2.1, §2.2, §3.1, §5.1) as editable, audited models."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords


class Channel(models.TextChoices):
    """Notification channels named by the procedure (§5.1) and the ones Vigil can deliver to."""

    PHONE = "phone", "Phone call"
    SMS = "sms", "SMS"
    SLACK = "slack", "Slack"
    EMAIL = "email", "Email"
    TEAMS = "teams", "Microsoft Teams"
    WEBHOOK = "webhook", "Webhook"


class MessageChannel(models.TextChoices):
    """Every channel the outbox delivers on: the policy's :class:`Channel` values (which
    people are paged and reminded on) plus the ones only customer-facing messaging uses — a
    status-page subscriber's own webhook URL, and the company's Mastodon account."""

    PHONE = "phone", "Phone call"
    SMS = "sms", "SMS"
    SLACK = "slack", "Slack"
    EMAIL = "email", "Email"
    TEAMS = "teams", "Microsoft Teams"
    WEBHOOK = "webhook", "Webhook"
    SUBSCRIBER = "subscriber", "Subscriber webhook"
    MASTODON = "mastodon", "Mastodon"


# The seeded policy holds placeholders such as "[Phone]"; calling or texting one is pointless.
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{5,}$")


def channel_address(channel: str, *, email: str = "", phone: str = "", slack: str = "") -> str:
    """A person's address on ``channel`` (email, phone or SMS number, Slack handle), or "" when
    they cannot be reached on it there: blank, or a phone number that is a placeholder."""
    if channel == Channel.EMAIL:
        return email.strip()
    if channel in (Channel.PHONE, Channel.SMS):
        number = phone.strip()
        return number if _PHONE.match(number) else ""
    if channel == Channel.SLACK:
        return slack.strip()
    return ""


class Level(models.TextChoices):
    """Impact and urgency levels of the priority matrix (§2.2)."""

    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


def validate_channels(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Give at least one notification channel as a list.")
    unknown = [item for item in value if item not in Channel.values]
    if unknown:
        raise ValidationError(
            "Unknown channel(s): %(unknown)s. Known: %(known)s.",
            params={"unknown": ", ".join(map(str, unknown)), "known": ", ".join(Channel.values)},
        )
    if len(set(value)) != len(value):
        raise ValidationError("A channel is listed twice.")


class SeverityLevel(models.Model):
    """A severity level (§2.1) with its response and resolution targets and channels (§5.1)."""

    level = models.PositiveSmallIntegerField(
        unique=True, validators=[MinValueValidator(1), MaxValueValidator(4)]
    )
    name = models.CharField(max_length=40)
    definition = models.TextField()
    business_impact = models.CharField(max_length=200)
    examples = models.TextField(help_text="One example per line.")
    response_target = models.DurationField(help_text="Time from detection to acknowledgement.")
    resolution_target = models.DurationField(help_text="Time from detection to resolution.")
    notification_channels = models.JSONField(
        default=list,
        validators=[validate_channels],
        help_text='Channels for the immediate notification, in order, e.g. ["phone", "slack"].',
    )
    default_impact = models.CharField(
        max_length=10,
        choices=Level.choices,
        default=Level.MEDIUM,
        help_text="Impact a new incident of this severity starts with when none is given.",
    )
    default_urgency = models.CharField(
        max_length=10,
        choices=Level.choices,
        default=Level.MEDIUM,
        help_text="Urgency a new incident of this severity starts with when none is given. "
        "Default impact × urgency in the priority matrix is the priority this severity "
        "expects.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["level"]

    def __str__(self) -> str:
        return f"Sev {self.level} – {self.name}"

    @property
    def example_list(self) -> list[str]:
        return [line.strip() for line in self.examples.splitlines() if line.strip()]

    def clean(self) -> None:
        for field in ("response_target", "resolution_target"):
            value = getattr(self, field)
            if value is not None and value <= timedelta(0):
                raise ValidationError({field: "A target must be longer than zero."})
        if (
            self.response_target
            and self.resolution_target
            and self.response_target > self.resolution_target
        ):
            raise ValidationError(
                {
                    "resolution_target": (
                        "The resolution target cannot be shorter than the response target."
                    )
                }
            )


class PriorityMatrixCell(models.Model):
    """One cell of the priority matrix (§2.2): urgency × impact → priority 1–4."""

    urgency = models.CharField(max_length=10, choices=Level.choices)
    impact = models.CharField(max_length=10, choices=Level.choices)
    priority = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(4)]
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["urgency", "impact"]
        constraints = [
            models.UniqueConstraint(fields=["urgency", "impact"], name="priority_cell_unique"),
        ]
        verbose_name = "priority matrix cell"

    def __str__(self) -> str:
        return f"Urgency {self.urgency} × impact {self.impact} → P{self.priority}"


class Contact(models.Model):
    """A person who can be reached: on a response role, an escalation level, a stakeholder list."""

    name = models.CharField(max_length=120)
    phone = models.CharField(max_length=40, blank=True, help_text="E.164, e.g. +14155550100.")
    email = models.EmailField(blank=True)
    slack_handle = models.CharField(max_length=80, blank=True, help_text="e.g. @jane or U0123ABC.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="contacts",
        help_text="The Vigil login of this person, so their one-click links act as them.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not (self.phone or self.email or self.slack_handle):
            raise ValidationError("A contact needs at least one of phone, email or Slack handle.")


class ResponseRole(models.Model):
    """A response role (§3.1) with its responsibilities and primary and backup contacts."""

    INCIDENT_MANAGER = "incident_manager"
    TECHNICAL_LEAD = "technical_lead"
    COMMUNICATIONS_LEAD = "communications_lead"
    BUSINESS_LIAISON = "business_liaison"

    key = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    responsibilities = models.TextField(help_text="One responsibility per line.")
    primary_contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.PROTECT, related_name="primary_for"
    )
    backup_contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.PROTECT, related_name="backup_for"
    )
    group = models.OneToOneField(
        Group,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Permission group whose members may act in this role.",
    )
    position = models.PositiveSmallIntegerField(default=0)
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def responsibility_list(self) -> list[str]:
        return [line.strip() for line in self.responsibilities.splitlines() if line.strip()]


class EscalationContact(models.Model):
    """An escalation level of §5.1 (IT Manager, CTO, CEO, Board) and who answers for it."""

    key = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.PROTECT)
    position = models.PositiveSmallIntegerField(default=0)
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class SeverityReasonRule(models.TextChoices):
    """When a change of an incident's severity needs a reason on the timeline."""

    NEVER = "never", "Never (a reason is always optional)"
    DROPS = "drops", "When it is lowered (less severe); optional when raised"
    ALWAYS = "always", "For every change"


class IncidentPolicy(models.Model):
    """The incident policy (one row, seeded, editable, audited): who owns a new incident, who
    takes a role by acknowledging a page, when a severity change needs a reason, and how far
    an incident's priority may stray from the one its severity expects."""

    declarer_is_incident_manager = models.BooleanField(
        "declarer becomes incident manager",
        default=True,
        help_text="Whoever logs an incident in the admin becomes its incident manager, unless "
        "one is named on the form.",
    )
    acknowledger_takes_role = models.BooleanField(
        "acknowledger takes the paged role",
        default=True,
        help_text="Acknowledging through a page (the one-click link) makes the acknowledger "
        "hold the response role they were paged for, when nobody holds it yet.",
    )
    severity_reason = models.CharField(
        "reason for a severity change",
        max_length=10,
        choices=SeverityReasonRule.choices,
        default=SeverityReasonRule.DROPS,
        help_text="When a person changing an incident's severity must say why (written on "
        "the timeline).",
    )
    priority_tolerance = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(3)],
        help_text="How many steps an incident's priority may differ from the one its severity "
        "expects (the severity's default impact × urgency in the priority matrix) before a "
        "person setting it must confirm it with a reason. 1: Sev 1 at P2 is fine, Sev 1 at "
        "P3 needs a reason. 3: never ask.",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "incident policy"
        verbose_name_plural = "incident policy"

    def __str__(self) -> str:
        return "Incident policy"
