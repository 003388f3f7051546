"""Database engine, migrations and the SQLite checkpointer/store for `graphs`."""

from __future__ import annotations

__all__ = ["affected", "checkpoint_connection", "make_engine", "migrate", "open_checkpointer"]

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from alembic import command
from alembic.config import Config
from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy import CursorResult, Engine, Executable, create_engine, event
from sqlalchemy.orm import Session

from graphs.failpoints import armed, failpoint

BUSY_TIMEOUT_S = 30.0
_DEFERRED: Literal["DEFERRED"] = "DEFERRED"
MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine; for SQLite: WAL, a long busy timeout, no per-commit fsync (NORMAL)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the `graphs` tables to the newest migration (own version table)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", "alembic_version_graphs")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def affected(session: Session, statement: Executable) -> int:
    """Run an UPDATE/DELETE and return how many rows it changed (compare-and-set)."""
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


def checkpoint_connection(path: Path, *, autocommit: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(
        str(path),
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None if autocommit else _DEFERRED,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return conn


class _FailpointSaver(SqliteSaver):
    """A SqliteSaver with crash-test failpoints around every checkpoint write."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        failpoint("checkpoint.before_put")
        result = super().put(*args, **kwargs)
        failpoint("checkpoint.after_put")
        return result


class _RedactingSaver(_FailpointSaver):
    """Checkpoints and pending writes pass through the redactor before they are stored, so
    no secret value lands in a checkpoint blob (a resumed run re-resolves its secrets)."""

    redact: Callable[[Any], Any] = staticmethod(lambda value: value)

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return super().put(config, self.redact(checkpoint), metadata, new_versions)

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        super().put_writes(config, self.redact(list(writes)), task_id, task_path)


def open_checkpointer(path: Path, redact: Callable[[Any], Any] | None = None) -> SqliteSaver:
    """The checkpointer for a checkpoint file (strict serializer: no pickle fallback)."""
    saver: SqliteSaver
    if redact is not None:
        saver = _RedactingSaver(checkpoint_connection(path))
        saver.redact = redact
    elif armed():
        saver = _FailpointSaver(checkpoint_connection(path))
    else:
        saver = SqliteSaver(checkpoint_connection(path))
    saver.setup()
    return saver
