"""Alembic environment for every `auth` table (run through auth.db.migrate)."""

import importlib

from alembic import context

from auth.base import Base

TABLE_MODULES = ("auth.tables", "auth.rbac", "auth.vault", "auth.audit", "auth.oidc")

for _name in TABLE_MODULES:
    importlib.import_module(_name)

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.get_main_option("version_table") or "alembic_version_auth",
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
