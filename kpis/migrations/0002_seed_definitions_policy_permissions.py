"""The KPI policy's row (pk=1: first-contact resolution judged as "no escalation step and no
reopen", months in UTC, no report recipients yet, the survey on with 14-day links), §9.1's five
KPIs, and the permissions of the role groups:

* the Incident Manager keeps the KPI definitions and policy and regenerates monthly reports;
* every other role group (Technical Lead, Communications Lead, Business Liaison, Viewer) reads
  the KPIs, the reports and the survey results.
"""

from decimal import Decimal

from django.db import migrations

DEFINITIONS = [
    {
        "slug": "mttd",
        "name": "Mean time to detect",
        "measure": "detect",
        "target": Decimal("5"),
        "severities": [],
        "description": "§9.1: time from incident (impact start) to detection, under 5 minutes.",
    },
    {
        "slug": "time-to-respond",
        "name": "Time to respond",
        "measure": "respond",
        "target": Decimal("15"),
        "severities": [],
        "description": "§9.1: time from detection to response (acknowledgement), under 15 "
        "minutes.",
    },
    {
        "slug": "time-to-resolve-sev1",
        "name": "Time to resolve (Sev 1)",
        "measure": "resolve",
        "target": Decimal("240"),
        "severities": [1],
        "description": "§9.1: time from detection to resolution, under 4 hours for Sev 1.",
    },
    {
        "slug": "first-contact-resolution",
        "name": "First contact resolution",
        "measure": "first_contact",
        "target": Decimal("80"),
        "severities": [],
        "description": "§9.1: incidents resolved on first contact, 80 %.",
    },
    {
        "slug": "customer-satisfaction",
        "name": "Customer satisfaction",
        "measure": "satisfaction",
        "target": Decimal("4.0"),
        "severities": [],
        "description": "§9.1: post-incident survey scores, 4.0 out of 5.",
    },
]

VIEW = [
    "view_kpidefinition",
    "view_kpipolicy",
    "view_kpimonth",
    "view_kpirollup",
    "view_monthlyreport",
    "view_surveyinvitation",
]
GROUP_PERMISSIONS = {
    "Incident Manager": [
        *VIEW,
        "add_kpidefinition",
        "change_kpidefinition",
        "change_kpipolicy",
        "regenerate_monthlyreport",
    ],
    "Technical Lead": VIEW,
    "Communications Lead": VIEW,
    "Business Liaison": VIEW,
    "Viewer": VIEW,
}


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("kpis")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    apps.get_model("kpis", "KpiPolicy").objects.get_or_create(pk=1)
    KpiDefinition = apps.get_model("kpis", "KpiDefinition")
    for position, values in enumerate(DEFINITIONS):
        KpiDefinition.objects.get_or_create(
            slug=values["slug"], defaults={**values, "position": position * 10}
        )
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(content_type__app_label="kpis", codename__in=codenames)
        missing = set(codenames) - set(perms.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0001_kpis"),
        ("incidents", "0002_seed_policy"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
