"""Messages keep the email provider's id once sent (tracking webhooks that carry no metadata are
matched by it) and have a partial index on the ones still queued (the reconcile sweep's
backlog); the role groups that read the incident's communication may read its deliveries."""

from django.db import migrations, models

VIEW = ["view_message", "view_messageevent"]
GROUPS = ["Incident Manager", "Technical Lead", "Communications Lead", "Business Liaison", "Viewer"]


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("communications")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = list(
        Permission.objects.filter(content_type__app_label="communications", codename__in=VIEW)
    )
    if len(perms) != len(VIEW):
        raise RuntimeError(f"Permissions missing: {VIEW}")
    for name in GROUPS:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("communications", "0006_seed_stakeholder_groups"),
        ("incidents", "0010_webhook_replay_protection"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="provider_message_id",
            field=models.CharField(
                blank=True,
                db_index=True,
                help_text="The email provider's id, once sent.",
                max_length=255,
            ),
        ),
        # Threading looks up the last message each recipient got about an incident.
        migrations.AlterField(
            model_name="message",
            name="recipient",
            field=models.CharField(db_index=True, max_length=500),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("state", "queued")), fields=["id"], name="message_queued"
            ),
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
