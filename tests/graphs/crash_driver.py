"""A studio process for crash tests (run with ``python -m tests.graphs.crash_driver``).

``drive DB GRAPH RECEIVER``: start the support-agent run (if none yet) and push it to the
end, deciding approvals as a person would: the e-mail as alice (the starter), the refund as
bob. Armed with ``STUDIO_FAILPOINTS`` it dies wherever the failpoint says.

``finish DB RECEIVER``: a fresh process after the crash. Reconciles, reports whether pending
approvals and live interrupts match one to one, resumes and drives every run to its end,
then prints a JSON summary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from components.base import HttpPolicy
from graphs.execution import _live_interrupts
from graphs.headless import Runtime, open_runtime
from graphs.identity import Actor
from graphs.reconcile import reconcile

ALICE, BOB = Actor("acme", "alice"), Actor("acme", "bob")


def _drive_to_end(rt: Runtime, run_id: str) -> str:
    m = rt.manager
    for _ in range(10):
        run = m.wait(ALICE, run_id, timeout_s=60)
        if run.status != "waiting_approval":
            return run.status
        for approval in m.approvals.list(ALICE, run_id=run_id):
            who = BOB if approval.tier == "admin" else ALICE
            m.decide(who, approval.approval_id, "approve")
    return m.get(ALICE, run_id).status


def drive(db: Path, graph: Path, receiver: str) -> None:
    with open_runtime(db, http=HttpPolicy(allow_hosts=frozenset({receiver})), lease_ttl_s=3) as rt:
        runs = rt.manager.list(ALICE)
        if runs:
            run_id = runs[0].run_id
        else:
            version = rt.manager.library.create(ALICE, graph.read_text())
            run_id = rt.manager.start_run(
                ALICE, version_id=version.version_id, input={"order_id": "A-1001"}
            )
        print(json.dumps({"status": _drive_to_end(rt, run_id)}))


def apr_consistent(rt: Runtime) -> bool:
    """I-APR-1: every pending interrupt ↔ exactly one pending approval row."""
    m = rt.manager
    for run in m.list(ALICE, status="waiting_approval"):
        graph = m.executor.compiled(run.version_id).graph
        live = _live_interrupts(
            graph.get_state({"configurable": {"thread_id": f"run:{run.run_id}"}})
        )
        live_ids = sorted(str(p["approval_id"]) for _, p in live)
        rows = sorted(a.approval_id for a in m.approvals.list(ALICE, run_id=run.run_id))
        if live_ids != rows:
            return False
    return True


def finish(db: Path, receiver: str) -> None:
    policy = HttpPolicy(allow_hosts=frozenset({receiver}))
    with open_runtime(db, http=policy, resume=False, lease_ttl_s=3) as rt:
        repaired = reconcile(rt.manager)
        consistent = apr_consistent(rt)
        rt.manager.start()
        statuses = [_drive_to_end(rt, run.run_id) for run in rt.manager.list(ALICE)]
        print(
            json.dumps(
                {
                    "repaired": repaired,
                    "consistent": consistent,
                    "statuses": statuses,
                    "errors": [r.error for r in rt.manager.list(ALICE) if r.error],
                }
            )
        )


if __name__ == "__main__":
    if sys.argv[1] == "drive":
        drive(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
    else:
        finish(Path(sys.argv[2]), sys.argv[3])
