"""How a new run reaches a worker: at once, stored running under this process's lease, when
a worker is free; queued, and claimed later, when every worker is busy.

(A run stored running by a process that then dies is an orphan like any other: the crash
tests in test_crash.py start their runs this way and SIGKILL the process mid-run.)"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from components.registry import default_registry
from graphs.headless import open_runtime
from graphs.identity import Actor
from graphs.tables import Run


def _holding_graph() -> dict[str, Any]:
    """A tool-call node calling `hold` (a registered function that waits for the test)."""
    return {
        "schema_version": 1,
        "name": "Hold a worker",
        "entry": "hold",
        "tools": [
            {"name": "hold", "type": "function", "tier": "free", "config": {"function": "hold"}}
        ],
        "nodes": [
            {"id": "hold", "type": "tool_call", "config": {"tool": "hold", "result_field": "held"}},
            {"id": "done", "type": "output", "config": {"fields": ["held"]}},
        ],
        "edges": [{"source": "hold", "target": "done"}],
        "state": [{"name": "held", "type": "string"}],
    }


def _row(rt: Any, run_id: str) -> Run:
    with rt.manager.sessions() as session:
        row = session.scalars(select(Run).where(Run.run_id == run_id)).one()
        session.expunge(row)
        return row


def test_a_run_that_finds_a_free_worker_is_stored_running_the_next_one_queued(
    tmp_path: Path, alice: Actor
) -> None:
    release, entered = threading.Event(), threading.Event()

    def hold() -> str:
        """Wait until the test lets go."""
        entered.set()
        release.wait(30)
        return "released"

    registry = default_registry()
    registry.add_function(hold)
    with open_runtime(tmp_path / "s.db", registry=registry, max_concurrency=1) as rt:
        m = rt.manager
        version = m.library.create(alice, _holding_graph()).version_id
        first = m.start_run(alice, version_id=version)
        stored = _row(rt, first)  # written by start_run itself: nothing to claim
        assert stored.status == "running" and stored.started_at is not None
        assert stored.lease_owner == m.leases.owner and stored.lease_expires_at is not None
        assert entered.wait(10)

        second = m.start_run(alice, version_id=version)  # the only worker is busy
        waiting = _row(rt, second)
        assert (waiting.status, waiting.lease_owner, waiting.started_at) == ("queued", None, None)

        release.set()
        views = [m.wait(alice, run_id, timeout_s=30) for run_id in (first, second)]
        assert [(v.status, v.output) for v in views] == [("succeeded", {"held": "released"})] * 2
        for run_id in (first, second):  # settled: the lease is given back
            assert _row(rt, run_id).lease_owner is None
        kinds = [
            e.data.get("status") for e in m.events.history("acme", second) if e.kind == "run_status"
        ]
        assert kinds == ["queued", "running", "succeeded"]
