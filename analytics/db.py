"""Migrations for the `analytics` tables (own Alembic version table)."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "VERSION_TABLE", "migrate"]

from pathlib import Path

from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_analytics"


def migrate(engine: Engine) -> None:
    """Upgrade the `analytics` tables to the newest migration (version table
    `alembic_version_analytics`)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
