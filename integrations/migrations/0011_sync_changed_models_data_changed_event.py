"""The `data-changed` webhook event, and what it reports: the models a sync changed
(`Sync.changed_models`, kept across the sync's attempts)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0010_syncedrecord_no_integration_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="sync",
            name="changed_models",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="event_type",
            field=models.CharField(
                choices=[
                    ("integration-created", "Integration Created"),
                    ("integration-state-changed", "Integration State Changed"),
                    ("integration-deleted", "Integration Deleted"),
                    ("sync-finished", "Sync Finished"),
                    ("connection-flow-failed", "Connection Flow Failed"),
                    ("data-changed", "Data Changed"),
                    ("integration-auth-failing", "Integration Auth Failing"),
                ],
                max_length=40,
            ),
        ),
    ]
