"""Input and output of ``/api/v1/integrations/``. The secret is shown once, when it is made
(create, rotate); reads only say whether there is one."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..detection.heartbeat import MAX_MINUTES, heartbeat_state
from ..detection.integrations import integration_urls
from ..models import Integration, IntegrationKind
from ..models.detection import ALLOWED_AUTH, IntegrationAuth, auth_header_errors
from .common import TextField, iso

LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
AUTH_HELP = (
    "What the sender proves itself with besides the URL key: "
    + "; ".join(f"{kind}: {', '.join(schemes)}" for kind, schemes in ALLOWED_AUTH.items())
    + ". Blank on input: the kind's default."
)


class IntegrationUrlsSerializer(serializers.Serializer):
    webhook_url = serializers.URLField(
        required=False, help_text="Alertmanager, Grafana, generic: the URL to POST to."
    )
    events_url = serializers.URLField(
        required=False, help_text="PagerDuty: the Events API v2 enqueue URL."
    )
    client_base_url = serializers.URLField(
        required=False, help_text="PagerDuty: the base URL to give a PagerDuty client."
    )
    events_url_alias = serializers.URLField(
        required=False, help_text="PagerDuty: /v2/enqueue at Vigil's root (base URL as is)."
    )
    ping_url = serializers.URLField(
        required=False,
        help_text="With a heartbeat: the URL a job calls (GET, HEAD or POST) to signal.",
    )


class IntegrationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=IntegrationKind.choices)
    service = serializers.CharField(allow_null=True, help_text="Service slug.")
    default_severity = serializers.IntegerField()
    key = serializers.CharField(help_text="In the URL; the PagerDuty routing key.")
    has_secret = serializers.BooleanField()
    enabled = serializers.BooleanField()
    require_timestamp = serializers.BooleanField(
        help_text="Generic and Grafana senders: only signatures over a timestamp are accepted."
    )
    auto_resolve = serializers.BooleanField()
    group_by = serializers.ListField(child=serializers.CharField())
    auth = serializers.ChoiceField(
        choices=IntegrationAuth.choices,
        help_text="The scheme deliveries are checked with (the kind's default when none was "
        "chosen).",
    )
    auth_header = serializers.CharField(
        help_text="The secret static header's name (scheme header)."
    )
    heartbeat_minutes = serializers.IntegerField(
        allow_null=True, help_text="A signal is expected at least this often; null: none."
    )
    heartbeat_alertname = serializers.CharField(
        help_text="Alertmanager and Grafana: the always-firing alert that is the heartbeat."
    )
    heartbeat_severity = serializers.IntegerField(
        help_text="Severity of the incident opened when the heartbeat stops."
    )
    last_signal_at = serializers.DateTimeField(allow_null=True)
    heartbeat_status = serializers.ChoiceField(
        choices=["off", "waiting", "healthy", "silent"],
        help_text="off (no heartbeat, or disabled), waiting for a first signal, healthy, or "
        "silent (overdue, or its no-signal incident still open).",
    )
    heartbeat_incident = serializers.CharField(
        allow_null=True, help_text='The open "no signal" incident\'s number.'
    )
    urls = IntegrationUrlsSerializer()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, instance: Integration) -> dict[str, Any]:
        return {
            "id": instance.pk,
            "name": instance.name,
            "kind": instance.kind,
            "service": instance.service.slug if instance.service_id else None,
            "default_severity": instance.default_severity_id,
            "key": instance.key,
            "has_secret": bool(instance.secret),
            "enabled": instance.enabled,
            "require_timestamp": instance.require_timestamp,
            "auto_resolve": instance.auto_resolve,
            "group_by": list(instance.group_by or []),
            "auth": instance.effective_auth,
            "auth_header": instance.auth_header,
            "heartbeat_minutes": instance.heartbeat_minutes,
            "heartbeat_alertname": instance.heartbeat_alertname,
            "heartbeat_severity": instance.heartbeat_severity_id,
            "last_signal_at": iso(instance.last_signal_at),
            "heartbeat_status": heartbeat_state(instance).status,
            "heartbeat_incident": (
                instance.heartbeat_incident.number if instance.heartbeat_incident_id else None
            ),
            "urls": integration_urls(instance),
            "created_at": iso(instance.created_at),
            "updated_at": iso(instance.updated_at),
        }


class IntegrationWithSecretSerializer(IntegrationSerializer):
    secret = serializers.CharField(
        help_text="Shown only now: the bearer token (Alertmanager) or HMAC secret (Grafana, "
        "generic). Empty for PagerDuty senders."
    )

    def to_representation(self, instance: Integration) -> dict[str, Any]:
        return {**super().to_representation(instance), "secret": instance.secret}


class _IntegrationFields(serializers.Serializer):
    name = TextField(max_length=120)
    service = serializers.SlugField(
        max_length=60, required=False, allow_null=True, help_text="Service slug."
    )
    default_severity = serializers.IntegerField(min_value=1, max_value=4, required=False)
    enabled = serializers.BooleanField(required=False)
    require_timestamp = serializers.BooleanField(
        required=False,
        help_text=(
            "Generic and Grafana senders with a secret: refuse signatures that do not cover a "
            "timestamp (default true; false accepts body-only signatures, which can be "
            "replayed)."
        ),
    )
    auto_resolve = serializers.BooleanField(required=False)
    group_by = serializers.ListField(
        child=serializers.RegexField(LABEL_NAME), max_length=20, required=False
    )
    heartbeat_minutes = serializers.IntegerField(
        min_value=1,
        max_value=MAX_MINUTES,
        required=False,
        allow_null=True,
        help_text="Expect a signal (a ping, or the heartbeat alert) at least this often; "
        "nothing for this long opens an incident. null: no heartbeat. Required for the "
        "heartbeat kind.",
    )
    heartbeat_alertname = TextField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text='Alertmanager and Grafana: the always-firing alert (default "Watchdog"); '
        "it is a signal and opens no incident.",
    )
    heartbeat_severity = serializers.IntegerField(
        min_value=1,
        max_value=4,
        required=False,
        help_text="Severity of the incident opened when the heartbeat stops (default 2).",
    )
    auth = serializers.ChoiceField(
        choices=IntegrationAuth.choices, required=False, allow_blank=True, help_text=AUTH_HELP
    )
    auth_header = serializers.CharField(
        max_length=100,
        required=False,
        help_text="Scheme header: the header's name (letters, digits, '-'; not Authorization, "
        "Content-Type, Host and the like). Default X-Vigil-Token.",
    )

    def validate_auth_header(self, value: str) -> str:
        errors = auth_header_errors(value)
        if errors:
            raise serializers.ValidationError(errors)
        return value


class IntegrationCreateSerializer(_IntegrationFields):
    kind = serializers.ChoiceField(choices=IntegrationKind.choices)
    secret = TextField(
        max_length=128,
        required=False,
        allow_blank=True,
        help_text='Leave out for a random one; "" for none (Alertmanager, Grafana only).',
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        auth = attrs.get("auth")
        allowed = ALLOWED_AUTH.get(attrs.get("kind", ""), ())
        if auth and auth not in allowed:
            raise serializers.ValidationError(
                {"auth": [f"{attrs['kind']} senders can use: {', '.join(allowed)}."]}
            )
        return attrs


class IntegrationUpdateSerializer(_IntegrationFields):
    pass
