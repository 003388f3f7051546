"""Approval timeouts: warn before a node's approval times out, then take the node's action.

A node's timeout (`policies.approval_timeouts`) is copied onto each of its approval rows when
the row is written (`expires_at`, `warn_at`, `timeout_action`), so a saved graph version
never changes a paused run's deadline. The run manager's sweeper then, every `interval_s`:

- at `warn_at`: queues one warning — an e-mail to each person the `ApproverDirectory` names
  and to the run's `notify` address, and a signed webhook to the run's `notify` webhook — in
  the transaction that sets `warned_at` by compare-and-set: queued exactly once, across
  restarts and across processes. A warning whose deadline has already passed (the studio was
  stopped) is not sent;
- at `expires_at`, by compare-and-set from pending (setting `timed_out_at`):
  ``reject`` decides it as rejected by `TIMEOUT_DECIDER`, with feedback the model sees, and
  resumes the run — a person deciding at the same moment either wins (the timeout then does
  nothing) or gets a conflict; ``escalate`` raises the tier it needs to ``admin`` (an admin
  or approver who did not start the run) and notifies the admins; ``leave`` marks it overdue.

Times come from `clock` (tests set it; nothing here sleeps).
"""

from __future__ import annotations

__all__ = [
    "ApprovalTimeouts",
    "ApproverDirectory",
    "NoDirectory",
    "SweepReport",
    "format_duration",
]

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from components.errors import StudioError
from graphs._periodic import Periodic
from graphs.approvals import TIMEOUT_DECIDER
from graphs.db import affected
from graphs.identity import Actor
from graphs.outbox import SqlOutbox, enqueue_webhook
from graphs.spec import ApprovalTimeout
from graphs.tables import Approval, Graph, Run

if TYPE_CHECKING:
    from graphs.runs import RunManager

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_LIVE_RUN = ("waiting_approval", "queued", "running")
_BATCH = 200
_OUTCOME = {
    "reject": "rejected automatically",
    "escalate": "escalated to admins",
    "leave": "marked overdue",
}


class ApproverDirectory(Protocol):
    """The e-mail addresses of the people who may decide a `tier` call of a run that
    `starter` started (for ``admin``: not the starter)."""

    def emails(self, workspace_id: str, tier: str, starter: str) -> list[str]: ...


class NoDirectory:
    """Headless default: nobody beyond the run's own `notify` address is known."""

    def emails(self, workspace_id: str, tier: str, starter: str) -> list[str]:
        return []


@dataclass(slots=True)
class SweepReport:
    """The approval ids each pass acted on (what this process won)."""

    warned: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)


def format_duration(seconds: float) -> str:
    """'45 s', '5 min', '1 h 30 min', '2 d 4 h' (rounded to the shown unit)."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes = round(total / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, hours = divmod(round(minutes / 60), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _waited(row: Approval) -> str:
    assert row.expires_at is not None
    return format_duration((_utc(row.expires_at) - _utc(row.created_at)).total_seconds())


class ApprovalTimeouts:
    """The sweeper of approval deadlines; owned and started by the run manager."""

    def __init__(self, manager: RunManager, *, interval_s: float = 10.0) -> None:
        self._m = manager
        self._periodic = Periodic("approval-timeouts", interval_s, self.sweep)
        self.clock: Clock = lambda: datetime.now(UTC)
        self.approvers: ApproverDirectory = NoDirectory()
        manager.approvals.timeouts_for = self.timeouts_for  # new rows get their deadline

    def timeouts_for(self, version_id: str) -> Mapping[str, ApprovalTimeout]:
        return self._m.executor.compiled(version_id).document.policies.approval_timeouts

    # --- one pass ----------------------------------------------------------------------
    def sweep(self) -> SweepReport:
        """Take every due action now (expiries first, then warnings still ahead of their
        deadline); returns what this pass won."""
        now = self.clock()
        report = SweepReport()
        for row, run in self._due(now, expiring=True):
            self._expire(row, run, now, report)
        for row, run in self._due(now, expiring=False):
            if self._warn(row, run, now):
                report.warned.append(row.approval_id)
        return report

    def _due(self, now: datetime, *, expiring: bool) -> list[tuple[Approval, Run]]:
        query = (
            select(Approval, Run)
            .join(Run, Run.run_id == Approval.run_id)
            .where(Approval.status == "pending", Run.status.in_(_LIVE_RUN))
            .limit(_BATCH)
        )
        if expiring:
            query = query.where(Approval.expires_at <= now, Approval.timed_out_at.is_(None))
            query = query.order_by(Approval.expires_at)
        else:
            query = query.where(
                Approval.warn_at <= now,
                Approval.warned_at.is_(None),
                Approval.timed_out_at.is_(None),
                Approval.expires_at > now,
            ).order_by(Approval.warn_at)
        with self._m.sessions() as session:
            return [(row, run) for row, run in session.execute(query)]

    def _expire(self, row: Approval, run: Run, now: datetime, report: SweepReport) -> None:
        action = row.timeout_action
        if action == "reject" and "reject" not in row.allowed:  # e.g. a question to answer
            log.warning("approval %s cannot be rejected; marked overdue", row.approval_id)
            action = "leave"
        if action == "reject":
            if self._reject(row, now):
                report.rejected.append(row.approval_id)
        elif self._time_out(row, run, now, escalate=action == "escalate"):
            (report.escalated if action == "escalate" else report.overdue).append(row.approval_id)

    # --- the actions ---------------------------------------------------------------------
    def _reject(self, row: Approval, now: datetime) -> bool:
        feedback = f"timed out after {_waited(row)} without a decision"
        with self._m.sessions() as session:
            won = affected(
                session,
                update(Approval)
                .where(*_untouched(row))
                .values(
                    status="rejected",
                    decision="reject",
                    decided_args=row.args,
                    decided_args_hash=row.args_hash,
                    feedback=feedback,
                    decided_by=TIMEOUT_DECIDER,
                    decided_at=now,
                    timed_out_at=now,
                ),
            )
            if won:
                session.execute(
                    update(Run)
                    .where(Run.run_id == row.run_id, Run.status == "waiting_approval")
                    .values(status="queued")
                )
            session.commit()
        if not won:
            return False
        self._m.submit(row.run_id)  # resume it, like a person's decision does
        data = {"approval_id": row.approval_id, "decision": "reject", "by": TIMEOUT_DECIDER}
        self._m.events.publish(row.workspace_id, row.run_id, "approval_decided", row.node_id, data)
        self._audit(row, "approval.decided", decision="reject")
        return True

    def _time_out(self, row: Approval, run: Run, now: datetime, *, escalate: bool) -> bool:
        notice = self._notice(row, run, "escalated", "admin", now) if escalate else None
        with self._m.sessions() as session:
            won = affected(
                session, update(Approval).where(*_untouched(row)).values(timed_out_at=now)
            )
            if won and notice is not None:
                _queue(session, row, notice)
            session.commit()
        if not won:
            return False
        kind = "approval_escalated" if escalate else "approval_overdue"
        data = {"approval_id": row.approval_id, "action": row.timeout_action}
        self._m.events.publish(row.workspace_id, row.run_id, kind, row.node_id, data)
        self._audit(row, "approval.escalated" if escalate else "approval.overdue")
        return True

    def _warn(self, row: Approval, run: Run, now: datetime) -> bool:
        notice = self._notice(row, run, "expiring", row.tier, now)
        with self._m.sessions() as session:
            won = affected(
                session,
                update(Approval)
                .where(*_untouched(row), Approval.warned_at.is_(None))
                .values(warned_at=now),
            )
            if won:
                _queue(session, row, notice)
            session.commit()  # the mark and its outbox rows together: never one without the other
        if won:
            data = {"approval_id": row.approval_id, "expires_at": _iso(row.expires_at)}
            publish = self._m.events.publish
            publish(row.workspace_id, row.run_id, "approval_warned", row.node_id, data)
        return bool(won)

    # --- notices -------------------------------------------------------------------------
    def _notice(self, row: Approval, run: Run, event: str, tier: str, now: datetime) -> _Notice:
        """Prepare a notice before its compare-and-set, so no lock is held meanwhile."""
        notify = run.notify or {}
        addresses = [*self.approvers.emails(run.workspace_id, tier, run.started_by)]
        addresses.append(notify.get("email", ""))
        with self._m.sessions() as session:
            graph = session.get(Graph, run.graph_id)
        subject, body = _message(event, row, graph.name if graph else run.graph_id, now)
        return _Notice(
            key=f"{row.approval_id}_{event[0]}",
            subject=subject,
            body=str(self._m.redact(body)),  # no secret value leaves in a notice
            emails=tuple(dict.fromkeys(a for a in addresses if a)),
            webhook=notify.get("webhook") or None,
            payload=_payload(event, row, run),
        )

    def _audit(self, row: Approval, action: str, **details: Any) -> None:
        """What a timeout did, audited like a person's act, by `TIMEOUT_DECIDER`."""
        details = {
            "run_id": row.run_id,
            **details,
            "tool": row.action,
            "tier": row.tier,
            "timed_out": True,
        }
        try:
            self._m.audit(
                Actor(row.workspace_id, TIMEOUT_DECIDER), action, row.approval_id, details
            )
        except Exception:  # the timeout's act stands and the run goes on either way
            log.exception("approval %s: the timeout's %s was not audited", row.approval_id, action)

    # --- the loop --------------------------------------------------------------------------
    def start(self) -> None:
        """Sweep now and then every `interval_s` (0: never)."""
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()


@dataclass(frozen=True, slots=True)
class _Notice:
    key: str  # the outbox idempotency keys start with it
    subject: str
    body: str
    emails: tuple[str, ...]
    webhook: str | None
    payload: dict[str, Any]


def _queue(session: Session, row: Approval, notice: _Notice) -> None:
    """Queue the notice's e-mails and webhook in the caller's transaction (a refused target
    is logged and skipped: it never holds up the timeout)."""
    outbox = SqlOutbox(session, workspace_id=row.workspace_id, run_id=row.run_id)
    for address in notice.emails:
        digest = hashlib.sha256(address.encode()).hexdigest()[:12]
        try:
            outbox.enqueue_email(
                to=address,
                subject=notice.subject,
                body=notice.body,
                idempotency_key=f"{notice.key}_{digest}",
            )
        except StudioError:
            log.exception("approval %s: a notice was not queued", row.approval_id)
    if notice.webhook is not None:
        try:
            enqueue_webhook(
                session,
                workspace_id=row.workspace_id,
                run_id=row.run_id,
                url=notice.webhook,
                payload=notice.payload,
                idempotency_key=f"{notice.key}_hook",
            )
        except StudioError:
            log.exception("approval %s: a webhook was not queued", row.approval_id)


def _untouched(row: Approval) -> tuple[Any, ...]:
    """Still pending and its timeout not yet taken: the compare of every compare-and-set."""
    return (
        Approval.approval_id == row.approval_id,
        Approval.status == "pending",
        Approval.timed_out_at.is_(None),
    )


def _iso(value: datetime | None) -> str | None:
    return _utc(value).isoformat() if value is not None else None


def _message(event: str, row: Approval, graph_name: str, now: datetime) -> tuple[str, str]:
    """(subject, plain-text body). The subject holds no user-controlled text."""
    assert row.expires_at is not None
    outcome = _OUTCOME.get(row.timeout_action or "", "timed out")
    where = [
        f"Graph: {graph_name}",
        f"Run: {row.run_id} · node {row.node_id}",
        f"Waiting for a decision: {row.action}",
    ]
    if event == "escalated":
        subject = "An approval was escalated to admins"
        lead = (
            f"Nobody decided this approval within {_waited(row)}. It now needs an admin or "
            "approver who did not start the run."
        )
    else:
        left = format_duration((_utc(row.expires_at) - now).total_seconds())
        subject = f"An approval will be {outcome} in {left}"
        lead = (
            f"If nobody decides it by {_utc(row.expires_at):%Y-%m-%d %H:%M} UTC "
            f"(in {left}), it will be {outcome}."
        )
    body = "\n".join([lead, "", *where, "", "Decide it in the approval inbox (/approvals)."])
    return subject, body


def _payload(event: str, row: Approval, run: Run) -> dict[str, Any]:
    return {
        "event": f"approval.{event}",
        "approval_id": row.approval_id,
        "run_id": row.run_id,
        "graph_id": run.graph_id,
        "node_id": row.node_id,
        "timeout_action": row.timeout_action,
        "expires_at": _iso(row.expires_at),
    }
