"""Seed the escalation matrix of §5.1 value for value, and its permissions for the role groups.

| Time Elapsed | Severity 1         | Severity 2 | Severity 3 |
| 30 minutes   | IT Manager         | IT Manager | -          |
| 1 hour       | CTO                | IT Manager | IT Manager |
| 2 hours      | CEO                | CTO        | -          |
| 4 hours      | Board notification | CTO        | CTO        |
"""

from datetime import timedelta

from django.db import migrations

MATRIX = [
    (timedelta(minutes=30), {1: "it_manager", 2: "it_manager"}),
    (timedelta(hours=1), {1: "cto", 2: "it_manager", 3: "it_manager"}),
    (timedelta(hours=2), {1: "ceo", 2: "cto"}),
    (timedelta(hours=4), {1: "board", 2: "cto", 3: "cto"}),
]

VIEW = ["view_escalationstep", "view_incidentescalation", "view_escalationevent",
        "view_notification"]


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    EscalationStep = apps.get_model("escalation", "EscalationStep")
    EscalationContact = apps.get_model("incidents", "EscalationContact")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    levels = {c.key: c for c in EscalationContact.objects.all()}
    for elapsed, row in MATRIX:
        for severity, key in row.items():
            EscalationStep.objects.update_or_create(
                severity_id=severity, elapsed=elapsed, defaults={"target": levels[key]}
            )
    perms = list(Permission.objects.filter(content_type__app_label="escalation", codename__in=VIEW))
    for group in Group.objects.filter(
        name__in=["Incident Manager", "Technical Lead", "Communications Lead",
                  "Business Liaison", "Viewer"]
    ):
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("escalation", "0001_initial"),
        ("incidents", "0002_seed_policy"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
