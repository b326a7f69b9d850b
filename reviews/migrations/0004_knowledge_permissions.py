"""Who keeps the knowledge base: every role group reads articles and runbook links (granted in
0002); the incident manager and the technical lead write and edit articles and add, change and
remove the runbook links of services (§8.3)."""

from django.db import migrations

KEEP = [
    "add_knowledgearticle",
    "change_knowledgearticle",
    "add_runbooklink",
    "change_runbooklink",
    "delete_runbooklink",
]
GROUP_PERMISSIONS = {"Incident Manager": KEEP, "Technical Lead": KEEP}


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("reviews")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(content_type__app_label="reviews", codename__in=codenames)
        missing = set(codenames) - set(perms.values_list("codename", flat=True))
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [("reviews", "0003_action_item_permissions")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
