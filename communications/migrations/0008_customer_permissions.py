"""Who works with customers and enterprise direct contact: every role group reads customers,
their contacts and the direct-contact tasks; the communications lead and the business liaison
keep the customer records (add, change, delete, import); the incident manager and the
communications lead may close anyone's direct-contact task (an owner closes their own)."""

from django.db import migrations

VIEW = ["view_customer", "view_customercontact", "view_directcontacttask"]
KEEP = [
    "add_customer",
    "change_customer",
    "delete_customer",
    "add_customercontact",
    "change_customercontact",
    "delete_customercontact",
]
CLOSE = ["change_directcontacttask"]
GROUP_PERMISSIONS = {
    "Incident Manager": VIEW + CLOSE,
    "Technical Lead": VIEW,
    "Communications Lead": VIEW + KEEP + CLOSE,
    "Business Liaison": VIEW + KEEP,
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
    dependencies = [("communications", "0007_message_provider_id")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
