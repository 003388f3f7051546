"""The declarative base of every table `auth` owns (its own Alembic version table)."""

from __future__ import annotations

__all__ = ["ActorLike", "Base", "utcnow"]

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


class ActorLike(Protocol):
    """Anyone acting in a workspace: `graphs.identity.Actor` fits (auth does not import graphs)."""

    @property
    def workspace_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...
