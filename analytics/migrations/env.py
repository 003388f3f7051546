"""Alembic environment for the `analytics` tables (run through analytics.db.migrate)."""

from alembic import context

from analytics.tables import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.get_main_option("version_table") or "alembic_version_analytics",
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
