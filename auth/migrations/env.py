"""Alembic environment for every `auth` table (run through auth.db.migrate).

`auth.tables` always; the vault, audit and OIDC modules join the metadata when they exist.
Casbin's rules table is created by sqlalchemy-adapter's own model, added by the lead.
"""

import importlib

from alembic import context

from auth.base import Base

REQUIRED = ("auth.tables",)
OPTIONAL = ("auth.vault", "auth.audit", "auth.oidc")

for _name in REQUIRED:
    importlib.import_module(_name)
for _name in OPTIONAL:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as missing:
        if missing.name != _name:  # the module exists but one of its imports is missing
            raise

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
