"""The incident keeps each recorded SLA breach: a flag per target, set with the breach row."""

from django.db import migrations, models


def from_breach_rows(apps, schema_editor):
    # The breach rows are the record; the flags are derived from them once here (a plain
    # update: the apps registry's historical models have no history of their own to write).
    Incident = apps.get_model("incidents", "Incident")
    for target in ("response", "resolution"):
        Incident.objects.filter(sla_breaches__target=target).update(
            **{f"{target}_breach_recorded": True}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0008_inbound_deliveries_work_queue"),
    ]

    operations = [
        migrations.AddField(
            model_name="historicalincident",
            name="resolution_breach_recorded",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="historicalincident",
            name="response_breach_recorded",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="incident",
            name="resolution_breach_recorded",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="incident",
            name="response_breach_recorded",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.RunPython(from_breach_rows, migrations.RunPython.noop),
    ]
