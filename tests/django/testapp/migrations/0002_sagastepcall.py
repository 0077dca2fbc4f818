from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("testapp", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="SagaStepCall",
            fields=[
                ("key", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("saga_id", models.CharField(max_length=255)),
                ("step", models.CharField(max_length=255)),
                ("kind", models.CharField(max_length=16)),
                ("calls", models.PositiveIntegerField(default=0)),
            ],
        ),
    ]
