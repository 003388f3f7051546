"""Migrations for the `auth` tables (own Alembic version table) and a small SQL helper."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "VERSION_TABLE", "affected", "migrate"]

from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Executable
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_auth"


def migrate(engine: Engine) -> None:
    """Upgrade the `auth` tables to the newest migration (version table `alembic_version_auth`)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def affected(session: Session, statement: Executable) -> int:
    """Run an UPDATE/DELETE and return how many rows it changed (compare-and-set)."""
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)
