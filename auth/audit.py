"""The audit log: append-only, each entry hash-chained to the one before.

    hash = sha256(canonical JSON of [seq, workspace_id, actor, action, target, details,
                                     at (UTC ISO 8601, microseconds), prev_hash])

Entry 1 chains to `GENESIS` (64 zeros). `seq` is assigned by the writer as head + 1 (it is
part of the hash), and both `seq` and `prev_hash` are unique in the database, so two writers
can never fork the chain: the loser of a race gets an integrity error and appends again on
top of the winner. Within one process a lock keeps writers from racing at all.

What `verify()` proves: editing any field of any entry, deleting entries (a gap in `seq` or a
`prev_hash` that no longer matches), inserting entries and reordering them are all detected,
and the first broken `seq` is named. What it cannot prove alone: someone with write access to
the database who recomputes the hash of every entry after the one they changed produces a
chain that verifies, and truncating the newest entries leaves a shorter valid chain. The
mitigation is anchoring: print or ship `head()` (seq and hash) somewhere the database's
writers cannot change (a ticket, a log shipper, a signed e-mail), and pass it back as
``verify(anchor=...)``: the chain must still contain that entry with that hash.

Details are JSON, run through the redactor before they are hashed and stored, so a secret
value that slips into them is stored as ``[redacted]``. Never put secret values there.
"""

from __future__ import annotations

__all__ = [
    "AUDIT_ACTIONS",
    "GENESIS",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
    "VerifyResult",
    "entry_hash",
]

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, Select, String, event, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from auth.base import ActorLike, Base, utcnow
from auth.redact import Redactor
from components.errors import Conflict, StudioError, UserError
from components.gates import canonical_json

GENESIS = "0" * 64
MAX_DETAILS_BYTES = 16_000
MAX_PAGE = 1_000
_APPEND_ATTEMPTS = 50

AUDIT_ACTIONS: Mapping[str, str] = {
    "login": "A user signed in (local password or OIDC).",
    "login_failed": "A sign-in was refused (wrong password, throttled, OIDC error).",
    "logout": "A user signed out; the session ended.",
    "user.created": "A local account was created.",
    "user.disabled": "An account was disabled: sessions ended, tokens revoked, roles removed.",
    "user.password_set": "An operator set a user's password; their sessions ended.",
    "studio.bootstrapped": "First start: the admin account and the demo workspace were made.",
    "workspace.created": "A workspace (tenant) was created.",
    "member.added": "A user was added to a workspace with a role.",
    "member.removed": "A user was removed from a workspace.",
    "member.role_changed": "A member's role in a workspace changed.",
    "token.created": "An API token was issued (its hash only is stored).",
    "token.revoked": "An API token was revoked.",
    "secret.created": "A secret was added to a workspace's vault (name only).",
    "secret.updated": "A secret's value was replaced (name only).",
    "secret.deleted": "A secret was deleted from a workspace's vault.",
    "secret.used": "A run or provider resolved a secret's value (name only).",
    "vault.key_rotated": "Every secret was re-encrypted under a new vault key.",
    "graph.created": "A graph was created with its first version.",
    "graph.saved": "A draft version of a graph was saved.",
    "graph.published": "A graph version was saved and published (new runs start on it).",
    "graph.deleted": "A graph was removed from the library (its versions stay for runs).",
    "graph.imported": "A graph document was imported.",
    "graph.exported": "A graph document was exported.",
    "approval.decided": "An approval was approved, edited, rejected or answered.",
    "approval.escalated": "An approval's timeout passed: only admins who did not start the "
    "run may decide it now.",
    "approval.overdue": "An approval's timeout passed; it stays pending, marked overdue.",
    "run.cancelled": "A run was cancelled.",
    "run.forked": "A run was started from a past step of another run (state edits listed).",
    "run.retried": "A failed run was started again from the step it failed at.",
    "schedule.set": "A graph's run schedule (cron, time zone, input) was set or changed.",
    "schedule.deleted": "A graph's run schedule was removed.",
    "budget.created": "A budget (workspace, user, graph or run; amount per period) was set.",
    "budget.changed": "A budget's amount or action on breach changed.",
    "budget.deleted": "A budget was removed.",
    "price.set": "A workspace's own price of a model (per million tokens) was set.",
    "price.deleted": "A workspace's own price of a model was removed.",
    "policy.tier_raised": "Workspace policy raised a tool's approval tier (never lowers it).",
}


class AuditEntry(Base):
    """One audit entry. Never updated or deleted by the studio (the ORM refuses to)."""

    __tablename__ = "audit_entries"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    workspace_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(400), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


def _refuse_change(_mapper: Any, _connection: Any, target: AuditEntry) -> None:
    raise StudioError(f"audit entry {target.seq} is append-only: it cannot be changed")


event.listen(AuditEntry, "before_update", _refuse_change)
event.listen(AuditEntry, "before_delete", _refuse_change)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    workspace_id: str | None
    actor: str
    action: str
    target: str
    details: Mapping[str, Any]
    at: datetime
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """`checked` counts the entries found intact before the first broken one (if any)."""

    ok: bool
    checked: int
    first_broken_seq: int | None
    reason: str


def _utc(at: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes, which are stored as UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def entry_hash(
    seq: int,
    workspace_id: str | None,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    at: datetime,
    prev_hash: str,
) -> str:
    """The chain hash of one entry (hex sha256 of canonical JSON)."""
    when = _utc(at).isoformat(timespec="microseconds")
    fields = [seq, workspace_id, actor, action, target, details, when, prev_hash]
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def _record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        row.seq,
        row.workspace_id,
        row.actor,
        row.action,
        row.target,
        row.details,
        _utc(row.at),
        row.prev_hash,
        row.hash,
    )


def _recomputed(row: AuditEntry) -> str:
    return entry_hash(
        row.seq,
        row.workspace_id,
        row.actor,
        row.action,
        row.target,
        row.details,
        row.at,
        row.prev_hash,
    )


class AuditLog:
    """Append entries, read them per workspace, verify the whole chain."""

    verify_batch = 1_000  # entries read per query while verifying (bounded memory)

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        redactor: Redactor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._redactor = redactor if redactor is not None else Redactor()
        self._clock = clock
        self._lock = threading.Lock()

    def record(
        self,
        action: str,
        *,
        actor: str,
        workspace_id: str | None,
        target: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one entry; `workspace_id` None means system-wide (logins, users).

        `actor` is a user id or ``"system"``. Raises `UserError` for an undeclared action
        (declare it in `AUDIT_ACTIONS`, with its description) or oversized details.
        """
        if action not in AUDIT_ACTIONS:
            raise UserError(f"audit action {action!r} is not declared in AUDIT_ACTIONS")
        clean = self._clean_details(details or {})
        shown = self._redactor.redact(target)[:400]
        with self._lock:
            for _attempt in range(_APPEND_ATTEMPTS):
                try:
                    return self._append(action, actor, workspace_id, shown, clean)
                except IntegrityError:  # another process appended first: chain on top of it
                    continue
        raise Conflict(f"could not append audit entry {action!r}: the log is too busy, retry")

    def _clean_details(self, details: Mapping[str, Any]) -> dict[str, Any]:
        try:
            text = json.dumps(dict(details), default=str, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UserError(f"audit details must be JSON: {exc}") from None
        if len(text) > MAX_DETAILS_BYTES:
            raise UserError(f"audit details are larger than {MAX_DETAILS_BYTES} bytes")
        clean: dict[str, Any] = self._redactor.redact_value(json.loads(text))
        return clean

    def _append(
        self, action: str, actor: str, workspace_id: str | None, target: str, details: Any
    ) -> AuditRecord:
        with self._sessions.begin() as session:
            seq, prev = self._head(session)
            at = _utc(self._clock())
            digest = entry_hash(seq + 1, workspace_id, actor, action, target, details, at, prev)
            row = AuditEntry(
                seq=seq + 1,
                workspace_id=workspace_id,
                actor=actor,
                action=action,
                target=target,
                details=details,
                at=at,
                prev_hash=prev,
                hash=digest,
            )
            session.add(row)
            session.flush()
            return _record(row)

    @staticmethod
    def _head(session: Session) -> tuple[int, str]:
        last = session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        ).first()
        return (0, GENESIS) if last is None else (last.seq, last.hash)

    def head(self) -> tuple[int, str]:
        """The newest entry's (seq, hash): (0, GENESIS) when empty. Print it to anchor."""
        with self._sessions() as session:
            return self._head(session)

    def entries(
        self,
        scope: ActorLike | str,
        *,
        action: str | None = None,
        by: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[AuditRecord]:
        """One workspace's entries, oldest first (an actor sees its own workspace only).

        Filters: `action`, `by` (actor), `target`, `since` ≤ at < `until`; page with
        `after_seq` (the last seq of the previous page) and `limit` (at most 1,000).
        With `before_seq` the page goes the other way: newest first, entries before it
        (`before_seq=0` starts at the newest entry).
        """
        workspace_id = scope if isinstance(scope, str) else scope.workspace_id
        query = select(AuditEntry).where(AuditEntry.workspace_id == workspace_id)
        if before_seq is not None:
            if before_seq > 0:
                query = query.where(AuditEntry.seq < before_seq)
            query = query.order_by(AuditEntry.seq.desc())
        return self._page(query, action, by, target, since, until, after_seq, limit)

    def system_entries(
        self,
        *,
        action: str | None = None,
        by: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """System-wide entries (workspace_id None: logins, accounts), for operators only."""
        query = select(AuditEntry).where(AuditEntry.workspace_id.is_(None))
        return self._page(query, action, by, target, since, until, after_seq, limit)

    def _page(
        self,
        query: Select[AuditEntry],
        action: str | None,
        by: str | None,
        target: str | None,
        since: datetime | None,
        until: datetime | None,
        after_seq: int,
        limit: int,
    ) -> list[AuditRecord]:
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if by is not None:
            query = query.where(AuditEntry.actor == by)
        if target is not None:
            query = query.where(AuditEntry.target == target)
        if since is not None:
            query = query.where(AuditEntry.at >= _utc(since))
        if until is not None:
            query = query.where(AuditEntry.at < _utc(until))
        query = query.where(AuditEntry.seq > after_seq).order_by(AuditEntry.seq)
        with self._sessions() as session:
            rows = session.scalars(query.limit(max(0, min(limit, MAX_PAGE))))
            return [_record(row) for row in rows]

    def verify(self, *, anchor: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the whole chain; name the first broken entry and why.

        With `anchor` (a `head()` kept outside the database) the chain must also still
        hold that entry with that hash, which detects truncation and full recomputation.
        A row the database cannot even hand back (a field edited into garbage) is broken too.
        """
        try:
            return self._verify(anchor)
        except (ValueError, TypeError, SQLAlchemyError):
            return self._first_unreadable()

    def _first_unreadable(self) -> VerifyResult:
        with self._sessions() as session:
            seqs = list(session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))
        for count, seq in enumerate(seqs):
            try:
                with self._sessions() as session:
                    session.get(AuditEntry, seq)
            except (ValueError, TypeError, SQLAlchemyError):
                reason = f"entry {seq} is unreadable (a field is malformed): it was edited"
                return VerifyResult(False, count, seq, reason)
        raise StudioError("the audit log cannot be read; check the database file")

    def _verify(self, anchor: tuple[int, str] | None) -> VerifyResult:
        expected, prev, seen_anchor = 1, GENESIS, False
        for row in self._walk():
            broken = _check(row, expected, prev)
            if broken:
                return VerifyResult(False, expected - 1, *broken)
            if anchor is not None and row.seq == anchor[0]:
                if row.hash != anchor[1]:
                    reason = f"entry {row.seq} differs from the anchor: the chain was rewritten"
                    return VerifyResult(False, expected - 1, row.seq, reason)
                seen_anchor = True
            expected, prev = expected + 1, row.hash
        checked = expected - 1
        if anchor is not None and anchor[0] > 0 and not seen_anchor:
            reason = (
                f"the log ends at entry {checked} but the anchor names entry {anchor[0]}: "
                "entries were removed from the end"
            )
            return VerifyResult(False, checked, checked + 1, reason)
        return VerifyResult(True, checked, None, f"chain intact: {checked} entries")

    def _walk(self) -> Iterator[AuditEntry]:
        last, batch = 0, self.verify_batch
        while True:
            with self._sessions() as session:
                query = select(AuditEntry).where(AuditEntry.seq > last)
                rows = list(session.scalars(query.order_by(AuditEntry.seq).limit(batch)))
            yield from rows
            if len(rows) < batch:
                return
            last = rows[-1].seq


def _check(row: AuditEntry, expected: int, prev: str) -> tuple[int, str] | None:
    """(first broken seq, reason) when `row` does not continue the chain, else None."""
    if row.seq != expected:
        return expected, (
            f"entry {expected} is missing (the next entry is {row.seq}): "
            "entries were deleted or renumbered"
        )
    if row.prev_hash != prev:
        return row.seq, (
            f"entry {row.seq} does not chain to entry {row.seq - 1} (prev_hash mismatch): "
            "an entry was inserted, deleted, reordered, or edited with its hash recomputed"
        )
    if _recomputed(row) != row.hash:
        return row.seq, f"entry {row.seq} was edited: its contents do not match its hash"
    return None
