"""Integrations: creating, changing, rotating the secret of and deleting them (the API and the
admin both call these), the URLs a sender posts to, and the configuration snippet for each
kind of sender.

Integrations are administrator business: the model permissions (add, change, delete) are held
by no role group, only by superusers or whoever an administrator grants them to.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from ..errors import InvalidInput
from ..models import Integration, IntegrationKind, Service, SeverityLevel
from ..models.detection import BASIC_AUTH_USER, IntegrationAuth, new_integration_secret
from ..services.catalog import ServiceInUse, require_policy_perm, validated_save
from ..services.common import audited_delete
from .heartbeat import heartbeat_configure

INTEGRATION_FIELDS = (
    "name",
    "kind",
    "service",
    "default_severity",
    "secret",
    "enabled",
    "require_timestamp",
    "auto_resolve",
    "group_by",
    "auth",
    "auth_header",
    "heartbeat_minutes",
    "heartbeat_alertname",
    "heartbeat_severity",
)
CHANGEABLE_FIELDS = tuple(f for f in INTEGRATION_FIELDS if f not in ("kind", "secret"))


class IntegrationInUse(ServiceInUse):
    """An integration that received deliveries is kept for its alerts' sake (disable it)."""


def _resolve_refs(fields: dict[str, Any]) -> dict[str, Any]:
    fields = dict(fields)
    if "service" in fields and fields["service"] is not None:
        value = fields["service"]
        if not isinstance(value, Service):
            service = Service.objects.filter(slug=value).first()
            if service is None:
                raise InvalidInput({"service": f"Unknown service {value!r}."})
            fields["service"] = service
    for name in ("default_severity", "heartbeat_severity"):
        if name not in fields:
            continue
        value = fields[name]
        if not isinstance(value, SeverityLevel):
            level = SeverityLevel.objects.filter(level=value).first()
            if level is None:
                raise InvalidInput({name: f"Unknown severity {value!r}."})
            fields[name] = level
    return fields


@transaction.atomic
def integration_create(*, actor: Any, source: str, **fields: Any) -> Integration:
    """Add an integration with a fresh random key, and a fresh random secret unless
    ``secret`` is given (``""``: none, for an Alertmanager or Grafana sender that cannot
    authenticate; never for PagerDuty senders). Needs ``incidents.add_integration``. Not
    idempotent."""
    require_policy_perm(actor, "incidents.add_integration", "add integrations")
    unknown = sorted(set(fields) - set(INTEGRATION_FIELDS))
    if unknown:
        raise InvalidInput({name: "Unknown field." for name in unknown})
    fields = _resolve_refs(fields)
    integration = Integration(**fields)
    heartbeat_configure(integration, changed=fields)
    validated_save(integration, actor=actor, reason=f"created via {source}")
    return integration


@transaction.atomic
def integration_update(
    *, integration: Integration, actor: Any, source: str, **changes: Any
) -> Integration:
    """Change an integration's settings (not its kind or key: the sender's configuration
    depends on them; the secret changes through :func:`integration_rotate_secret`). Needs
    ``incidents.change_integration``. Idempotent: no change, no write."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    unknown = sorted(set(changes) - set(CHANGEABLE_FIELDS))
    if unknown:
        raise InvalidInput({name: "This field cannot be changed here." for name in unknown})
    changes = _resolve_refs(changes)
    locked = Integration.objects.select_for_update().get(pk=integration.pk)
    changed = [name for name, value in changes.items() if getattr(locked, name) != value]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    heartbeat_configure(locked, changed=changed)
    validated_save(locked, actor=actor, reason=f"updated {', '.join(changed)} via {source}")
    return locked


@transaction.atomic
def integration_rotate_secret(*, integration: Integration, actor: Any, source: str) -> Integration:
    """Give the integration a new random secret; the old one stops working at once. Not for
    PagerDuty senders (their routing key is the credential). Needs ``change_integration``."""
    require_policy_perm(actor, "incidents.change_integration", "change integrations")
    locked = Integration.objects.select_for_update().get(pk=integration.pk)
    if locked.kind == IntegrationKind.PAGERDUTY:
        raise InvalidInput(
            {"secret": "PagerDuty senders have no secret: their routing key is the credential."}
        )
    locked.secret = new_integration_secret()
    validated_save(locked, actor=actor, reason=f"secret rotated via {source}")
    return locked


@transaction.atomic
def integration_delete(*, integration: Integration, actor: Any, source: str) -> None:
    """Delete an integration that never received a delivery; others are kept for their
    alerts' history and can be disabled. Needs ``delete_integration``."""
    require_policy_perm(actor, "incidents.delete_integration", "delete integrations")
    locked = Integration.objects.select_for_update().get(pk=integration.pk)
    if locked.deliveries.exists() or locked.alerts.exists():
        raise IntegrationInUse(
            {"integration": "It has received alerts; disable it (enabled=false) instead."}
        )
    audited_delete(locked, actor=actor, reason=f"deleted via {source}")


# --- what a sender needs ---------------------------------------------------------------------


def integration_urls(integration: Integration) -> dict[str, str]:
    """Absolute URLs (from ``VIGIL_BASE_URL``) a sender of this kind is configured with; with
    a heartbeat, also the ``ping_url`` (the heartbeat kind's only URL)."""
    base = settings.VIGIL_BASE_URL
    ping = {"ping_url": base + reverse("hooks:ping", args=[integration.key])}
    if integration.kind == IntegrationKind.HEARTBEAT:
        return ping
    if integration.heartbeat_minutes is None:
        ping = {}
    if integration.kind == IntegrationKind.PAGERDUTY:
        return {
            "events_url": base + reverse("hooks:pagerduty"),
            "client_base_url": base + "/hooks/pagerduty",
            "events_url_alias": base + reverse("hooks:pagerduty-root"),
            **ping,
        }
    from .views import SENDER_KINDS

    if integration.kind in SENDER_KINDS:
        path = reverse("hooks:sender", args=[integration.kind, integration.key])
    else:
        path = reverse(f"hooks:{integration.kind}", args=[integration.key])
    return {"webhook_url": base + path, **ping}


def integration_credential_headers(integration: Integration) -> dict[str, str]:
    """The headers a sender adds under the integration's static scheme (bearer, secret
    header, Basic); empty for a signature, the URL key alone, a routing key or SNS."""
    scheme, secret = integration.effective_auth, integration.secret
    if scheme == IntegrationAuth.BEARER:
        return {"Authorization": f"Bearer {secret}"}
    if scheme == IntegrationAuth.BASIC:
        token = base64.b64encode(f"{BASIC_AUTH_USER}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if scheme == IntegrationAuth.HEADER:
        return {integration.auth_header: secret}
    return {}


def _alertmanager_auth(integration: Integration) -> str:
    scheme, secret = integration.effective_auth, integration.secret
    if scheme == IntegrationAuth.BEARER:
        return (
            "        http_config:\n"
            "          authorization:\n"
            "            type: Bearer\n"
            f"            credentials: {json.dumps(secret)}\n"
        )
    if scheme == IntegrationAuth.BASIC:
        return (
            "        http_config:\n"
            "          basic_auth:\n"
            f"            username: {BASIC_AUTH_USER}\n"
            f"            password: {json.dumps(secret)}\n"
        )
    return ""


def _grafana_auth(integration: Integration) -> str:
    scheme, secret = integration.effective_auth, integration.secret
    if scheme == IntegrationAuth.HMAC:
        return (
            "  Optional Webhook settings → HMAC Signature:\n"
            f"    Secret:           {secret}\n"
            "    Header:           X-Grafana-Alerting-Signature\n"
            "    Timestamp Header: X-Grafana-Alerting-Signature-Timestamp\n"
        )
    if scheme == IntegrationAuth.BASIC:
        return (
            "  Optional Webhook settings:\n"
            f"    Username: {BASIC_AUTH_USER}\n"
            f"    Password: {secret}\n"
        )
    if scheme == IntegrationAuth.BEARER:
        return (
            "  Optional Webhook settings → Authorization Header:\n"
            "    Scheme:      Bearer\n"
            f"    Credentials: {secret}\n"
        )
    if scheme == IntegrationAuth.HEADER:
        return (
            "  Optional Webhook settings → Extra Headers:\n"
            f"    {integration.auth_header}: {secret}\n"
        )
    return ""


def integration_snippet(integration: Integration) -> str:
    """A copy-paste configuration for the sender (with the secret: shown to administrators)."""
    urls = integration_urls(integration)
    secret = integration.secret
    from .senders import SNIPPETS, load

    if not SNIPPETS:
        load()
    if integration.kind in SNIPPETS:
        return SNIPPETS[integration.kind](integration, urls)
    if integration.kind == IntegrationKind.ALERTMANAGER:
        auth = _alertmanager_auth(integration)
        return (
            "# alertmanager.yml\n"
            "route:\n"
            "  receiver: vigil\n"
            "  group_by: ['alertname', 'service']\n"
            "receivers:\n"
            "  - name: vigil\n"
            "    webhook_configs:\n"
            f"      - url: {json.dumps(urls['webhook_url'])}\n"
            "        send_resolved: true\n" + auth
        )
    if integration.kind == IntegrationKind.GRAFANA:
        auth = _grafana_auth(integration)
        return (
            "Grafana → Alerting → Contact points → + Add contact point\n"
            "  Integration:  Webhook\n"
            f"  URL:          {urls['webhook_url']}\n"
            "  HTTP Method:  POST\n" + auth + "Then route alerts to it in a notification policy.\n"
        )
    if integration.kind == IntegrationKind.PAGERDUTY:
        return (
            "# pip install pagerduty  (PagerDuty's official client, unchanged)\n"
            "import pagerduty\n\n"
            "client = pagerduty.EventsApiV2Client(\n"
            f"    {json.dumps(integration.key)},\n"
            f"    base_url={json.dumps(urls['client_base_url'])},\n"
            ")\n"
            "dedup_key = client.trigger(\n"
            '    "Disk usage 91% on db-1", "db-1.prod.example.com", severity="error"\n'
            ")\n"
            "client.acknowledge(dedup_key)\n"
            "client.resolve(dedup_key)\n\n"
            "# Any other Events API v2 sender: routing key above, events URL\n"
            f"# {urls['events_url']}\n"
        )
    example = json.dumps(
        {
            "title": "Checkout error rate above 5%",
            "severity": "critical",
            "status": "firing",
            "dedup_key": "checkout-errors",
            "labels": {"service": "checkout", "alertname": "HighErrorRate"},
        }
    )
    headers = integration_credential_headers(integration)
    if headers:
        return (
            f"body='{example}'\n"
            f"curl -sS -X POST '{urls['webhook_url']}' \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            + "".join(f"  -H '{name}: {value}' \\\n" for name, value in headers.items())
            + '  --data-binary "$body"\n'
        )
    return (
        f"body='{example}'\n"
        "ts=$(date +%s)\n"
        f"sig=$(printf '%s.%s' \"$ts\" \"$body\" | openssl dgst -sha256 -hmac '{secret}' "
        "| sed 's/^.* //')\n"
        f"curl -sS -X POST '{urls['webhook_url']}' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        '  -H "X-Vigil-Timestamp: $ts" \\\n'
        '  -H "X-Vigil-Signature: sha256=$sig" \\\n'
        '  --data-binary "$body"\n'
    )
