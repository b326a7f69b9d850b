"""``/hooks/cloudwatch/<key>/``: AWS CloudWatch alarms delivered by an Amazon SNS topic to an
HTTPS subscription (the sender's setup: ``senders.cloudwatch``; the checks: ``sns``).

SNS posts its messages as ``text/plain; charset=UTF-8`` (``application/json`` when the
subscription's delivery policy says so) with an ``x-amz-sns-message-type`` header, so this
endpoint has gates of its own, in this order; a refusal writes nothing, is logged and is
answered with the hooks' JSON error (``views``):

====  ==========================  ============================================================
405   method_not_allowed          anything but POST
415   unsupported_media_type      a Content-Type other than text/plain or application/json
400   parse_error                 no ``x-amz-sns-message-type`` header; not UTF-8 JSON
413   payload_too_large           over ``VIGIL_HOOK_MAX_BODY_BYTES``
404   not_found                   no CloudWatch integration has the URL key
403   integration_disabled        the integration is disabled
400   invalid                     not an SNS message (type, signed fields, Timestamp), the
                                  header's type is not the body's, a SubscribeURL that is not
                                  an SNS confirmation URL, or a Notification that is not a
                                  CloudWatch alarm
401   authentication_failed       the SNS signature does not verify: unknown
                                  SignatureVersion, a SigningCertURL that is not https:// on a
                                  host of ``VIGIL_SNS_CERT_HOST_PATTERN`` (never fetched), a
                                  Timestamp over an hour old, a certificate that is not one,
                                  a wrong signature
403   topic_not_allowed           a topic other than the integration's (below)
503   sns_unavailable             the signing certificate or the confirmation could not be
                                  fetched (SNS retries 5xx answers; ``Retry-After``)
====  ==========================  ============================================================

Every accepted message is answered 200 (SNS counts any 2xx as delivered):

* SubscriptionConfirmation: once verified, Vigil confirms the subscription by visiting its
  ``SubscribeURL`` in the request (an ``Action=ConfirmSubscription`` URL on an allowed SNS
  host, over HTTPS, 5-second timeout, no redirects) and stores the message as a delivery
  without alerts (``{"status": "confirmed"}``), visible with the integration's deliveries.
* UnsubscribeConfirmation: verified and logged, nothing stored, nothing visited (visiting its
  URL would subscribe again).
* Notification: a CloudWatch alarm's state change, stored like every delivery and processed
  by ``senders.cloudwatch`` (ALARM fires, OK resolves); INSUFFICIENT_DATA is answered
  ``{"status": "ignored"}`` and not stored.

The integration's topic. The topic of its first stored delivery (normally the confirmed
subscription) is the integration's: a message of another topic is refused (403), a
confirmation request from another topic included, so that whoever learns the URL cannot
subscribe a topic of their own. Moving to another topic takes a new integration.

Each message once. SNS delivers at least once, and a captured message verifies for an hour: a
message whose ``MessageId`` the integration stored in the last hour is answered
``{"status": "duplicate"}`` and not stored again (the delivery's ``dedup_key`` is
``sns:<MessageId>``). Two copies arriving at the same instant may both be stored; processing
counts them as one alert.

Direct EventBridge deliveries (API destinations) are not accepted here: alarms come through SNS.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ..models import IntegrationKind, WebhookDelivery
from .grouping import delivery_group_hash
from .parsing import PayloadError, parse_delivery
from .senders import SenderTest
from .sns import (
    CLOCK_SKEW,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SnsInvalid,
    SnsMessage,
    SnsUnavailable,
    max_age,
    sns_message_read,
    sns_subscription_confirm,
    sns_verify,
)
from .verify import VerificationFailed
from .views import (
    HookIntegration,
    Refused,
    _accept,
    _error_response,
    _headers,
    _integration,
    _json,
    _log_refusal,
    _read,
    declared_size_check,
)

logger = logging.getLogger(__name__)

KIND = IntegrationKind.CLOUDWATCH
_CONTENT_TYPES = ("text/plain", "application/json")
MESSAGE_TYPE = "HTTP_X_AMZ_SNS_MESSAGE_TYPE"
# SNS's own headers, kept with the delivery.
_SNS_HEADERS = {
    MESSAGE_TYPE: "x-amz-sns-message-type",
    "HTTP_X_AMZ_SNS_MESSAGE_ID": "x-amz-sns-message-id",
    "HTTP_X_AMZ_SNS_TOPIC_ARN": "x-amz-sns-topic-arn",
    "HTTP_X_AMZ_SNS_SUBSCRIPTION_ARN": "x-amz-sns-subscription-arn",
}
RETRY_AFTER = 30


def _gate(request: HttpRequest) -> None:
    """Method, content type, SNS's message-type header and declared size: before any lookup."""
    if request.method != "POST":
        raise Refused(405, "method_not_allowed", f"Method {request.method} not allowed: POST only.")
    content_type = (request.content_type or "").lower()
    if content_type not in _CONTENT_TYPES and not content_type.endswith("+json"):
        raise Refused(
            415,
            "unsupported_media_type",
            f"Content-Type {content_type or '(none)'} not accepted: Amazon SNS sends "
            "text/plain (or application/json).",
        )
    if not request.META.get(MESSAGE_TYPE):
        raise Refused(
            400,
            "parse_error",
            "Missing x-amz-sns-message-type header: this endpoint takes Amazon SNS deliveries.",
        )
    declared_size_check(request)


def _verified(request: HttpRequest, payload: Any) -> SnsMessage:
    try:
        message = sns_message_read(payload)
    except SnsInvalid as exc:
        raise Refused(400, "invalid", f"Not an Amazon SNS message: {exc}") from None
    if request.META[MESSAGE_TYPE] != message.type:
        raise Refused(
            400, "invalid", "The x-amz-sns-message-type header is not the message's Type."
        )
    try:
        sns_verify(message)
    except VerificationFailed as exc:
        raise Refused(401, "authentication_failed", str(exc)) from None
    except SnsUnavailable as exc:
        raise _unavailable(exc) from None
    return message


def _unavailable(exc: Exception) -> Refused:
    return Refused(
        503,
        "sns_unavailable",
        f"{exc} Try again later.",
        headers={"Retry-After": str(RETRY_AFTER)},
    )


def integration_topic(integration: HookIntegration) -> str | None:
    """The integration's SNS topic: that of its first stored delivery (None before any)."""
    body = (
        WebhookDelivery.objects.filter(integration_id=integration.pk)
        .order_by("received_at", "id")
        .values_list("body", flat=True)
        .first()
    )
    if body is None:
        return None
    try:
        topic = json.loads(body).get("TopicArn")
    except (ValueError, AttributeError):
        return None
    return topic if isinstance(topic, str) else None


def _dedup_key(message: SnsMessage) -> str:
    return f"sns:{message.message_id}"[:255]


def _already_stored(integration: HookIntegration, message: SnsMessage) -> bool:
    since = timezone.now() - timedelta(seconds=max_age()) - CLOCK_SKEW
    return WebhookDelivery.objects.filter(
        integration_id=integration.pk, dedup_key=_dedup_key(message), received_at__gte=since
    ).exists()


def _store(request: HttpRequest, integration: HookIntegration, message: SnsMessage, **kw) -> int:
    headers = _headers(request)
    for meta, name in _SNS_HEADERS.items():
        if meta in request.META:
            headers[name] = request.META[meta][:500]
    key = _dedup_key(message)
    return _accept(request, integration, None, time.time(), headers=headers, dedup_key=key, **kw)


@csrf_exempt
def cloudwatch_hook(request: HttpRequest, key: str) -> JsonResponse:
    """An Amazon SNS message for a CloudWatch integration (see the module's docstring)."""
    integration = None
    try:
        _gate(request)
        integration = _integration(key, KIND)
        if integration is None:
            raise Refused(404, "not_found", "No integration of this kind has this key.")
        if not integration.enabled:
            raise Refused(403, "integration_disabled", "This integration is disabled.")
        text, payload = _json(_read(request))
        message = _verified(request, payload)
        topic = integration_topic(integration)
        if topic is not None and topic != message.topic_arn:
            raise Refused(
                403,
                "topic_not_allowed",
                f"This integration takes messages of the SNS topic {topic} only.",
            )
        if message.type == UNSUBSCRIBE_CONFIRMATION:
            logger.info(
                "CloudWatch integration %s: unsubscribed from SNS topic %s",
                integration.pk,
                message.topic_arn,
            )
            return JsonResponse({"status": "ok", "detail": "Unsubscribe confirmation noted."})
        if _already_stored(integration, message):
            logger.info(
                "CloudWatch integration %s: SNS message %s again; already stored",
                integration.pk,
                message.message_id,
            )
            return JsonResponse(
                {"status": "duplicate", "detail": "This SNS message was already accepted."}
            )
        if message.type == SUBSCRIPTION_CONFIRMATION:
            return _confirm(request, integration, message, text)
        try:
            parsed = parse_delivery(KIND, payload, keep_raw=False)
        except RecursionError:
            raise Refused(400, "invalid", "The alarm is nested too deeply.") from None
        except PayloadError as exc:
            raise Refused(
                400, "invalid", f"Invalid payload. {exc}"[:2000], errors=exc.errors
            ) from None
        except SenderTest as ignored:
            logger.info("CloudWatch integration %s: %s", integration.pk, ignored)
            return JsonResponse(ignored.body, status=ignored.status)
        delivery_id = _store(
            request,
            integration,
            message,
            body=text,
            alert_count=len(parsed.alerts),
            group_hash=delivery_group_hash(integration.group_by, parsed.alerts),
        )
    except Refused as refused:
        _log_refusal(request, KIND, refused, integration)
        return _error_response(refused)
    return JsonResponse(
        {"status": "accepted", "delivery": delivery_id, "alerts": len(parsed.alerts)}
    )


def _confirm(
    request: HttpRequest, integration: HookIntegration, message: SnsMessage, text: str
) -> JsonResponse:
    try:
        sns_subscription_confirm(message)
    except SnsInvalid as exc:
        raise Refused(400, "invalid", str(exc)) from None
    except (SnsUnavailable, VerificationFailed) as exc:
        raise _unavailable(exc) from None
    delivery_id = _store(request, integration, message, body=text, alert_count=0)
    logger.info(
        "CloudWatch integration %s: SNS subscription to %s confirmed (delivery %s)",
        integration.pk,
        message.topic_arn,
        delivery_id,
    )
    return JsonResponse(
        {
            "status": "confirmed",
            "delivery": delivery_id,
            "detail": f"Subscribed to {message.topic_arn}.",
        }
    )
