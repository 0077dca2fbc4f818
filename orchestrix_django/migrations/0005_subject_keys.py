"""The data keys of data subjects (orchestrix_django.storage.personal_data: crypto-shredding)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orchestrix_django", "0004_append_function"),
    ]

    operations = [
        migrations.CreateModel(
            name="SubjectKey",
            fields=[
                ("subject_id", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("key", models.BinaryField(null=True)),
                ("wrapped", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "subject key",
                "db_table": "orchestrix_subject_key",
            },
        ),
    ]
