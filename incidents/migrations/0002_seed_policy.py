"""Seed the procedure's tables (§2.1, §2.2, §3.1, §5.1 escalation levels) value for value, and
one permission group per response role plus a read-only Viewer group.

Contacts are the procedure's placeholders ([Name] - [Phone] - [Email]); replace them in the
admin (Policy → Contacts).
"""

from datetime import timedelta

from django.db import migrations

SEVERITIES = [
    {
        "level": 1,
        "name": "Critical",
        "definition": "Complete system outage or critical functionality unavailable",
        "business_impact": "High - Major business disruption",
        "examples": "Website completely down\nPayment processing unavailable\n"
        "Data breach confirmed\nCritical security vulnerability",
        "response_target": timedelta(minutes=15),
        "resolution_target": timedelta(hours=4),
        "notification_channels": ["phone", "slack", "email"],
    },
    {
        "level": 2,
        "name": "High",
        "definition": "Significant performance degradation or important features unavailable",
        "business_impact": "Medium - Moderate business disruption",
        "examples": "Slow response times affecting users\nNon-critical features unavailable\n"
        "Database performance issues\nAuthentication system problems",
        "response_target": timedelta(hours=1),
        "resolution_target": timedelta(hours=8),
        "notification_channels": ["slack", "email"],
    },
    {
        "level": 3,
        "name": "Medium",
        "definition": "Minor performance issues or non-essential features affected",
        "business_impact": "Low - Minor business disruption",
        "examples": "Cosmetic UI issues\nNon-critical reporting problems\n"
        "Minor performance degradation\nSingle user access issues",
        "response_target": timedelta(hours=4),
        "resolution_target": timedelta(hours=24),
        "notification_channels": ["email", "slack"],
    },
    {
        "level": 4,
        "name": "Low",
        "definition": "Minimal impact issues or enhancement requests",
        "business_impact": "Minimal - No immediate business impact",
        "examples": "Documentation updates\nFeature enhancement requests\n"
        "Minor UI improvements\nNon-urgent system optimizations",
        "response_target": timedelta(hours=24),
        "resolution_target": timedelta(hours=72),
        "notification_channels": ["email"],
    },
]

# urgency -> impact -> priority (§2.2)
PRIORITY_MATRIX = {
    "high": {"high": 1, "medium": 2, "low": 3},
    "medium": {"high": 2, "medium": 3, "low": 4},
    "low": {"high": 3, "medium": 4, "low": 4},
}

ROLES = [
    (
        "incident_manager",
        "Incident Manager",
        [
            "Coordinate incident response activities",
            "Manage stakeholder communications",
            "Ensure proper escalation procedures",
            "Document incident details and resolution",
        ],
    ),
    (
        "technical_lead",
        "Technical Lead",
        [
            "Lead technical investigation",
            "Coordinate with development teams",
            "Implement technical solutions",
            "Validate fixes and resolutions",
        ],
    ),
    (
        "communications_lead",
        "Communications Lead",
        [
            "Manage external communications",
            "Update status pages",
            "Coordinate with customer support",
            "Prepare incident reports",
        ],
    ),
    (
        "business_liaison",
        "Business Liaison",
        [
            "Assess business impact",
            "Coordinate with business stakeholders",
            "Provide business context for decisions",
            "Approve communication content",
        ],
    ),
]

ESCALATION_LEVELS = [
    ("it_manager", "IT Manager"),
    ("cto", "CTO"),
    ("ceo", "CEO"),
    ("board", "Board"),
]

_VIEW_ALL = [
    "view_incident",
    "view_timelineentry",
    "view_roleassignment",
    "view_service",
    "view_severitylevel",
    "view_prioritymatrixcell",
    "view_responserole",
    "view_contact",
    "view_escalationcontact",
    "view_slabreach",
]
_RESPONDER = ["add_incident", "change_incident", "add_timelineentry"]
GROUP_PERMISSIONS = {
    "Incident Manager": _VIEW_ALL
    + _RESPONDER
    + [
        "acknowledge_incident",
        "investigate_incident",
        "mitigate_incident",
        "monitor_incident",
        "resolve_incident",
        "reopen_incident",
        "close_incident",
        "cancel_incident",
        "change_incident_severity",
        "assign_incident_roles",
        "add_service",
        "change_service",
        "change_contact",
    ],
    "Technical Lead": _VIEW_ALL
    + _RESPONDER
    + [
        "acknowledge_incident",
        "investigate_incident",
        "mitigate_incident",
        "monitor_incident",
        "resolve_incident",
        "reopen_incident",
        "change_incident_severity",
        "add_service",
        "change_service",
    ],
    "Communications Lead": _VIEW_ALL
    + ["change_incident", "add_timelineentry", "acknowledge_incident"],
    "Business Liaison": _VIEW_ALL + ["change_incident", "add_timelineentry"],
    "Viewer": _VIEW_ALL,
}
ROLE_GROUPS = {
    "incident_manager": "Incident Manager",
    "technical_lead": "Technical Lead",
    "communications_lead": "Communications Lead",
    "business_liaison": "Business Liaison",
}


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    SeverityLevel = apps.get_model("incidents", "SeverityLevel")
    PriorityMatrixCell = apps.get_model("incidents", "PriorityMatrixCell")
    Contact = apps.get_model("incidents", "Contact")
    ResponseRole = apps.get_model("incidents", "ResponseRole")
    EscalationContact = apps.get_model("incidents", "EscalationContact")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    for values in SEVERITIES:
        SeverityLevel.objects.update_or_create(level=values["level"], defaults=values)
    for urgency, row in PRIORITY_MATRIX.items():
        for impact, priority in row.items():
            PriorityMatrixCell.objects.update_or_create(
                urgency=urgency, impact=impact, defaults={"priority": priority}
            )

    groups = {}
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(
            content_type__app_label="incidents", codename__in=codenames
        )
        missing = set(codenames) - set(perms.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*perms)
        groups[name] = group

    for position, (key, name, responsibilities) in enumerate(ROLES, start=1):
        slug = key.replace("_", "-")
        primary, _ = Contact.objects.get_or_create(
            name=f"[Name] – {name} primary contact",
            defaults={"email": f"{slug}-primary@example.com", "phone": "[Phone]"},
        )
        backup, _ = Contact.objects.get_or_create(
            name=f"[Name] – {name} backup contact",
            defaults={"email": f"{slug}-backup@example.com", "phone": "[Phone]"},
        )
        ResponseRole.objects.update_or_create(
            key=key,
            defaults={
                "name": name,
                "responsibilities": "\n".join(responsibilities),
                "primary_contact": primary,
                "backup_contact": backup,
                "group": groups[ROLE_GROUPS[key]],
                "position": position,
            },
        )

    for position, (key, name) in enumerate(ESCALATION_LEVELS, start=1):
        contact, _ = Contact.objects.get_or_create(
            name=f"[Name] – {name}",
            defaults={"email": f"{key.replace('_', '-')}@example.com", "phone": "[Phone]"},
        )
        EscalationContact.objects.update_or_create(
            key=key, defaults={"name": name, "contact": contact, "position": position}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
