"""Human nodes, event streams, leases, the reconciler and runtime files."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from components.errors import Conflict, NotFound
from graphs.headless import Runtime, open_runtime, signing_key_for
from graphs.identity import Actor
from graphs.leases import LeaseKeeper, owner_is_dead
from graphs.reconcile import reconcile
from graphs.tables import Approval, Run, RunEvent
from tests.conftest import example, question_answer_doc, support_doc
from tests.loopback.http_receiver import HttpReceiver

HUMAN = {
    "schema_version": 1,
    "name": "Human steps",
    "entry": "ask",
    "state": [
        {"name": "topic", "type": "string", "input": True},
        {"name": "answer", "type": "string"},
        {"name": "approved", "type": "boolean"},
        {"name": "why", "type": "string"},
    ],
    "nodes": [
        {
            "id": "ask",
            "type": "human_input",
            "config": {
                "question": "What should we say about {{ topic }}?",
                "target_field": "answer",
            },
        },
        {
            "id": "check",
            "type": "human_approval",
            "config": {
                "title": "Publish the answer?",
                "details": "{{ answer }}",
                "tier": "admin",
                "feedback_field": "why",
            },
        },
        {"id": "out", "type": "output", "config": {"fields": ["answer", "approved", "why"]}},
    ],
    "edges": [{"source": "ask", "target": "check"}, {"source": "check", "target": "out"}],
}


def _start(rt: Runtime, actor: Actor, doc: dict[str, Any], inputs: dict[str, Any]) -> str:
    version = rt.manager.library.create(actor, doc)
    run_id = rt.manager.start_run(actor, version_id=version.version_id, input=inputs)
    rt.manager.wait(actor, run_id, timeout_s=30)
    return run_id


def test_human_input_then_admin_approval(runtime: Runtime, alice: Actor, bob: Actor) -> None:
    m = runtime.manager
    run_id = _start(runtime, alice, HUMAN, {"topic": "pricing"})
    [question] = m.approvals.list(alice, run_id=run_id)
    assert question.kind == "input" and question.allowed == ["respond"]
    assert question.args == {"question": "What should we say about pricing?"}
    with pytest.raises(Exception, match="not offered"):
        m.decide(alice, question.approval_id, "approve")
    m.decide(alice, question.approval_id, "respond", args={"response": "It is free."})
    assert m.wait(alice, run_id).status == "waiting_approval"
    [check] = m.approvals.list(alice, run_id=run_id)
    assert (check.kind, check.tier, check.args) == ("approval", "admin", {"details": "It is free."})
    m.decide(bob, check.approval_id, "reject", feedback="needs legal review")
    run = m.wait(alice, run_id)
    assert run.status == "succeeded"
    assert run.output == {"answer": "It is free.", "approved": False, "why": "needs legal review"}


def test_iter_events_replays_history_then_follows_live_until_settled(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, mallory: Actor
) -> None:
    m = runtime.manager
    version = m.library.create(alice, support_doc(receiver))
    run_id = m.start_run(alice, version_id=version.version_id, input={"order_id": "A-1"})
    seen = [e.seq for e in m.iter_events(alice, run_id, timeout_s=30)]
    assert seen == list(range(1, len(seen) + 1))
    assert m.get(alice, run_id).status == "waiting_approval"
    resumed = [e.seq for e in m.iter_events(alice, run_id, after=seen[-3])]
    assert resumed == seen[-2:]
    with pytest.raises(NotFound):
        list(m.iter_events(mallory, run_id))


def test_a_lease_is_held_by_one_owner_and_freed_when_its_process_is_dead(
    runtime: Runtime, alice: Actor
) -> None:
    m = runtime.manager
    version = m.library.create(alice, example("triage_router"))
    run_id = m.start_run(alice, version_id=version.version_id, input={"ticket": "invoice"})
    m.wait(alice, run_id)
    with m.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.status, run.lease_owner = "running", None
        session.commit()
        session.refresh(run)
    first = LeaseKeeper(m.sessions, "host-a:1:x", ttl_s=60)
    second = LeaseKeeper(m.sessions, "host-b:2:y", ttl_s=60)
    outcomes = []
    barrier = threading.Barrier(2)

    def claim(keeper: LeaseKeeper) -> None:
        barrier.wait()
        outcomes.append(keeper.claim(run, recovering=True))

    threads = [threading.Thread(target=claim, args=(k,)) for k in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False, True]
    assert owner_is_dead("this-host-is-elsewhere:1:x") is False
    import socket

    assert owner_is_dead(f"{socket.gethostname()}:999999999:x") is True


def test_reconciler_supersedes_rows_without_a_live_interrupt_and_cancels_finished_runs(
    tmp_path: Path, receiver: HttpReceiver, alice: Actor
) -> None:
    with open_runtime(tmp_path / "s.db", resume=False) as rt:
        m = rt.manager
        m.start()
        run_id = _start(rt, alice, support_doc(receiver), {"order_id": "A-2"})
        [real] = m.approvals.list(alice, run_id=run_id)
        with m.sessions() as session:
            orphan = Approval(
                **{
                    c.name: getattr(session.get(Approval, real.approval_id), c.name)
                    for c in Approval.__table__.columns
                }
            )
            orphan.approval_id, orphan.created_at = "apr_orphan", datetime.now(UTC)
            session.add(orphan)
            session.commit()
        counts = reconcile(m)
        assert counts["superseded"] == 1
        statuses = {a.approval_id: a.status for a in m.approvals.list(alice, status=None)}
        assert statuses == {real.approval_id: "pending", "apr_orphan": "superseded"}
        m.cancel(alice, run_id)
        with m.sessions() as session:
            session.execute(select(Approval))
        with pytest.raises(Conflict):
            m.decide(alice, real.approval_id, "approve")


def test_webhook_key_file_is_private_and_stable(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("STUDIO_WEBHOOK_SECRET", raising=False)
    db = tmp_path / "studio.db"
    first = signing_key_for(db)
    key_file = tmp_path / "studio-webhook.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) == 64 and signing_key_for(db) == first
    monkeypatch.setenv("STUDIO_WEBHOOK_SECRET", "s" * 32)
    assert signing_key_for(db) == b"s" * 32


def test_many_concurrent_runs_slow_down_but_never_fail_on_a_locked_database(
    tmp_path: Path, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    from components.base import HttpPolicy

    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}))
    with open_runtime(tmp_path / "busy.db", http=policy, max_concurrency=8) as rt:
        m = rt.manager
        triage = m.library.create(alice, example("triage_router")).version_id
        support = m.library.create(alice, support_doc(receiver)).version_id
        ids = [
            m.start_run(alice, version_id=triage, input={"ticket": f"crash #{i}"})
            for i in range(40)
        ]
        ids += [
            m.start_run(alice, version_id=support, input={"order_id": f"B-{i}"}) for i in range(10)
        ]
        views = [m.wait(alice, run_id, timeout_s=120) for run_id in ids]
        assert [v.status for v in views[:40]] == ["succeeded"] * 40
        assert [v.status for v in views[40:]] == ["waiting_approval"] * 10
        for approval in m.approvals.list(alice):  # ten e-mails confirmed at once
            m.decide(alice, approval.approval_id, "approve")
        after = [m.wait(alice, run_id, timeout_s=120) for run_id in ids[40:]]
        assert [v.status for v in after] == ["waiting_approval"] * 10  # now at the refund
        assert all(a.action == "issue_refund" for a in m.approvals.list(alice))
        assert not any("locked" in (v.error or "") for v in m.list(alice, limit=1000))


def test_stored_events_read_back_exactly_as_they_were_published(runtime: Runtime) -> None:
    """Batches go to the driver as one executemany with the INSERT compiled once: every
    column must come back from the table as it was published (no unstored copy involved)."""
    events = runtime.manager.events
    run_id = "0f1e2d3c-0000-4000-8000-000000000001"
    events.begin(run_id)
    data: dict[str, Any] = {
        "text": 'naïve 🚀 \u202e\x00 "quoted"',
        "nested": {"list": [1, 2.5, None, True], "empty": {}},
        "tokens": 12,
    }
    published = [
        events.publish("acme", run_id, "node_finished", "n1", data),
        events.publish("acme", run_id, "run_status"),  # no node, no data
    ]
    events.flush()
    with runtime.manager.sessions() as session:
        rows = session.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
        ).all()
    stored = [(r.workspace_id, r.seq, r.kind, r.node_id, r.data, r.at) for r in rows]
    assert stored == [
        (e.workspace_id, e.seq, e.kind, e.node_id, e.data, e.at.replace(tzinfo=None))
        for e in published
    ]
    assert [e.seq for e in events.history("acme", run_id)] == [1, 2]


def _hello_doc() -> dict[str, Any]:
    """One scripted `llm` node that answers the input question with "Hello."."""
    scripted = {
        "provider": "scripted",
        "prompt": "{{ question }}",
        "provider_config": {"script": [{"text": "Hello."}]},
    }
    return question_answer_doc("Hello", scripted)


def test_a_process_forgets_run_numbers_once_their_events_are_stored(
    runtime: Runtime, alice: Actor
) -> None:
    """A long-lived studio must not keep a counter for every run it ever ran; a run that
    gets events again later (a decision, a resume) goes on from the stored numbers."""
    m = runtime.manager
    version = m.library.create(alice, _hello_doc())
    runs = []
    for _ in range(3):
        run_id = m.start_run(alice, version_id=version.version_id, input={"question": "Hi?"})
        assert m.wait(alice, run_id, timeout_s=30).status == "succeeded"
        runs.append(run_id)
    m.events.flush()
    assert not set(runs) & set(m.events._last_seq)  # the leak this guards against
    before = [e.seq for e in m.events.history("acme", runs[0])]
    later = m.events.publish("acme", runs[0], "run_status", data={"status": "noted"})
    assert later.seq == before[-1] + 1
    m.events.flush()
    assert [e.seq for e in m.events.history("acme", runs[0])] == [*before, later.seq]
    live = m.events.subscribe(runs[1])
    m.events.unsubscribe(runs[1], live)
    assert not m.events.has_subscribers(runs[1]) and runs[1] not in m.events._subscribers


def test_events_reach_the_table_without_a_flush_for_other_processes_to_read(
    runtime: Runtime, alice: Actor, tmp_path: Path
) -> None:
    """The writer stores every interval (50 ms): a reader with its own connection (another
    process, say) sees a finished run's events without anyone flushing."""
    m = runtime.manager
    version = m.library.create(alice, _hello_doc())
    run_id = m.start_run(alice, version_id=version.version_id, input={"question": "Hi?"})
    assert m.wait(alice, run_id, timeout_s=30).status == "succeeded"
    published = [e.seq for e in m.events.history("acme", run_id)]
    reader = sqlite3.connect(tmp_path / "studio.db")
    deadline = time.monotonic() + 10
    stored: list[int] = []
    while time.monotonic() < deadline:
        rows = reader.execute("SELECT seq FROM run_events WHERE run_id = ? ORDER BY seq", (run_id,))
        stored = [seq for (seq,) in rows]
        if stored == published:
            break
        time.sleep(0.02)
    reader.close()
    assert stored == published and published[-1] >= 4
