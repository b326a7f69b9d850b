"""Alerts: the §7.2 rules and their actions, severity precedence, grouping raising severity,
order-independent processing, failed processing and its retry, the requeue sweep."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from escalation.models import EscalationEvent, IncidentEscalation, Notification
from incidents.detection.intake import deliveries_kick, deliveries_requeue, kick_flag
from incidents.models import (
    Alert,
    AlertRule,
    DeliveryStatus,
    Incident,
    Kind,
    WebhookDelivery,
)
from incidents.tasks import (
    alert_deliveries_drain_task,
    alert_delivery_process_task,
    alert_delivery_sweep_task,
)
from tests.events import followed
from tests.incidents.detection_fixtures import (
    alertmanager_payload,
    at_now,  # noqa: F401
    hook_path,
    make_integration,
    post,
    process_pending,
)
from tests.incidents.detection_fixtures import fire_generic as fire

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("at_now")]

# The incidents' events are followed once the deliveries' processing commits (paging,
# escalation), as the workers do.
process_pending = followed(process_pending)


@pytest.fixture
def generic(service):
    return make_integration("generic", service=service, default_severity=4)


def notified(incident: Incident, prefix: str) -> list[str]:
    keys = Notification.objects.filter(incident=incident).values_list("idempotency_key", flat=True)
    return sorted(k for k in keys if k.startswith(prefix))


# --- §7.2: each seeded rule, its severity and its action ----------------------------------------


@pytest.mark.parametrize(
    "alertname, value, rule, severity, urgency, priority",
    # The urgency is the rule's action's; the impact the severity's (Sev 1-2 high, Sev 3 medium).
    [
        ("HighResponseTime", "7.5", "response_time", 2, "medium", 2),
        ("HighErrorRate", "7.2%", "error_rate", 1, "high", 1),
        ("HighCpuUsage", "97", "cpu_usage", 3, "low", 4),
        ("DiskSpaceHigh", "88", "disk_space", 2, "high", 1),
        ("FailedLogins", "240", "failed_logins", 2, "high", 1),
    ],
)
def test_seeded_rules_give_severity_and_action(
    client,
    django_capture_on_commit_callbacks,
    generic,
    alertname,
    value,
    rule,
    severity,
    urgency,
    priority,
):
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title=f"{alertname} on web-1",
        labels={"alertname": alertname},
        annotations={"value": value},
    )
    process_pending()
    alert = Alert.objects.get()
    assert (alert.rule.key, alert.severity_id) == (rule, severity)
    incident = alert.incident
    assert (incident.severity_id, incident.urgency, incident.priority) == (
        severity,
        urgency,
        priority,
    )
    # Escalation runs for every incident (acknowledgement timer, matrix), paged or not.
    assert IncidentEscalation.objects.filter(incident=incident).exists()
    team = notified(incident, f"initial:{incident.pk}:")
    if rule == "cpu_usage":
        # Monitor and investigate: logged, nobody paged, and the timeline says why.
        assert Notification.objects.filter(incident=incident).count() == 0
        assert incident.timeline.filter(
            kind=Kind.ALERT, message__startswith="Nobody paged: alert rule CPU Usage"
        ).exists()
    else:
        assert team, "the response team is paged"
    fired_now = list(
        EscalationEvent.objects.filter(incident=incident).values_list("step", "target")
    )
    if rule == "error_rate":
        # Escalate immediately: the matrix's first step (IT Manager) now, not at 30 min.
        assert fired_now == [("sev1-0:30:00", "IT Manager")]
        assert notified(incident, f"escalation:{incident.pk}:sev1-0:30:00:")
    else:
        assert fired_now == []
    security = notified(incident, f"security:{incident.pk}:")
    if rule == "failed_logins":
        # Security team alert: the security contact on the severity's channels it can take.
        assert Notification.objects.get(idempotency_key__in=security).recipient == (
            "security-team@example.com"
        )
        assert incident.timeline.filter(
            kind=Kind.NOTIFICATION, message__startswith="Security team alert on a Sev 2"
        ).exists()
    else:
        assert security == []


def test_metric_label_matches_by_key(client, django_capture_on_commit_callbacks, generic):
    fire(client, django_capture_on_commit_callbacks, generic, labels={"metric": "cpu_usage"})
    process_pending()
    assert Alert.objects.get().rule.key == "cpu_usage"


def test_below_threshold_disabled_and_unmatched_fall_back(
    client, django_capture_on_commit_callbacks, generic
):
    # Below the rule's threshold: no rule; the sender's severity (warning → 3).
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="a",
        labels={"alertname": "HighCpuUsage"},
        value=50,
        severity="warning",
    )
    # A disabled rule never matches: the integration's default (4).
    AlertRule.objects.filter(key="disk_space").update(enabled=False)
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="b",
        labels={"alertname": "DiskSpaceHigh"},
        value=99,
    )
    # No value at all: the threshold cannot be checked, the rule applies.
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="c",
        labels={"alertname": "HighResponseTime"},
    )
    process_pending()
    got = {a.title: (a.rule.key if a.rule else None, a.severity_id) for a in Alert.objects.all()}
    assert got == {"a": (None, 3), "b": (None, 4), "c": ("response_time", 2)}


def test_first_rule_by_position_wins(client, django_capture_on_commit_callbacks, generic):
    AlertRule.objects.filter(key="disk_space").update(match_values=["Overlap"], position=1)
    AlertRule.objects.filter(key="cpu_usage").update(match_values=["Overlap"], position=2)
    fire(client, django_capture_on_commit_callbacks, generic, labels={"alertname": "overlap"})
    process_pending()
    assert Alert.objects.get().rule.key == "disk_space"


@pytest.mark.parametrize(
    "label, severity", [("critical", 1), ("error", 2), ("warning", 3), ("info", 4), ("page", 4)]
)
def test_alertmanager_severity_label_when_no_rule_matches(
    client, django_capture_on_commit_callbacks, label, severity
):
    integration = make_integration("alertmanager", secret="", default_severity=4)
    body = alertmanager_payload()
    body["alerts"] = body["alerts"][:1]
    body["alerts"][0]["labels"] = {"alertname": "QueueBacklog", "severity": label}
    post(client, hook_path(integration), body, capture=django_capture_on_commit_callbacks)
    process_pending()
    assert Alert.objects.get().severity_id == severity


def test_a_more_severe_alert_joining_raises_the_incident(
    client, django_capture_on_commit_callbacks, generic
):
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Slow checkout",
        group_key="checkout",
        labels={"alertname": "HighResponseTime"},
    )
    process_pending()
    incident = Incident.objects.get()
    assert incident.severity_id == 2
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Checkout errors",
        group_key="checkout",
        labels={"alertname": "HighErrorRate"},
    )
    # A less severe one never lowers it.
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Checkout CPU",
        group_key="checkout",
        labels={"alertname": "HighCpuUsage"},
    )
    process_pending()
    incident.refresh_from_db()
    assert incident.severity_id == 1
    assert Alert.objects.filter(incident=incident).count() == 3
    raised = incident.timeline.get(kind=Kind.SEVERITY)
    assert raised.source == "webhook"
    assert "Checkout errors" in raised.message


# --- order, duplicates, failures ----------------------------------------------------------------


def test_resolve_processed_before_its_firing_leaves_it_resolved(
    client, django_capture_on_commit_callbacks, generic
):
    fire(client, django_capture_on_commit_callbacks, generic, title="Flap", dedup_key="flap")
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Flap",
        dedup_key="flap",
        status="resolved",
    )
    first, second = WebhookDelivery.objects.order_by("pk")
    # Processed out of order (two workers, a retried task): the later word wins.
    assert alert_delivery_process_task(second.pk) == "processed"
    assert alert_delivery_process_task(first.pk) == "processed"
    assert list(Alert.objects.values_list("status", flat=True)) == ["resolved"]
    assert not Incident.objects.exists()


def test_stale_resolve_does_not_resolve_a_later_firing(
    client,
    django_capture_on_commit_callbacks,
    generic,
    at_now,  # noqa: F811 (the traveller)
):
    fire(client, django_capture_on_commit_callbacks, generic, title="Flap", dedup_key="flap")
    process_pending()
    fire(
        client,
        django_capture_on_commit_callbacks,
        generic,
        title="Flap",
        dedup_key="flap",
        status="resolved",
    )
    at_now.shift(1)  # the same body signed a second later: a new request, not a replay
    fire(client, django_capture_on_commit_callbacks, generic, title="Flap", dedup_key="flap")
    resolve, refire = WebhookDelivery.objects.filter(status="pending").order_by("pk")
    alert_delivery_process_task(refire.pk)
    alert_delivery_process_task(resolve.pk)
    alert = Alert.objects.get()
    assert (alert.status, alert.count) == ("firing", 2)


def test_a_delivery_writes_its_fresh_alerts_and_skips_one_a_later_resolve_made_stale(
    client,
    django_capture_on_commit_callbacks,
    service,
    at_now,  # noqa: F811
):
    # Two alerts fire in one notification; a later one resolves the first alone. Processed
    # out of order, the resolve is applied first: the first alert's firing is then stale and
    # neither written nor counted, while the second one opens the incident.
    am = make_integration("alertmanager", service=service)
    firing = alertmanager_payload()
    first, second = (a["fingerprint"] for a in firing["alerts"])
    headers = {"Authorization": f"Bearer {am.secret}"}
    capture = django_capture_on_commit_callbacks
    post(client, hook_path(am), firing, capture=capture, **headers)
    at_now.shift(1)
    resolving = copy.deepcopy(firing)
    resolving["alerts"] = [
        {**resolving["alerts"][0], "status": "resolved", "endsAt": "2026-11-27T09:44:30Z"}
    ]
    resolving["status"] = "resolved"
    post(client, hook_path(am), resolving, capture=capture, **headers)
    older, later = WebhookDelivery.objects.order_by("pk")
    assert alert_delivery_process_task(later.pk) == "processed"
    assert alert_delivery_process_task(older.pk) == "processed"
    alerts = dict(Alert.objects.values_list("fingerprint", "status"))
    assert alerts == {first: "resolved", second: "firing"}
    assert Alert.objects.get(fingerprint=first).count == 1
    incident = Incident.objects.get()
    assert list(incident.alerts.values_list("fingerprint", flat=True)) == [second]


def test_a_task_run_twice_processes_once(client, django_capture_on_commit_callbacks, generic):
    fire(client, django_capture_on_commit_callbacks, generic, title="Once")
    delivery = WebhookDelivery.objects.get()
    assert alert_delivery_process_task(delivery.pk) == "processed"
    assert alert_delivery_process_task(delivery.pk) == "skipped"
    assert Alert.objects.get().count == 1


def test_failed_processing_is_recorded_retried_and_finally_failed(
    client, django_capture_on_commit_callbacks, generic, superuser
):
    # A stored body that no longer reads as an alert (say, written by an older version).
    delivery = WebhookDelivery.objects.create(integration=generic, body='{"no": "title"}')
    for attempt in range(1, 6):
        assert alert_delivery_process_task(delivery.pk) == "failed"
        delivery.refresh_from_db()
        assert delivery.attempts == attempt
        assert "PayloadError" in delivery.error
    assert delivery.status == DeliveryStatus.FAILED
    assert alert_delivery_process_task(delivery.pk) == "skipped"
    assert not Alert.objects.exists()

    # Once the cause is fixed, an administrator processes it again from the admin.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(body='{"title": "Fixed"}')
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/admin/incidents/webhookdelivery/",
            {"action": "process_again", "_selected_action": [delivery.pk]},
            follow=True,
        )
    assert "1 delivery(ies) queued again." in response.content.decode()
    assert len(callbacks) == 1
    assert process_pending() == ["processed"]
    assert Alert.objects.get().title == "Fixed"


def test_the_sweep_requeues_deliveries_whose_task_was_lost(
    client, django_capture_on_commit_callbacks, generic
):
    # The task queued after commit is lost (the callback never runs): the row stays pending.
    fire(client, django_capture_on_commit_callbacks, generic, title="Lost")
    assert deliveries_requeue() == 0  # too recent: its task may still be on its way
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert alert_delivery_sweep_task() == 1
        process_pending()
        assert alert_delivery_sweep_task() == 0
    assert Alert.objects.get().title == "Lost"


def test_admin_lists_alerts_and_deliveries(
    client, django_capture_on_commit_callbacks, generic, superuser
):
    fire(client, django_capture_on_commit_callbacks, generic, title="Shown in the admin")
    process_pending()
    client.force_login(superuser)
    alerts = client.get("/admin/incidents/alert/")
    assert "Shown in the admin" in alerts.content.decode()
    assert Incident.objects.get().number in alerts.content.decode()
    alert = Alert.objects.get()
    assert client.get(f"/admin/incidents/alert/{alert.pk}/change/").status_code == 200
    assert client.get("/admin/incidents/webhookdelivery/").status_code == 200
    assert client.get("/admin/incidents/alertrule/").status_code == 200
    rule = AlertRule.objects.get(key="error_rate")
    assert client.get(f"/admin/incidents/alertrule/{rule.pk}/change/").status_code == 200


def test_timeline_entries_are_in_the_incident_timeline_api(
    client, django_capture_on_commit_callbacks, generic, incident_manager
):
    fire(client, django_capture_on_commit_callbacks, generic, title="Visible", group_key="g")
    fire(client, django_capture_on_commit_callbacks, generic, title="Joined", group_key="g")
    process_pending()
    incident = Incident.objects.get()
    client.force_login(incident_manager)
    entries = client.get(f"/api/v1/incidents/{incident.number}/timeline/").json()["results"]
    kinds = [e["kind"] for e in entries]
    assert kinds.count("alert") == 2


def test_deliveries_kick_drains_once_and_the_drain_processes_fresh_deliveries(
    client, django_capture_on_commit_callbacks, generic
):
    kick_flag.clear()
    # The view's after-commit callback is the kick: the first queues drains, the next ones
    # find drains already queued and cost nothing more.
    assert deliveries_kick() is True
    assert deliveries_kick() is False
    for title in ("one", "two", "three"):
        fire(client, django_capture_on_commit_callbacks, generic, title=title)
    failed = WebhookDelivery.objects.create(integration=generic, body="{}", attempts=1)
    # A drain clears the flag before looking, then takes every fresh delivery, oldest first;
    # one that already failed waits for the sweep's retry.
    assert alert_deliveries_drain_task() == 3
    assert sorted(Alert.objects.values_list("title", flat=True)) == ["one", "three", "two"]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 1)
    assert deliveries_kick() is True
    kick_flag.clear()
