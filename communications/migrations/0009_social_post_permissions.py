"""Who works with social media posts: every role group reads them; the communications lead
and incident managers edit and discard drafts (approving needs ``approve_statusupdate``, the
business liaison's, and sending ``publish_statusupdate``, the communications lead's, as for
status updates)."""

from django.db import migrations

VIEW = ["view_socialpost"]
EDIT = ["change_socialpost"]
GROUP_PERMISSIONS = {
    "Incident Manager": VIEW + EDIT,
    "Technical Lead": VIEW,
    "Communications Lead": VIEW + EDIT,
    "Business Liaison": VIEW,
    "Viewer": VIEW,
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
    dependencies = [("communications", "0008_customer_permissions")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
