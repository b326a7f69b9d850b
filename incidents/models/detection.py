"""Detection (§4.1, §7): integrations that send alerts, how each proves who it is, their raw
deliveries, and the actions an alert rule can ask for. The alerts made from the deliveries are
in ``alerts``; where they go and when they stay quiet, in ``routing``. The field validators and
defaults stay here: the migrations name them by this module."""

from __future__ import annotations

import re
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from ..timeformat import when
from .incident import Incident, Service
from .policy import Level, SeverityLevel

KEY_BYTES = 16  # 32 hex characters, the length of a PagerDuty integration (routing) key
SECRET_BYTES = 32


def new_integration_key() -> str:
    return secrets.token_hex(KEY_BYTES)


def new_integration_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


class IntegrationKind(models.TextChoices):
    ALERTMANAGER = "alertmanager", "Prometheus Alertmanager"
    GRAFANA = "grafana", "Grafana alerting"
    PAGERDUTY = "pagerduty", "PagerDuty Events API v2"
    GENERIC = "generic", "Generic JSON (scripts, SIEM tools)"
    DATADOG = "datadog", "Datadog webhook"
    NEWRELIC = "newrelic", "New Relic workflow webhook"
    CLOUDWATCH = "cloudwatch", "AWS CloudWatch alarms through SNS"
    NAGIOS = "nagios", "Nagios / Icinga 2 notification command"
    ZABBIX = "zabbix", "Zabbix webhook media type"
    SPLUNK = "splunk", "Splunk alert action webhook"
    ELASTIC = "elastic", "Elastic / Kibana webhook connector"
    HEARTBEAT = "heartbeat", "Heartbeat ping (cron jobs, backups)"


class IntegrationAuth(models.TextChoices):
    """What proves a delivery comes from the sender, besides the key in the URL (always
    required). Each kind offers the schemes its sender can actually do."""

    HMAC = "hmac", "HMAC-SHA256 signature of the body (X-Vigil-Signature / sender's own)"
    BEARER = "bearer", "Authorization: Bearer <secret>"
    HEADER = "header", "A secret static header (name below, the secret as value)"
    BASIC = "basic", "HTTP Basic authentication (user vigil, the secret as password)"
    ROUTING_KEY = "routing_key", "The routing key in the event (PagerDuty)"
    SNS = "sns", "AWS SNS message signature (certificate from an allowed SNS host)"
    URL_KEY = "url_key", "The URL key alone (no further credential)"


# The credential each kind's sender can present when the integration names none: what the
# sender can actually do (README, "Integrations"). Alertmanager and Grafana without a secret
# fall back to the URL key alone.
DEFAULT_AUTH = {
    IntegrationKind.ALERTMANAGER: IntegrationAuth.BEARER,
    IntegrationKind.GRAFANA: IntegrationAuth.HMAC,
    IntegrationKind.PAGERDUTY: IntegrationAuth.ROUTING_KEY,
    IntegrationKind.GENERIC: IntegrationAuth.HMAC,
    IntegrationKind.DATADOG: IntegrationAuth.HEADER,
    IntegrationKind.NEWRELIC: IntegrationAuth.HEADER,
    IntegrationKind.CLOUDWATCH: IntegrationAuth.SNS,
    IntegrationKind.NAGIOS: IntegrationAuth.HMAC,
    IntegrationKind.ZABBIX: IntegrationAuth.HEADER,
    IntegrationKind.SPLUNK: IntegrationAuth.URL_KEY,
    IntegrationKind.ELASTIC: IntegrationAuth.HEADER,
    IntegrationKind.HEARTBEAT: IntegrationAuth.URL_KEY,
}


def default_auth(kind: str, secret: str) -> str:
    """The scheme an integration of ``kind`` with (or without) a secret uses by default."""
    if kind in (IntegrationKind.ALERTMANAGER, IntegrationKind.GRAFANA) and not secret:
        return IntegrationAuth.URL_KEY
    return DEFAULT_AUTH.get(kind, IntegrationAuth.HMAC)


_A = IntegrationAuth
# The schemes an administrator may choose for each kind: what that sender can present.
# Alertmanager cannot sign its body; Splunk's webhook action sends no headers at all; the
# routing key and SNS signatures belong to PagerDuty and CloudWatch alone.
ALLOWED_AUTH: dict[str, tuple[str, ...]] = {
    IntegrationKind.ALERTMANAGER: (_A.BEARER, _A.BASIC, _A.URL_KEY),
    IntegrationKind.GRAFANA: (_A.HMAC, _A.BASIC, _A.HEADER, _A.BEARER, _A.URL_KEY),
    IntegrationKind.PAGERDUTY: (_A.ROUTING_KEY,),
    IntegrationKind.GENERIC: (_A.HMAC, _A.HEADER, _A.BEARER, _A.BASIC),
    IntegrationKind.DATADOG: (_A.HEADER, _A.BASIC, _A.URL_KEY),
    IntegrationKind.NEWRELIC: (_A.HEADER, _A.BEARER, _A.BASIC, _A.URL_KEY),
    IntegrationKind.CLOUDWATCH: (_A.SNS,),
    IntegrationKind.NAGIOS: (_A.HMAC, _A.HEADER),
    IntegrationKind.ZABBIX: (_A.HEADER, _A.HMAC, _A.URL_KEY),
    IntegrationKind.SPLUNK: (_A.URL_KEY,),
    IntegrationKind.ELASTIC: (_A.HEADER, _A.BASIC, _A.URL_KEY),
    IntegrationKind.HEARTBEAT: (_A.URL_KEY,),
}
# Schemes whose credential is the integration's secret.
SECRET_AUTH = frozenset({_A.HMAC, _A.BEARER, _A.HEADER, _A.BASIC})
BASIC_AUTH_USER = "vigil"
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")
# Headers that carry something else (the request's framing, a proxy's word, another scheme's
# credential or signature): a secret static header may not take their name.
RESERVED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "cookie",
        "expect",
        "forwarded",
        "host",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "x-grafana-alerting-signature",
        "x-grafana-alerting-signature-timestamp",
        "x-vigil-signature",
        "x-vigil-timestamp",
    }
)


def auth_header_errors(name: str) -> list[str]:
    """Why ``name`` cannot be a secret static header's name (empty when it can)."""
    if not _HEADER_NAME.fullmatch(name or ""):
        return [
            "Give an HTTP header name of letters, digits and '-' (no underscores: proxies "
            "drop them), e.g. X-Vigil-Token."
        ]
    if name.lower() in RESERVED_HEADERS:
        return [
            f"{name} carries something else; choose another name (for Authorization, use "
            "the bearer or basic scheme)."
        ]
    return []


def validate_label_names(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError('Give a list of label names, e.g. ["service", "alertname"].')


def validate_string_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError('Give a list of strings, e.g. ["HighErrorRate"].')


class Integration(models.Model):
    """A sender of alerts (§7.3 monitoring tools) with its own URL key and secret.

    The key is part of the sender's URL (the PagerDuty routing key for PagerDuty senders);
    the secret is the Alertmanager bearer token, the Grafana HMAC secret or the generic hook's
    HMAC secret. PagerDuty senders carry only the routing key, so they have no secret.
    """

    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=IntegrationKind.choices)
    service = models.ForeignKey(
        Service,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="integrations",
        help_text="The service incidents opened from this sender's alerts affect.",
    )
    default_severity = models.ForeignKey(
        SeverityLevel,
        to_field="level",
        on_delete=models.PROTECT,
        default=3,
        related_name="+",
        help_text="Severity of alerts no alert rule matches and that carry no severity.",
    )
    key = models.CharField(max_length=64, unique=True, default=new_integration_key, editable=False)
    secret = models.CharField(
        max_length=128,
        blank=True,
        default=new_integration_secret,
        help_text=(
            "Alertmanager: the bearer token; Grafana and generic: the HMAC-SHA256 secret. "
            "Blank: Alertmanager and Grafana deliveries are accepted on the URL key alone. "
            "Not used by PagerDuty senders (the routing key is their credential)."
        ),
    )
    enabled = models.BooleanField(
        default=True, help_text="Deliveries to a disabled integration are refused (403)."
    )
    require_timestamp = models.BooleanField(
        "Require a signed timestamp",
        default=True,
        help_text=(
            "Generic and Grafana senders with a secret: refuse a signature that does not cover "
            "a timestamp (X-Vigil-Timestamp; Grafana's timestamp header). Signed timestamps "
            "are refused outside the replay window and accepted once. Off: also accept the "
            "signature of the body alone, which can be replayed (for senders not yet signing "
            "timestamps; integrations made before replay protection start off)."
        ),
    )
    auto_resolve = models.BooleanField(
        default=False,
        help_text=(
            "When every alert of an incident has resolved, move the incident to monitoring "
            "(never straight to resolved or closed)."
        ),
    )
    group_by = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_label_names],
        help_text=(
            "Grouping rule: label names whose values put alerts in one incident, e.g. "
            '["service"]. Empty: the sender\'s own grouping (Alertmanager and Grafana '
            "groupKey, PagerDuty dedup_key, the generic hook's group_key)."
        ),
    )
    auth = models.CharField(
        "authentication",
        max_length=12,
        choices=IntegrationAuth.choices,
        blank=True,
        help_text=(
            "What the sender proves itself with besides the URL key. Blank: the kind's "
            "default (see the README's integrations table)."
        ),
    )
    auth_header = models.CharField(
        max_length=100,
        blank=True,
        default="X-Vigil-Token",
        help_text="With a secret static header: the header's name; its value is the secret.",
    )
    # Heartbeat: silence is an alert too.
    heartbeat_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(60 * 24 * 31)],
        help_text=(
            "Expect a signal at least this often (minutes): a ping, or the heartbeat alert "
            "below. Nothing for this long opens an incident. Blank: no heartbeat."
        ),
    )
    heartbeat_alertname = models.CharField(
        max_length=100,
        blank=True,
        default="Watchdog",
        help_text=(
            "Alertmanager and Grafana: the always-firing alert (its alertname label) that is "
            "the heartbeat. It opens no incident."
        ),
    )
    heartbeat_severity = models.ForeignKey(
        SeverityLevel,
        to_field="level",
        on_delete=models.PROTECT,
        default=2,
        related_name="+",
        help_text="Severity of the incident opened when the heartbeat stops.",
    )
    last_signal_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="The last heartbeat received."
    )
    heartbeat_due_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When silence becomes an incident (last signal + interval).",
    )
    heartbeat_incident = models.ForeignKey(
        Incident,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        help_text='The open "no signal" incident, until the signal returns.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The secret stays out of the audit trail; its changes show as changes of updated_at.
    # Heartbeat bookkeeping changes on every signal: not audit material.
    history = HistoricalRecords(
        excluded_fields=["secret", "last_signal_at", "heartbeat_due_at", "heartbeat_incident"]
    )

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            models.Index(
                fields=["heartbeat_due_at"],
                name="integration_heartbeat_due",
                condition=Q(heartbeat_due_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_auth(self) -> str:
        """The scheme deliveries are checked with: the chosen one, or the kind's default."""
        return self.auth or default_auth(self.kind, self.secret)

    def clean(self) -> None:
        if self.kind == IntegrationKind.PAGERDUTY:
            self.secret = ""
        if self.kind == IntegrationKind.GENERIC and not self.secret:
            raise ValidationError({"secret": "The generic hook needs a secret to verify with."})
        allowed = ALLOWED_AUTH.get(self.kind, ())
        if self.auth and self.auth not in allowed:
            choices = ", ".join(allowed)
            raise ValidationError(
                {"auth": f"{self.get_kind_display()} senders can use: {choices}."}
            )
        scheme = self.effective_auth
        if scheme in SECRET_AUTH and not self.secret:
            other = " (or choose url_key)" if IntegrationAuth.URL_KEY in allowed else ""
            raise ValidationError(
                {"secret": f"The {scheme} scheme needs a secret: give or rotate one{other}."}
            )
        if scheme == IntegrationAuth.HEADER or self.auth_header:
            errors = auth_header_errors(self.auth_header)
            if errors:
                raise ValidationError({"auth_header": errors})


class WebhookSignature(models.Model):
    """A signed, timestamped request an integration accepted, remembered while its timestamp
    is inside the replay window so that the same request is accepted once: the UNIQUE key
    makes a second INSERT of it fail however many web processes receive it. Written in the
    transaction that stores the delivery; rows out of the window are deleted on insert."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="+")
    signature = models.CharField(max_length=64, help_text="The request's HMAC-SHA256, hex.")
    signed_at = models.DateTimeField(help_text="The timestamp the sender signed.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "signature"], name="webhook_signature_once"
            ),
        ]
        indexes = [models.Index(fields=["signed_at"], name="webhook_signature_age")]

    def __str__(self) -> str:
        return f"{self.signature[:12]}… ({when(self.signed_at, seconds=True)})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One accepted POST from a sender, stored raw before anything is made of it, so that an
    alert is never lost between acceptance and processing (a lost task is re-queued)."""

    integration = models.ForeignKey(
        Integration, on_delete=models.PROTECT, related_name="deliveries"
    )
    received_at = models.DateTimeField(default=timezone.now)
    body = models.TextField()
    headers = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    dedup_key = models.CharField(
        max_length=255, blank=True, help_text="PagerDuty events: the dedup key answered."
    )
    alert_count = models.PositiveIntegerField(default=0)
    group_hash = models.CharField(
        max_length=64,
        blank=True,
        help_text=(
            "The SHA-256 of the group key when all its alerts fell in one group on receipt "
            "(empty otherwise): a drain processes pending deliveries of one group together."
        ),
    )
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(
        default=timezone.now, help_text="Receipt, or when a failed attempt is tried again."
    )
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="Unused: a delivery is processed under its row lock."
    )
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a task processing it was published (empty: not yet, or failed).",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["received_at"],
                name="delivery_pending",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["integration", "-received_at"], name="delivery_integration"),
            models.Index(
                fields=["integration", "group_hash", "received_at"],
                name="delivery_group_pending",
                condition=Q(status="pending") & ~Q(group_hash=""),
            ),
            # For the requeue sweep's look for rows running past their lease (none: a delivery
            # is processed under its row lock), which otherwise reads the whole table.
            models.Index(
                fields=["claimed_at"], name="delivery_running", condition=Q(status="running")
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} from {self.integration}"


class AlertAction(models.TextChoices):
    """What an alert rule asks for (§7.2 "Action")."""

    PAGE_ONCALL = "page_oncall", "Page on-call engineer"
    ESCALATE = "escalate", "Escalate immediately"
    MONITOR = "monitor", "Monitor and investigate"
    IMMEDIATE_ATTENTION = "immediate_attention", "Immediate attention"
    SECURITY = "security", "Security team alert"


# What an action does when its alert opens an incident: whom ``incident_create`` pages
# (``paging``), and the urgency that, with impact Medium, gives the priority through the §2.2
# matrix. "" stands for an alert no rule matched. Core policy: detection and the failed-login
# watch both read it.
ALERT_ACTION_PAGING = {
    AlertAction.PAGE_ONCALL: "team",
    AlertAction.ESCALATE: "escalate",
    AlertAction.MONITOR: "none",
    AlertAction.IMMEDIATE_ATTENTION: "team",
    AlertAction.SECURITY: "security",
    "": "team",
}
ALERT_ACTION_URGENCY = {
    AlertAction.PAGE_ONCALL: Level.MEDIUM,
    AlertAction.ESCALATE: Level.HIGH,
    AlertAction.MONITOR: Level.LOW,
    AlertAction.IMMEDIATE_ATTENTION: Level.HIGH,
    AlertAction.SECURITY: Level.HIGH,
    "": Level.MEDIUM,
}
