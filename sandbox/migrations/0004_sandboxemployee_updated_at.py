"""Sandbox employees record when they last changed (the JSON API's `updated_after` filter), and
the JSON API pages through a company's employees by id."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sandbox", "0003_sandboxcompany_environment"),
    ]

    operations = [
        migrations.AddField(
            model_name="sandboxemployee",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.AddIndex(
            model_name="sandboxemployee",
            index=models.Index(fields=["company", "id"], name="sandbox_employee_page_idx"),
        ),
    ]
