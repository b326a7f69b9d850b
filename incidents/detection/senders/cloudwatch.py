"""AWS CloudWatch alarms, delivered by an Amazon SNS topic to an HTTPS subscription
(``/hooks/cloudwatch/<key>/``, :mod:`incidents.detection.views_sns`).

The stored body is the SNS envelope as received (``Type``, ``MessageId``, ``TopicArn``,
``Message``...); its signature was checked in the request. The ``Message`` of a Notification is
the alarm's state change, a JSON string::

    {"AlarmName": "...", "AlarmDescription": "..." | null, "AWSAccountId": "123456789012",
     "NewStateValue": "ALARM" | "OK" | "INSUFFICIENT_DATA", "NewStateReason": "...",
     "StateChangeTime": "2026-11-27T09:41:02.125+0000", "Region": "US East (N. Virginia)",
     "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:...",
     "OldStateValue": "OK", "Trigger": {"MetricName": "...", "Namespace": "...",
     "Dimensions": [{"name": "...", "value": "..."}], ...}}

* ``ALARM`` fires the alert, ``OK`` resolves it (at ``StateChangeTime``). ``INSUFFICIENT_DATA``
  says the metric has no data, which is neither a problem nor a recovery: the message is
  answered 200 and nothing is stored (an alarm firing stays firing until its OK).
* One alert per alarm: the fingerprint and the group are the ``AlarmArn`` (an alarm's
  ARN names its partition, region, account and name; without one, the account, region name
  and alarm name).
* Labels: ``alertname`` (the alarm's name), ``aws_account_id``, ``region`` (the code, read
  from the ARN: the message's ``Region`` is the region's display name), ``namespace``,
  ``metric_name`` and one label per metric dimension (``InstanceId``, ``LoadBalancer``...),
  for alert rules and grouping rules. Annotations: the description, the state reason, the
  previous state, the alarm's page in the AWS console (``console_url``) and the SNS topic.
* A SubscriptionConfirmation or UnsubscribeConfirmation envelope has no alert.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from django.utils import timezone

from ...models import AlertStatus, IntegrationKind
from ..parsing import (
    KEY_MAX,
    IncomingAlert,
    ParsedDelivery,
    PayloadError,
    _hash,
    _text,
    _title,
    clean,
    parse_time,
)
from . import SenderTest, register

ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
_STATUS = {ALARM: AlertStatus.FIRING, OK: AlertStatus.RESOLVED}
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
# The console's domain in each AWS partition.
CONSOLE_DOMAINS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _arn_parts(arn: str, service: str) -> tuple[str, str]:
    """(partition, region code) of an ARN of ``service``; empty strings when it is not one."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == service:
        return parts[1], parts[3] if _REGION.fullmatch(parts[3]) else ""
    return "", ""


def console_url(*, partition: str, region: str, alarm_name: str) -> str:
    """The alarm's page in the AWS console, or "" when the partition or region is unknown."""
    domain = CONSOLE_DOMAINS.get(partition)
    if not domain or not region:
        return ""
    return (
        f"https://{region}.{domain}/cloudwatch/home?region={region}"
        f"#alarmsV2:alarm/{quote(alarm_name, safe='')}"
    )


def _metric(trigger: dict[str, Any]) -> tuple[str, str, list[Any]]:
    """(namespace, metric name, dimensions) of a single-metric alarm's ``Trigger``, or of the
    first metric of a metric-math alarm's ``Trigger.Metrics``."""
    if trigger.get("MetricName") is not None:
        return (
            _text(trigger.get("Namespace")),
            _text(trigger.get("MetricName")),
            trigger.get("Dimensions") if isinstance(trigger.get("Dimensions"), list) else [],
        )
    for item in trigger.get("Metrics") or []:
        stat = item.get("MetricStat") if isinstance(item, dict) else None
        metric = stat.get("Metric") if isinstance(stat, dict) else None
        if isinstance(metric, dict):
            dimensions = metric.get("Dimensions")
            return (
                _text(metric.get("Namespace")),
                _text(metric.get("MetricName")),
                dimensions if isinstance(dimensions, list) else [],
            )
    return "", "", []


def _alarm(envelope: dict[str, Any]) -> dict[str, Any]:
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise PayloadError({"Message": ["Must be a string (the CloudWatch alarm as JSON)."]})
    try:
        alarm = json.loads(message, parse_constant=_no_constants)
    except ValueError:
        alarm = None
    if not isinstance(alarm, dict) or "NewStateValue" not in alarm:
        raise PayloadError(
            {
                "Message": [
                    "Not a CloudWatch alarm state change (a JSON object with AlarmName and "
                    "NewStateValue): publish alarms to this topic, nothing else."
                ]
            }
        )
    errors: dict[str, list[str]] = {}
    if not isinstance(alarm.get("AlarmName"), str) or not alarm["AlarmName"].strip():
        errors["Message.AlarmName"] = ["A non-blank string is required."]
    if alarm.get("NewStateValue") not in (ALARM, OK, INSUFFICIENT_DATA):
        errors["Message.NewStateValue"] = ["Must be ALARM, OK or INSUFFICIENT_DATA."]
    for name in ("AlarmArn", "AlarmDescription", "NewStateReason", "AWSAccountId", "Region"):
        if alarm.get(name) is not None and not isinstance(alarm[name], str):
            errors[f"Message.{name}"] = ["Must be a string."]
    if alarm.get("Trigger") is not None and not isinstance(alarm["Trigger"], dict):
        errors["Message.Trigger"] = ["Must be an object."]
    if errors:
        raise PayloadError(errors)
    return clean(alarm)


def parse_cloudwatch(payload: Any) -> ParsedDelivery:
    """An SNS envelope: a Notification carrying a CloudWatch alarm's state change (one alert),
    or a subscription message (no alert). Raises :class:`PayloadError`, or
    :class:`SenderTest` for an ``INSUFFICIENT_DATA`` change (answered 200, not stored)."""
    if not isinstance(payload, dict):
        raise PayloadError({"non_field_errors": ["The body must be an SNS message (an object)."]})
    kind = payload.get("Type")
    if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return ParsedDelivery(alerts=[])
    if kind != "Notification":
        raise PayloadError(
            {"Type": ["Must be Notification, SubscriptionConfirmation or UnsubscribeConfirmation."]}
        )
    alarm = _alarm(payload)
    name = alarm["AlarmName"].strip()
    state = alarm["NewStateValue"]
    if state == INSUFFICIENT_DATA:
        detail = (
            f"CloudWatch alarm {name[:200]!r} is INSUFFICIENT_DATA (no data, neither a problem "
            "nor a recovery): ignored, nothing stored."
        )
        raise SenderTest(detail, body={"status": "ignored", "detail": detail})
    arn = _text(alarm.get("AlarmArn"))
    account = _text(alarm.get("AWSAccountId"))
    region_name = _text(alarm.get("Region"))
    partition, region = _arn_parts(arn, "cloudwatch")
    if not region:
        # An alarm notifies topics of its own region.
        partition, region = _arn_parts(_text(payload.get("TopicArn")), "sns")
    identity = arn or f"cloudwatch:{account}:{region_name}:{name}"
    fingerprint = identity if len(identity) <= KEY_MAX else "sha256:" + _hash(identity)
    namespace, metric_name, dimensions = _metric(alarm.get("Trigger") or {})
    labels = {
        key: value
        for key, value in (
            ("alertname", name),
            ("aws_account_id", account),
            ("region", region),
            ("namespace", namespace),
            ("metric_name", metric_name),
        )
        if value
    }
    for dimension in dimensions:
        if not isinstance(dimension, dict):
            continue
        key = dimension.get("name", dimension.get("Name"))
        value = dimension.get("value", dimension.get("Value"))
        if isinstance(key, str) and key.strip() and isinstance(value, str | int | float):
            labels.setdefault(key.strip()[:100], str(value))
    link = console_url(partition=partition or "aws", region=region, alarm_name=name)
    annotations = {
        key: value
        for key, value in (
            ("description", _text(alarm.get("AlarmDescription"))),
            ("reason", _text(alarm.get("NewStateReason"))),
            ("previous_state", _text(alarm.get("OldStateValue"))),
            ("region_name", region_name),
            ("alarm_arn", arn),
            ("console_url", link),
            ("sns_topic_arn", _text(payload.get("TopicArn"))),
            ("sns_subject", _text(payload.get("Subject"))),
        )
        if value
    }
    status = _STATUS[state]
    now = timezone.now()
    changed_at = parse_time(alarm.get("StateChangeTime"), now=now)
    return ParsedDelivery(
        alerts=[
            IncomingAlert(
                fingerprint=fingerprint,
                group_key=fingerprint,
                group_reason=f"same CloudWatch alarm ({name[:120]})",
                status=status,
                action=status,
                title=_title(name),
                labels=clean(labels),
                annotations=clean(annotations),
                starts_at=changed_at if status == AlertStatus.FIRING else None,
                ends_at=(changed_at or now) if status == AlertStatus.RESOLVED else None,
                raw=alarm,
            )
        ]
    )


def cloudwatch_snippet(integration: Any, urls: dict[str, str]) -> str:
    url = urls["webhook_url"]
    return (
        "# AWS CloudWatch alarms → Amazon SNS topic → Vigil (HTTPS subscription).\n"
        "# Vigil confirms the subscription itself and checks the SNS signature of every\n"
        "# message; once confirmed, it accepts messages from that topic only.\n\n"
        "# 1. A topic in the alarms' region (SignatureVersion 2 signs with SHA-256):\n"
        "aws sns create-topic --name vigil-alarms\n"
        "aws sns set-topic-attributes --topic-arn <topic-arn> \\\n"
        "    --attribute-name SignatureVersion --attribute-value 2\n\n"
        "# 2. Subscribe Vigil (the subscription turns Confirmed within seconds):\n"
        "aws sns subscribe --topic-arn <topic-arn> --protocol https \\\n"
        f"    --notification-endpoint '{url}'\n\n"
        "# 3. Send the alarms' state changes to the topic: ALARM opens an incident, OK\n"
        "#    resolves its alert, INSUFFICIENT_DATA is ignored. For an existing alarm, in the\n"
        "#    console: CloudWatch → Alarms → the alarm → Actions → Edit → Notification:\n"
        '#    "In alarm" and "OK", each → Select an existing SNS topic → vigil-alarms.\n'
        "#    Or with the CLI:\n"
        "aws cloudwatch put-metric-alarm --alarm-name checkout-cpu-high \\\n"
        "    --namespace AWS/EC2 --metric-name CPUUtilization \\\n"
        "    --dimensions Name=InstanceId,Value=i-0123456789abcdef0 \\\n"
        "    --statistic Average --period 300 --evaluation-periods 2 \\\n"
        "    --threshold 90 --comparison-operator GreaterThanThreshold \\\n"
        "    --alarm-actions <topic-arn> --ok-actions <topic-arn>\n"
    )


register(IntegrationKind.CLOUDWATCH, parser=parse_cloudwatch, snippet=cloudwatch_snippet)
