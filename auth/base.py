"""The declarative base of every table `auth` owns (its own Alembic version table)."""

from __future__ import annotations

__all__ = ["Base", "utcnow"]

from datetime import UTC, datetime

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)
