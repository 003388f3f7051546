"""The effect ledger: each side-effecting call runs at most once per effect key.

Key: (workspace, run, node, tool call id). A call already recorded as done (or failed)
returns its recorded outcome instead of running again. The key's hash also travels to the
receiver as an idempotency key, which covers the window where the effect happened but the
process died before the ledger row was marked done.

A fork (see `graphs.forks`) has a ledger of its own whose look-ups fall back to the effects
its origin runs recorded for the same node, tool call id and call: one already done is
answered from the origin's record, one the origin started but did not finish runs again
under the origin's idempotency key, so the receiver can tell.
"""

from __future__ import annotations

__all__ = ["EffectLedger", "LedgerOutcome", "call_hash", "idempotency_key"]

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from components.errors import RunFailure, ToolFailure
from components.gates import canonical_json
from graphs.failpoints import failpoint
from graphs.tables import Effect, RunFork

log = logging.getLogger(__name__)
MAX_FORK_DEPTH = 64


def idempotency_key(workspace_id: str, run_id: str, node_id: str, call_id: str) -> str:
    blob = "\x1f".join((workspace_id, run_id, node_id, call_id)).encode()
    return "eff_" + hashlib.sha256(blob).hexdigest()[:40]


def call_hash(tool: str, args: Mapping[str, Any]) -> str:
    """Hash of the call alone (tool and canonical arguments): equal in every run, so a fork
    recognises the call its origin made."""
    return hashlib.sha256(canonical_json({"tool": tool, "args": args}).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LedgerOutcome:
    ok: bool
    result: Any
    replayed: bool


class EffectLedger:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._origins: dict[str, tuple[str, ...]] = {}  # run id → its fork origins, nearest first
        self._origins_lock = threading.Lock()

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
        call_hash: str | None = None,
    ) -> LedgerOutcome:
        """Run `execute(key, session)` unless the key is already settled.

        `execute` may write rows with `session` (the e-mail outbox does): they commit in the
        same transaction that marks the effect done. In a fork, the same call recorded by an
        origin run answers for it (see the module docstring).
        """
        key = idempotency_key(workspace_id, run_id, node_id, call_id)
        inherited = self._inherited(workspace_id, run_id, node_id, call_id, tool, call_hash)
        if inherited is not None and inherited.status == "done":
            log.info(
                "run %s: %s of node %s answered from run %s's ledger",
                run_id,
                call_id,
                node_id,
                inherited.run_id,
            )
            return LedgerOutcome(ok=True, result=inherited.result, replayed=True)
        send_key = key if inherited is None else inherited.idempotency_key
        candidate = Effect(
            workspace_id=workspace_id,
            run_id=run_id,
            node_id=node_id,
            tool_call_id=call_id,
            user_id=user_id,
            idempotency_key=key,
            tool=tool,
            args_hash=args_hash,
            call_hash=call_hash,
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
                result = execute(send_key, session)
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

    # --- forks -----------------------------------------------------------------------
    def _inherited(
        self,
        workspace_id: str,
        run_id: str,
        node_id: str,
        call_id: str,
        tool: str,
        call: str | None,
    ) -> Row[Any] | None:
        """The nearest origin run's record of the same call at the same place, if any."""
        origins = self._fork_origins(workspace_id, run_id)
        if not origins:
            return None
        query = select(
            Effect.run_id,
            Effect.status,
            Effect.result,
            Effect.idempotency_key,
            Effect.tool,
            Effect.call_hash,
        ).where(
            Effect.workspace_id == workspace_id,
            Effect.run_id.in_(origins),
            Effect.node_id == node_id,
            Effect.tool_call_id == call_id,
        )
        with self._sessions() as session:
            rows = {row.run_id: row for row in session.execute(query)}
        for origin in origins:
            row = rows.get(origin)
            # a row recorded before call hashes existed counts as the same call (never repeat)
            if row is not None and row.tool == tool and row.call_hash in (None, call):
                return row
        return None

    def _fork_origins(self, workspace_id: str, run_id: str) -> tuple[str, ...]:
        """The runs `run_id` was forked from, nearest first (empty for an ordinary run)."""
        with self._origins_lock:
            cached = self._origins.get(run_id)
        if cached is not None:
            return cached
        origins: list[str] = []
        current = run_id
        with self._sessions() as session:
            while len(origins) < MAX_FORK_DEPTH:
                origin = session.scalar(
                    select(RunFork.origin_run_id).where(
                        RunFork.run_id == current, RunFork.workspace_id == workspace_id
                    )
                )
                if origin is None or origin in origins:
                    break
                origins.append(origin)
                current = origin
        with self._origins_lock:
            if len(self._origins) >= 10_000:
                self._origins.clear()
            self._origins[run_id] = tuple(origins)
        return tuple(origins)
