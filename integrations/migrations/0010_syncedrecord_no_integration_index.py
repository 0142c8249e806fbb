"""Synced records lose their integration-only index: `syncedrecord_unique` (integration, model,
remote_id) serves every lookup by integration, and the planner, misled by stale statistics, used the
narrower index to find a sync's records one by one, filtering all of the integration's rows each time."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0009_syncedrecord_remote_deleted_at"),
    ]

    operations = [
        migrations.AlterField(
            model_name="syncedrecord",
            name="integration",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="records",
                to="integrations.integration",
            ),
        ),
    ]
