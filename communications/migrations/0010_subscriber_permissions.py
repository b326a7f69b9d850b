"""Who sees and keeps status-page subscribers and the suppression list (personal data: email
addresses): the communications lead reads, adds webhook subscribers, removes subscribers and
keeps the suppression list; the business liaison reads both lists. The other role groups do not
see them."""

from django.db import migrations

VIEW = ["view_subscriber", "view_suppression"]
KEEP = ["add_subscriber", "delete_subscriber", "add_suppression", "delete_suppression"]
GROUP_PERMISSIONS = {
    "Communications Lead": VIEW + KEEP,
    "Business Liaison": VIEW,
}


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("communications")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

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
    dependencies = [("communications", "0009_social_post_permissions")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
