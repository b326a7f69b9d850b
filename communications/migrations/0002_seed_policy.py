"""The communication policy's defaults (§5.2: Sev 1-2 updates approved by the business liaison,
the first update within 30 minutes of confirmation, reminders at 15 and 25 minutes), the status
page's settings row, and the permissions of the role groups: the communications lead drafts and
publishes, the business liaison approves, everyone reads."""

from django.db import migrations

VIEW = [
    "view_communicationpolicy",
    "view_statuspagesettings",
    "view_componentgroup",
    "view_component",
    "view_componentstatusinterval",
    "view_statusupdate",
    "view_statusupdatecomponent",
    "view_firstupdateclock",
    "view_maintenance",
]
GROUP_PERMISSIONS = {
    "Incident Manager": VIEW + ["add_statusupdate", "change_statusupdate"],
    "Technical Lead": VIEW,
    "Communications Lead": VIEW
    + [
        "add_statusupdate",
        "change_statusupdate",
        "publish_statusupdate",
        "add_maintenance",
        "change_maintenance",
        "add_component",
        "change_component",
        "add_componentgroup",
        "change_componentgroup",
        "change_statuspagesettings",
    ],
    "Business Liaison": VIEW + ["approve_statusupdate"],
    "Viewer": VIEW,
}


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("communications")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    apps.get_model("communications", "CommunicationPolicy").objects.get_or_create(pk=1)
    apps.get_model("communications", "StatusPageSettings").objects.get_or_create(pk=1)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(
            content_type__app_label="communications", codename__in=codenames
        )
        missing = set(codenames) - set(perms.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("communications", "0001_initial"),
        ("incidents", "0002_seed_policy"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
