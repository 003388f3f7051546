"""The effect ledger: each side-effecting call runs at most once per effect key.

Key: (workspace, run, node, tool call id). A call already recorded as done (or failed)
returns its recorded outcome instead of running again. The key's hash also travels to the
receiver as an idempotency key, which covers the window where the effect happened but the
process died before the ledger row was marked done.
"""

from __future__ import annotations

__all__ = ["EffectLedger", "LedgerOutcome", "idempotency_key"]

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from components.errors import RunFailure, ToolFailure
from graphs.failpoints import failpoint
from graphs.tables import Effect


def idempotency_key(workspace_id: str, run_id: str, node_id: str, call_id: str) -> str:
    blob = "\x1f".join((workspace_id, run_id, node_id, call_id)).encode()
    return "eff_" + hashlib.sha256(blob).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class LedgerOutcome:
    ok: bool
    result: Any
    replayed: bool


class EffectLedger:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def run_once(
        self,
        *,
        workspace_id: str,
        run_id: str,
        node_id: str,
        call_id: str,
        tool: str,
        args_hash: str,
        execute: Callable[[str, Session], Any],
        user_id: str = "",
    ) -> LedgerOutcome:
        """Run `execute(key, session)` unless the key is already settled.

        `execute` may write rows with `session` (the e-mail outbox does): they commit in the
        same transaction that marks the effect done.
        """
        key = idempotency_key(workspace_id, run_id, node_id, call_id)
        candidate = Effect(
            workspace_id=workspace_id,
            run_id=run_id,
            node_id=node_id,
            tool_call_id=call_id,
            user_id=user_id,
            idempotency_key=key,
            tool=tool,
            args_hash=args_hash,
            status="started",
            attempts=1,
            created_at=datetime.now(UTC),
        )
        recorded = self._claim(candidate)
        if recorded is not None:
            return recorded
        failpoint("effect.before_execute")
        with self._sessions() as session:
            row = session.scalars(select(Effect).where(Effect.idempotency_key == key)).one()
            try:
                result = execute(key, session)
            except ToolFailure as exc:
                session.rollback()
                return self._settle(key, ok=False, result={"error": str(exc)})
            failpoint("effect.after_execute")
            row.status, row.result, row.done_at = "done", result, datetime.now(UTC)
            session.commit()
        return LedgerOutcome(ok=True, result=result, replayed=False)

    def _claim(self, candidate: Effect) -> LedgerOutcome | None:
        """Insert the 'started' row, or read the one already there; None: go and execute."""
        key = candidate.idempotency_key
        with self._sessions() as session:
            row = session.scalars(select(Effect).where(Effect.idempotency_key == key)).first()
            if row is None:
                session.add(candidate)
                try:
                    session.commit()
                except IntegrityError:  # another worker claimed it first: read theirs
                    session.rollback()
                    row = session.scalars(select(Effect).where(Effect.idempotency_key == key)).one()
                else:
                    return None
            if row.args_hash != candidate.args_hash:
                call_id, node_id = candidate.tool_call_id, candidate.node_id
                raise RunFailure(
                    f"effect {call_id!r} of node {node_id!r} was recorded with other arguments; "
                    "it will not run again with these"
                )
            if row.status in ("done", "failed"):
                return LedgerOutcome(ok=row.status == "done", result=row.result, replayed=True)
            row.attempts += 1
            session.commit()
            return None

    def _settle(self, key: str, *, ok: bool, result: Any) -> LedgerOutcome:
        with self._sessions() as session:
            row = session.scalars(select(Effect).where(Effect.idempotency_key == key)).one()
            row.status, row.result, row.done_at = (
                ("done" if ok else "failed"),
                result,
                datetime.now(UTC),
            )
            session.commit()
        return LedgerOutcome(ok=ok, result=result, replayed=False)
