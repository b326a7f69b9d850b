"""A trigram index on the incident title, so the admin's search by a word of the title (an
``icontains`` on any status) is an index scan on PostgreSQL instead of a scan of every title.

PostgreSQL only: it enables ``pg_trgm`` (a trusted extension since PostgreSQL 13: the database
owner may create it) and builds a GIN index on ``UPPER(title)``, the expression Django's
``icontains`` compares (``UPPER("title"::text) LIKE UPPER('%word%')``). Other databases keep
their plain search and get nothing here. The index is not part of the model's state (it exists
on one database only), so ``makemigrations`` sees no change on any of them.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEX = "incident_title_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    TrigramExtension().database_forwards("incidents", schema_editor, None, None)
    table = schema_editor.quote_name(apps.get_model("incidents", "Incident")._meta.db_table)
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON {table} USING gin (UPPER(title) gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("incidents", "0014_work_rows_published_at")]

    operations = [migrations.RunPython(create_index, drop_index)]
