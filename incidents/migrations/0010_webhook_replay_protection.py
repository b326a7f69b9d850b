"""Replay protection of the signed webhooks: the integrations' "require a signed timestamp"
switch and the table of signatures accepted inside the replay window.

Integrations that exist when this runs get the switch off, so that their senders, which sign
the body alone, keep working until they sign timestamps; new integrations get it on."""

import django.db.models.deletion
from django.db import migrations, models

HELP = (
    "Generic and Grafana senders with a secret: refuse a signature that does not cover a "
    "timestamp (X-Vigil-Timestamp; Grafana's timestamp header). Signed timestamps are refused "
    "outside the replay window and accepted once. Off: also accept the signature of the body "
    "alone, which can be replayed (for senders not yet signing timestamps; integrations made "
    "before replay protection start off)."
)


def field(default: bool) -> models.BooleanField:
    return models.BooleanField(
        default=default, help_text=HELP, verbose_name="Require a signed timestamp"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0009_sla_breach_recorded"),
    ]

    operations = [
        # Existing rows: off (their senders sign the body alone); then on for new ones.
        migrations.AddField(model_name="integration", name="require_timestamp", field=field(False)),
        migrations.AddField(
            model_name="historicalintegration", name="require_timestamp", field=field(False)
        ),
        migrations.AlterField(
            model_name="integration", name="require_timestamp", field=field(True)
        ),
        migrations.AlterField(
            model_name="historicalintegration", name="require_timestamp", field=field(True)
        ),
        migrations.CreateModel(
            name="WebhookSignature",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "signature",
                    models.CharField(help_text="The request's HMAC-SHA256, hex.", max_length=64),
                ),
                ("signed_at", models.DateTimeField(help_text="The timestamp the sender signed.")),
                (
                    "integration",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="incidents.integration",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["signed_at"], name="webhook_signature_age")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("integration", "signature"), name="webhook_signature_once"
                    )
                ],
            },
        ),
    ]
