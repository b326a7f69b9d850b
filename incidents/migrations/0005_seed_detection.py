"""Seed the alert configuration table of §7.2 value for value, the security team contact that
"security team alert" notifies, and read access to alerts and alert rules for every role
group. Integrations stay with administrators (no group holds their permissions).

Severity words map to levels by the severity table's names (§2.1): Critical → Sev 1,
High → Sev 2, Medium → Sev 3, Low → Sev 4.
"""

from decimal import Decimal

from django.db import migrations

# key, name, match values (alertname), threshold, unit, severity level, action, description
ALERT_RULES = [
    (
        "response_time",
        "Response Time",
        ["HighResponseTime", "ResponseTimeHigh", "HighLatency", "SlowResponses"],
        Decimal("5"),
        "s",
        2,
        "page_oncall",
        "Response time above 5 seconds: High, page the on-call engineer.",
    ),
    (
        "error_rate",
        "Error Rate",
        ["HighErrorRate", "ErrorRateHigh", "High5xxRate"],
        Decimal("5"),
        "%",
        1,
        "escalate",
        "Error rate above 5 %: Critical, escalate immediately.",
    ),
    (
        "cpu_usage",
        "CPU Usage",
        ["HighCpuUsage", "HighCPUUsage", "CpuUsageHigh", "CPUUsageHigh"],
        Decimal("90"),
        "%",
        3,
        "monitor",
        "CPU usage above 90 %: Medium, monitor and investigate.",
    ),
    (
        "disk_space",
        "Disk Space",
        ["DiskSpaceHigh", "DiskSpaceLow", "HighDiskUsage", "DiskUsageHigh"],
        Decimal("85"),
        "%",
        2,
        "immediate_attention",
        "Disk space used above 85 %: High, immediate attention.",
    ),
    (
        "failed_logins",
        "Failed Logins",
        ["FailedLogins", "HighFailedLogins", "FailedLoginsHigh"],
        Decimal("100"),
        "per minute",
        2,
        "security",
        "Failed logins above 100 a minute: High, security team alert.",
    ),
]
# Grafana's default rule layout is query A, reduce B, threshold C: B holds the value.
VALUE_KEYS = ["value", "B"]
READ_DETECTION = ["view_alert", "view_alertrule"]
ROLE_GROUPS = [
    "Incident Manager",
    "Technical Lead",
    "Communications Lead",
    "Business Liaison",
    "Viewer",
]


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    AlertRule = apps.get_model("incidents", "AlertRule")
    Contact = apps.get_model("incidents", "Contact")
    EscalationContact = apps.get_model("incidents", "EscalationContact")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    for position, (key, name, values, threshold, unit, level, action, text) in enumerate(
        ALERT_RULES, start=1
    ):
        AlertRule.objects.update_or_create(
            key=key,
            defaults={
                "name": name,
                "match_label": "alertname",
                "match_values": values,
                "threshold": threshold,
                "unit": unit,
                "value_keys": VALUE_KEYS,
                "severity_id": level,
                "action": action,
                "enabled": True,
                "position": position * 10,
                "description": text,
            },
        )

    contact, _ = Contact.objects.get_or_create(
        name="Security team (placeholder: set the real contact)",
        defaults={"email": "security-team@example.com"},
    )
    position = (EscalationContact.objects.order_by("-position").values_list(
        "position", flat=True
    ).first() or 0) + 1
    EscalationContact.objects.get_or_create(
        key="security_team",
        defaults={"name": "Security team", "contact": contact, "position": position},
    )

    perms = list(
        Permission.objects.filter(
            content_type__app_label="incidents", codename__in=READ_DETECTION
        )
    )
    for group in Group.objects.filter(name__in=ROLE_GROUPS):
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0004_detection"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
