"""Approval rows: one per gated call, decided once by compare-and-set.

Rows are written from the interrupts LangGraph checkpointed (never before), so an approval
node stays a pure gate. A decision is bound to the hash of the exact call shown; an edit is
re-validated and re-hashed. Who may decide is asked of an `ApprovalAuthority`.
"""

from __future__ import annotations

__all__ = [
    "DECISION_STATUS",
    "INBOX_MAX_PAGE",
    "TIMEOUT_DECIDER",
    "ApprovalAuthority",
    "ApprovalView",
    "Approvals",
    "InboxItem",
    "InboxStamp",
    "SeparationOfDuties",
]

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, Protocol, cast

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from components.base import DecisionRecord, Tier
from components.errors import Conflict, Forbidden, NotFound, UserError
from components.gates import binding_hash
from graphs.db import affected
from graphs.identity import Actor, Authorizer, LocalAuthorizer
from graphs.spec import ApprovalTimeout
from graphs.tables import Approval, Graph, Run

Decision = Literal["approve", "edit", "reject", "respond"]
DECISION_STATUS: dict[str, str] = {
    "approve": "approved",
    "edit": "edited",
    "reject": "rejected",
    "respond": "responded",
}
_DECIDED = set(DECISION_STATUS.values())
INBOX_MAX_PAGE = 200
TIMEOUT_DECIDER = "system:timeout"
"""`decided_by` of an approval rejected because nobody decided it in time."""
ArgsCheck = Callable[[str, str, Mapping[str, Any]], dict[str, Any]]
"""(graph version id, tool, edited arguments) → the arguments as the tool's schema reads
them; raises `UserError` when they do not fit."""
TimeoutsFor = Callable[[str], Mapping[str, ApprovalTimeout]]
"""Graph version id → its approval timeouts by node id."""


@dataclass(frozen=True, slots=True)
class ApprovalView:
    approval_id: str
    run_id: str
    node_id: str
    kind: str
    action: str
    args: dict[str, Any]
    tier: str
    reason: str
    description: str
    allowed: list[str]
    status: str
    run_started_by: str
    decision: str | None
    decided_args: dict[str, Any] | None
    feedback: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime
    tainted: bool | None = None  # the run had read untrusted content (None: not recorded)
    expires_at: datetime | None = None  # when `timeout_action` is taken (None: never)
    warn_at: datetime | None = None
    timeout_action: str | None = None  # "reject" | "escalate" | "leave"
    timed_out_at: datetime | None = None  # when it was taken

    @property
    def escalated(self) -> bool:
        """Timed out with 'escalate': only admins who did not start the run may decide."""
        return self.timeout_action == "escalate" and self.timed_out_at is not None

    @property
    def overdue(self) -> bool:
        """Timed out with 'leave': still pending, past its deadline."""
        return self.timeout_action == "leave" and self.timed_out_at is not None

    @property
    def required_tier(self) -> str:
        """Who may decide it now: its call's tier, or 'admin' once escalated."""
        return "admin" if self.escalated else self.tier


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An approval as the inbox lists it: with the graph its run belongs to."""

    approval: ApprovalView
    graph_id: str
    graph_name: str


@dataclass(frozen=True, slots=True)
class InboxStamp:
    """What changes whenever the inbox does: a cheap query to poll."""

    pending: int
    newest: datetime | None
    last_decided: datetime | None
    last_timed_out: datetime | None = None  # escalations and overdue marks change cards too


class ApprovalAuthority(Protocol):
    """Returns None when `actor` may decide, else the reason it may not."""

    def refusal(self, actor: Actor, approval: ApprovalView) -> str | None: ...


class SeparationOfDuties:
    """The built-in rule: `admin` calls need someone other than the run's starter."""

    def refusal(self, actor: Actor, approval: ApprovalView) -> str | None:
        if approval.tier == "admin" and actor.user_id == approval.run_started_by:
            return "an admin-tier call must be approved by someone other than the run's starter"
        return None


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _view(row: Approval, started_by: str) -> ApprovalView:
    return ApprovalView(
        approval_id=row.approval_id,
        run_id=row.run_id,
        node_id=row.node_id,
        kind=row.kind,
        action=row.action,
        args=row.args,
        tier=row.tier,
        reason=row.reason,
        description=row.description,
        allowed=row.allowed,
        status=row.status,
        run_started_by=started_by,
        decision=row.decision,
        decided_args=row.decided_args,
        feedback=row.feedback,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        created_at=row.created_at,
        tainted=row.tainted,
        expires_at=_utc(row.expires_at),
        warn_at=_utc(row.warn_at),
        timeout_action=row.timeout_action,
        timed_out_at=_utc(row.timed_out_at),
    )


def _deadline(timeout: ApprovalTimeout | None, created_at: datetime) -> dict[str, Any]:
    """The deadline columns of a new row of a node with `timeout` (none without one)."""
    if timeout is None:
        return {}
    expires_at = created_at + timedelta(seconds=timeout.after)
    warn_at = None
    if timeout.warn_before is not None and timeout.warn_before < timeout.after:
        warn_at = expires_at - timedelta(seconds=timeout.warn_before)
    return {"expires_at": expires_at, "warn_at": warn_at, "timeout_action": timeout.action}


def _lost_race(session: Session, approval_id: str) -> str:
    status = session.scalar(select(Approval.status).where(Approval.approval_id == approval_id))
    if status == "pending":  # escalated between the check and the write
        return (
            f"approval {approval_id!r} was escalated a moment ago: an admin or approver who "
            "did not start the run decides it now"
        )
    return f"approval {approval_id!r} was decided a moment ago"


class Approvals:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        authority: ApprovalAuthority | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self._sessions = sessions
        self.authority: ApprovalAuthority = authority or SeparationOfDuties()
        self._authz: Authorizer = authorizer or LocalAuthorizer()
        self.timeouts_for: TimeoutsFor = lambda _version_id: {}

    def refusal(self, actor: Actor, view: ApprovalView) -> str | None:
        """Why `actor` may not decide `view` (None: they may), by the tier it needs now."""
        return self.authority.refusal(actor, replace(view, tier=view.required_tier))

    # --- the ApprovalBook the gates read ------------------------------------------------
    def decision_for(self, approval_id: str) -> DecisionRecord | None:
        with self._sessions() as session:
            row = session.get(Approval, approval_id)
            if row is None or row.status not in _DECIDED or row.decision is None:
                return None
            return DecisionRecord(
                approval_id=row.approval_id,
                decision=cast(Decision, row.decision),
                args=row.decided_args or {},
                args_hash=row.decided_args_hash or "",
                tier=cast(Tier, row.tier),
                decided_by=row.decided_by or "",
                feedback=row.feedback,
            )

    # --- rows from checkpointed interrupts ----------------------------------------------
    def record_interrupts(
        self, session: Session, run: Run, interrupts: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> list[str]:
        """Upsert one row per (interrupt id, payload); returns the approval ids. No commit.

        A new row of a node with an approval timeout gets its deadline from now."""
        ids = []
        timeouts: Mapping[str, ApprovalTimeout] | None = None
        for interrupt_id, payload in interrupts:
            approval_id = str(payload["approval_id"])
            ids.append(approval_id)
            if session.get(Approval, approval_id) is not None:
                continue
            request = payload["action_request"]
            if timeouts is None:
                timeouts = self.timeouts_for(run.version_id)
            created_at = datetime.now(UTC)
            session.add(
                Approval(
                    approval_id=approval_id,
                    workspace_id=run.workspace_id,
                    run_id=run.run_id,
                    node_id=payload["node_id"],
                    tool_call_id=payload["tool_call_id"],
                    interrupt_id=interrupt_id,
                    kind=payload["kind"],
                    action=request["action"],
                    args=request["args"],
                    args_hash=payload["args_hash"],
                    tier=payload["tier"],
                    reason=payload.get("reason", ""),
                    description=payload.get("description", ""),
                    allowed=list(payload["allowed_decisions"]),
                    status="pending",
                    created_at=created_at,
                    tainted=payload.get("tainted"),
                    **_deadline(timeouts.get(payload["node_id"]), created_at),
                )
            )
        return ids

    # --- service functions (take the acting identity) -----------------------------------
    def list(
        self, actor: Actor, *, status: str | None = "pending", run_id: str | None = None
    ) -> list[ApprovalView]:
        self._authz.require(actor, "approval:read")
        query = (
            select(Approval, Run.started_by)
            .join(Run, Run.run_id == Approval.run_id)
            .where(Approval.workspace_id == actor.workspace_id)
            .order_by(Approval.created_at.desc())
        )
        if status is not None:
            query = query.where(Approval.status == status)
        if run_id is not None:
            query = query.where(Approval.run_id == run_id)
        with self._sessions() as session:
            return [_view(row, started_by) for row, started_by in session.execute(query)]

    def inbox(
        self,
        actor: Actor,
        *,
        history: bool = False,
        limit: int = 25,
        before: tuple[datetime, str] | None = None,
    ) -> builtins.list[InboxItem]:
        """One page of the workspace's pending approvals, newest first (`history`: decided,
        cancelled or superseded ones, latest decision first). `before` is the (created_at —
        history: decided_at —, approval_id) of the previous page's last item."""
        self._authz.require(actor, "approval:read")
        stamp = Approval.decided_at if history else Approval.created_at
        query = (
            select(Approval, Run.started_by, Run.graph_id, Graph.name)
            .join(Run, Run.run_id == Approval.run_id)
            .join(Graph, Graph.graph_id == Run.graph_id)
            .where(Approval.workspace_id == actor.workspace_id)
            .order_by(stamp.desc(), Approval.approval_id.desc())
            .limit(max(1, min(limit, INBOX_MAX_PAGE)))
        )
        if history:
            query = query.where(Approval.decided_at.is_not(None), Approval.status != "pending")
        else:
            query = query.where(Approval.status == "pending")
        if before is not None:
            at, approval_id = before
            query = query.where(
                or_(stamp < at, and_(stamp == at, Approval.approval_id < approval_id))
            )
        with self._sessions() as session:
            return [
                InboxItem(_view(row, started_by), graph_id, name)
                for row, started_by, graph_id, name in session.execute(query)
            ]

    def inbox_stamp(self, actor: Actor) -> InboxStamp:
        """The pending count, the newest pending approval and the latest decision: three
        index look-ups, cheap enough to poll."""
        self._authz.require(actor, "approval:read")
        mine = Approval.workspace_id == actor.workspace_id
        pending = and_(mine, Approval.status == "pending")
        with self._sessions() as session:
            count = session.scalar(select(func.count()).select_from(Approval).where(pending))
            newest = session.scalar(select(func.max(Approval.created_at)).where(pending))
            decided = session.scalar(select(func.max(Approval.decided_at)).where(mine))
            timed_out = session.scalar(select(func.max(Approval.timed_out_at)).where(mine))
        return InboxStamp(int(count or 0), newest, decided, timed_out)

    def get(self, actor: Actor, approval_id: str) -> ApprovalView:
        with self._sessions() as session:
            row, run = self._load(session, actor, approval_id)
            self._authz.require(actor, "approval:read")
            return _view(row, run.started_by)

    def decide(
        self,
        actor: Actor,
        approval_id: str,
        decision: Decision,
        *,
        args: Mapping[str, Any] | None = None,
        feedback: str | None = None,
        validate_args: ArgsCheck | None = None,
    ) -> ApprovalView:
        """Decide a pending approval once; a second decision raises `Conflict`. A decision
        checked before the approval was escalated loses to the escalation."""
        with self._sessions() as session:
            row, run = self._load(session, actor, approval_id)
            self._authz.require(actor, "approval:read")  # not a member: not found
            view = _view(row, run.started_by)
            self._check(actor, view, decision, run)
            check = partial(validate_args, run.version_id) if validate_args else None
            decided_args, decided_hash = self._decided_args(row, decision, args, check)
            still = [Approval.approval_id == approval_id, Approval.status == "pending"]
            if view.timeout_action == "escalate" and not view.escalated:
                still.append(Approval.timed_out_at.is_(None))  # as checked: not escalated
            now = datetime.now(UTC)
            changed = affected(
                session,
                update(Approval)
                .where(*still)
                .values(
                    status=DECISION_STATUS[decision],
                    decision=decision,
                    decided_args=decided_args,
                    decided_args_hash=decided_hash,
                    feedback=(feedback or None),
                    decided_by=actor.user_id,
                    decided_at=now,
                ),
            )
            if changed != 1:
                session.rollback()
                raise Conflict(_lost_race(session, approval_id))
            session.execute(
                update(Run)
                .where(Run.run_id == run.run_id, Run.status == "waiting_approval")
                .values(status="queued")
            )
            session.commit()
        return replace(
            view,
            status=DECISION_STATUS[decision],
            decision=decision,
            decided_args=decided_args,
            feedback=feedback or None,
            decided_by=actor.user_id,
            decided_at=now,
        )

    def _load(self, session: Session, actor: Actor, approval_id: str) -> tuple[Approval, Run]:
        row = session.get(Approval, approval_id)
        if row is None or row.workspace_id != actor.workspace_id:
            raise NotFound(f"approval {approval_id!r} not found")
        run = session.get(Run, row.run_id)
        if run is None or run.workspace_id != actor.workspace_id:
            raise NotFound(f"approval {approval_id!r} not found")
        return row, run

    def _check(self, actor: Actor, view: ApprovalView, decision: str, run: Run) -> None:
        if view.status != "pending":
            by = f" by {view.decided_by!r}" if view.decided_by else ""
            raise Conflict(f"approval {view.approval_id!r} is already {view.status}{by}")
        if run.status not in ("waiting_approval", "queued", "running"):
            raise Conflict(f"run {run.run_id!r} is {run.status}; its approvals can't be decided")
        if decision not in view.allowed:
            raise UserError(
                f"decision {decision!r} is not offered for {view.approval_id!r}; "
                f"choose one of {', '.join(view.allowed)}"
            )
        refusal = self.refusal(actor, view)
        if refusal:
            raise Forbidden(f"you may not decide {view.approval_id!r}: {refusal}")

    @staticmethod
    def _decided_args(
        row: Approval,
        decision: str,
        args: Mapping[str, Any] | None,
        validate_args: Callable[[str, Mapping[str, Any]], dict[str, Any]] | None,
    ) -> tuple[dict[str, Any], str]:
        if decision == "edit":
            if args is None or validate_args is None:
                raise UserError("an edit needs the changed arguments")
            edited = validate_args(row.action, args)
            tier = cast(Tier, row.tier)
            return edited, binding_hash(
                action=row.action, args=edited, run_id=row.run_id, node_id=row.node_id, tier=tier
            )
        if decision == "respond":
            answer = {"response": (args or {}).get("response", "")}
            return answer, ""
        return row.args, row.args_hash

    def cancel_pending(self, session: Session, run_id: str) -> None:
        """Mark a run's pending approvals cancelled (caller commits)."""
        session.execute(
            update(Approval)
            .where(Approval.run_id == run_id, Approval.status == "pending")
            .values(status="cancelled", decided_at=datetime.now(UTC))
        )
