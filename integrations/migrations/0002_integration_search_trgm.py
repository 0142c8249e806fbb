"""Trigram index for the dashboard's integration search (PostgreSQL only).

The search is `UPPER(organization) LIKE UPPER('%term%') OR UPPER(origin_id) LIKE UPPER('term%')`
(Django's icontains/istartswith). A trigram GIN index on exactly those expressions turns a walk
of the whole environment into a bitmap lookup, and gives the planner statistics on the
expressions so it estimates how many rows a search matches. SQLite (the demo) has neither
pg_trgm nor GIN and keeps scanning, which is fine at demo sizes.

Built CONCURRENTLY so upgrading a large installation does not block writes to integrations.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEX = "integration_search_trgm_idx"


class PostgreSQLOnly:
    """Runs the wrapped operation on PostgreSQL and does nothing elsewhere, in both directions."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class TrigramOnPostgreSQL(PostgreSQLOnly, TrigramExtension):
    pass


class IndexSQLOnPostgreSQL(PostgreSQLOnly, migrations.RunSQL):
    pass


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("integrations", "0001_initial")]

    operations = [
        TrigramOnPostgreSQL(),
        IndexSQLOnPostgreSQL(
            sql=f"""
                CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON integrations_integration USING gin (
                    UPPER(end_user_organization_name::text) gin_trgm_ops,
                    UPPER(end_user_origin_id::text) gin_trgm_ops
                )
            """,
            reverse_sql=f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}",
        ),
    ]
