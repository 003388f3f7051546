"""Alembic environment for the `graphs` tables (run through graphs.db.migrate)."""

from alembic import context

from graphs.tables import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.get_main_option("version_table") or "alembic_version_graphs",
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
