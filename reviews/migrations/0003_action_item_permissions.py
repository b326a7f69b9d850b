"""Who keeps action items: every role group reads them; the incident manager and the technical
lead add and change them; only the incident manager deletes one (before its review is
published, a rule of ``reviews.services.actions``). An item's owner may change the status of
their own item whatever their group: that is decided by the service, not by a permission."""

from django.db import migrations

VIEW = ["view_actionitem"]
KEEP = [*VIEW, "add_actionitem", "change_actionitem"]
GROUP_PERMISSIONS = {
    "Incident Manager": [*KEEP, "delete_actionitem"],
    "Technical Lead": KEEP,
    "Communications Lead": VIEW,
    "Business Liaison": VIEW,
    "Viewer": VIEW,
}


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
    dependencies = [("reviews", "0002_seed_policy_permissions")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
