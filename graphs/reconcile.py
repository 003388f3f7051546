"""Start-up reconciliation of approval rows with checkpointed interrupts (I-APR-1).

The interrupt checkpoint and the approval row are written in separate transactions, so a
crash can leave either without the other. For every run waiting for people: each live
interrupt gets exactly one row; a pending row without a live interrupt is superseded. Rows
of runs that already ended are cancelled.
"""

from __future__ import annotations

__all__ = ["reconcile"]

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from graphs.db import affected
from graphs.execution import _live_interrupts
from graphs.tables import Approval, Run

if TYPE_CHECKING:
    from graphs.runs import RunManager

log = logging.getLogger(__name__)


def reconcile(manager: RunManager) -> dict[str, int]:
    counts = {"created": 0, "superseded": 0, "cancelled": 0, "requeued": 0}
    with manager.sessions() as session:
        final = select(Run.run_id).where(
            Run.status.in_(("succeeded", "failed", "cancelled", "budget_exceeded"))
        )
        counts["cancelled"] = affected(
            session,
            update(Approval)
            .where(Approval.status == "pending", Approval.run_id.in_(final))
            .values(status="cancelled", decided_at=datetime.now(UTC)),
        )
        session.commit()
        waiting = list(session.scalars(select(Run).where(Run.status == "waiting_approval")))
    for run in waiting:
        _reconcile_run(manager, run, counts)
    if any(counts.values()):
        log.info("reconciled approvals: %s", counts)
    return counts


def _reconcile_run(manager: RunManager, run: Run, counts: dict[str, int]) -> None:
    compiled = manager.executor.compiled(run.version_id)
    state = compiled.graph.get_state({"configurable": {"thread_id": run.thread_id}})
    live = _live_interrupts(state)
    live_ids = {str(payload["approval_id"]) for _, payload in live}
    with manager.sessions() as session:
        current = session.get(Run, run.run_id)
        assert current is not None
        known = set(
            session.scalars(select(Approval.approval_id).where(Approval.run_id == run.run_id))
        )
        manager.approvals.record_interrupts(session, current, live)
        counts["created"] += len(live_ids - known)
        counts["superseded"] += affected(
            session,
            update(Approval)
            .where(
                Approval.run_id == run.run_id,
                Approval.status == "pending",
                Approval.approval_id.not_in(live_ids),
            )
            .values(status="superseded", decided_at=datetime.now(UTC)),
        )
        decided = session.scalar(
            select(Approval.approval_id)
            .where(
                Approval.approval_id.in_(live_ids),
                Approval.status.not_in(("pending", "cancelled", "superseded")),
            )
            .limit(1)
        )
        if decided or not live:
            current.status = "queued"  # a decision (or nothing) is waiting: resume it
            counts["requeued"] += 1
        session.commit()
