"""Approval timeouts: a node's approvals warn once, then reject, escalate or go overdue.

Real SQLite files, the real run manager with the scripted support agent, a clock the test
sets (nothing sleeps until a deadline), the outbox delivering to loopback SMTP and HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select

from components.base import HttpPolicy
from components.errors import Conflict, Forbidden, GraphInvalid, Problem
from components.registry import default_registry
from graphs.approval_timeouts import ApprovalTimeouts, SweepReport, format_duration
from graphs.approvals import TIMEOUT_DECIDER, ApprovalView
from graphs.db import MIGRATIONS, make_engine
from graphs.headless import Runtime, open_runtime
from graphs.identity import Actor
from graphs.outbox import OutboxDispatcher, SmtpSettings, verify_signature
from graphs.spec import ApprovalTimeout, Policies, json_schema
from graphs.tables import Effect, GraphVersion, OutboxMessage
from graphs.validation import load_document
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver
from tests.loopback.smtp_receiver import SmtpReceiver

SIGNING_KEY = b"timeout-signing-key-0123456789abcdef"
OWNER_MAIL = "owner@example.com"
HOOK = "/hooks/approvals"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Directory:
    """Approvers by tier, as the studio's RBAC would name them; records every question."""

    by_tier: dict[str, list[str]] = field(default_factory=dict)
    asked: list[tuple[str, str, str]] = field(default_factory=list)

    def emails(self, workspace_id: str, tier: str, starter: str) -> list[str]:
        self.asked.append((workspace_id, tier, starter))
        return list(self.by_tier.get(tier, []))


def opened(path: Path, receiver: HttpReceiver, **options: Any) -> Any:
    """A runtime whose own sweeper and dispatcher stay idle unless a test asks for them."""
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
    options.setdefault("timeout_interval_s", 0)
    return open_runtime(path, http=policy, lease_ttl_s=5, outbox_interval_s=3600, **options)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "studio.db"


@pytest.fixture
def rt(db: Path, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("STUDIO_WEBHOOK_SECRET", SIGNING_KEY.decode())
    receiver.route(HOOK, status=204, body=b"")
    with opened(db, receiver) as runtime:
        yield runtime


def timed_doc(receiver: HttpReceiver, **timeout: Any) -> dict[str, Any]:
    doc = support_doc(receiver)
    doc["policies"] = {"approval_timeouts": {"agent": timeout}}
    return doc


def gate_doc(**timeout: Any) -> dict[str, Any]:
    """One human approval, then the end: a rejection ends the run with the feedback."""
    return {
        "schema_version": 1,
        "name": "Gate",
        "entry": "gate",
        "state": [{"name": "approved", "type": "boolean"}, {"name": "why", "type": "string"}],
        "nodes": [
            {"id": "gate", "type": "human_approval",
             "config": {"title": "Ship it?", "feedback_field": "why"}},
        ],
        "policies": {"approval_timeouts": {"gate": timeout}},
    }  # fmt: skip


def paused(
    rt: Runtime, actor: Actor, doc: dict[str, Any], order_id: str, **start: Any
) -> ApprovalView:
    """Start a support run and return its first pending approval (the e-mail, confirm)."""
    m = rt.manager
    version = m.library.create(actor, doc)
    run_id = m.start_run(
        actor, version_id=version.version_id, input={"order_id": order_id}, **start
    )
    assert m.wait(actor, run_id, timeout_s=30).status == "waiting_approval"
    [email] = m.approvals.list(actor, run_id=run_id)
    assert email.action == "email_customer"
    return email


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same moment, each on its own thread: each result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def until(check: Callable[[], bool], timeout_s: float = 20) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        threading.Event().wait(0.05)
    raise AssertionError("timed out waiting for the background sweeper")


def at(rt: Runtime, when: datetime) -> ApprovalTimeouts:
    """The runtime's sweeper, its clock set to `when`."""
    rt.manager.timeouts.clock = Clock(when)
    return rt.manager.timeouts


def outbox(rt: Runtime, run_id: str) -> list[OutboxMessage]:
    with rt.manager.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.run_id == run_id)
        return list(session.scalars(query.order_by(OutboxMessage.message_id)))


def email_effects(rt: Runtime, run_id: str) -> int:
    with rt.manager.sessions() as session:
        query = select(Effect).where(Effect.run_id == run_id, Effect.tool == "email_customer")
        return len(session.scalars(query).all())


def state_of(rt: Runtime, actor: Actor, run_id: str) -> dict[str, Any]:
    compiled = rt.manager.executor.compiled(rt.manager.get(actor, run_id).version_id)
    return dict(compiled.graph.get_state({"configurable": {"thread_id": f"run:{run_id}"}}).values)


def tool_texts(rt: Runtime, actor: Actor, run_id: str) -> list[str]:
    messages = state_of(rt, actor, run_id)["messages"]
    return [str(msg.content) for msg in messages if msg.type == "tool"]


def is_decided(rt: Runtime, actor: Actor, approval_id: str) -> bool:
    return rt.manager.approvals.get(actor, approval_id).status != "pending"


# --- the deadline on the row ------------------------------------------------------------


def test_rows_carry_the_nodes_deadline_and_untimed_graphs_none(
    rt: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    timed = paused(rt, alice, timed_doc(receiver, after=300, action="reject", warn_before=60), "A")
    assert timed.expires_at is not None
    created = timed.created_at.replace(tzinfo=UTC)
    assert timed.expires_at == created + timedelta(seconds=300)
    assert timed.warn_at == timed.expires_at - timedelta(seconds=60)
    assert (timed.timeout_action, timed.timed_out_at, timed.escalated) == ("reject", None, False)
    plain = paused(rt, alice, support_doc(receiver), "B")
    assert (plain.expires_at, plain.warn_at, plain.timeout_action) == (None, None, None)
    report = at(rt, timed.expires_at + timedelta(days=365)).sweep()
    assert plain.approval_id not in report.rejected  # no deadline: never times out
    assert rt.manager.approvals.get(alice, plain.approval_id).status == "pending"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (45, "45 s"), (299.6, "5 min"), (5400, "1 h 30 min"), (7200, "2 h"),
     (3 * 86400, "3 d"), (2 * 86400 + 4 * 3600, "2 d 4 h")],
)  # fmt: skip
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- reject --------------------------------------------------------------------------------


def test_reject_decides_once_and_the_model_sees_the_timeout(
    rt: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    m = rt.manager
    email = paused(rt, alice, timed_doc(receiver, after=300, action="reject"), "A-1")
    assert email.expires_at is not None
    early = at(rt, email.expires_at - timedelta(seconds=1)).sweep()
    assert early.rejected == [] and m.approvals.get(alice, email.approval_id).status == "pending"

    report = at(rt, email.expires_at).sweep()  # due exactly at expires_at
    assert report.rejected == [email.approval_id]
    decided = m.approvals.get(alice, email.approval_id)
    assert (decided.status, decided.decision, decided.decided_by) == (
        "rejected",
        "reject",
        TIMEOUT_DECIDER,
    )
    assert decided.feedback == "timed out after 5 min without a decision"
    # the run resumed by itself and the agent went on to the refund, without the e-mail
    assert m.wait(alice, email.run_id, timeout_s=30).status == "waiting_approval"
    [refund] = m.approvals.list(alice, run_id=email.run_id)
    assert refund.action == "issue_refund"
    assert email_effects(rt, email.run_id) == 0 and outbox(rt, email.run_id) == []
    assert any(
        "rejected automatically: timed out after 5 min" in text
        for text in tool_texts(rt, alice, email.run_id)
    )
    with pytest.raises(Conflict, match="already rejected by 'system:timeout'"):
        m.decide(alice, email.approval_id, "approve")
    assert at(rt, email.expires_at).sweep().rejected == []  # asked again: nothing more


def test_a_person_racing_the_timeout_one_wins_with_at_most_one_effect(
    rt: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    m = rt.manager
    doc = timed_doc(receiver, after=60, action="reject")
    for attempt in range(6):
        email = paused(rt, alice, doc, f"R-{attempt}")
        assert email.expires_at is not None
        at(rt, email.expires_at)
        decide = partial(m.decide, alice, email.approval_id, "approve")
        decided, swept = race(decide, m.timeouts.sweep)
        person_won = not isinstance(decided, Exception)
        assert person_won or isinstance(decided, Conflict), decided
        assert person_won != (email.approval_id in swept.rejected)
        assert m.wait(alice, email.run_id, timeout_s=30).status == "waiting_approval"
        final = m.approvals.get(alice, email.approval_id)
        assert final.decided_by == ("alice" if person_won else TIMEOUT_DECIDER)
        assert final.status == ("approved" if person_won else "rejected")
        assert email_effects(rt, email.run_id) == int(person_won)  # one effect, or none


# --- warnings ------------------------------------------------------------------------------


def test_the_warning_is_queued_once_and_delivered_once_signed(
    rt: Runtime, db: Path, receiver: HttpReceiver, alice: Actor
) -> None:
    directory = Directory({"confirm": ["bob@example.com", OWNER_MAIL]})
    rt.manager.timeouts.approvers = directory
    notify = {"webhook": receiver.url_for(HOOK), "email": OWNER_MAIL}
    doc = timed_doc(receiver, after=1800, action="escalate", warn_before=300)
    email = paused(rt, alice, doc, "W-1", notify=notify)
    assert email.warn_at is not None and email.expires_at is not None
    assert at(rt, email.warn_at - timedelta(seconds=1)).sweep().warned == []

    # two processes on the database, four threads each, all at the warning time
    with opened(db, receiver, resume=False) as other:
        warned: list[str] = []
        barrier = threading.Barrier(8)
        other.manager.timeouts.approvers = directory  # the same people, as RBAC says there
        at(other, email.warn_at + timedelta(seconds=5))
        at(rt, email.warn_at + timedelta(seconds=5))

        def sweep(runtime: Runtime) -> None:
            barrier.wait()
            warned.extend(runtime.manager.timeouts.sweep().warned)

        threads = [threading.Thread(target=sweep, args=(r,)) for r in [rt, other] * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert warned == [email.approval_id]
    assert set(directory.asked) == {("acme", "confirm", "alice")}  # the e-mail's approvers
    rows = outbox(rt, email.run_id)
    assert sorted((r.channel, r.recipient) for r in rows) == [
        ("email", "bob@example.com"),
        ("email", OWNER_MAIL),  # an approver and the run's notify address: one mail
        ("webhook", receiver.url_for(HOOK)),
    ]
    mail = next(r for r in rows if r.channel == "email")
    assert mail.subject == "An approval will be escalated to admins in 5 min"
    assert "email_customer" in mail.body and "/approvals" in mail.body
    assert at(rt, email.expires_at - timedelta(seconds=1)).sweep().warned == []
    assert rt.manager.approvals.get(alice, email.approval_id).status == "pending"

    with SmtpReceiver() as smtp:
        dispatcher = OutboxDispatcher(
            rt.engine,
            smtp=SmtpSettings(host=smtp.host, port=smtp.port, sender="s@studio.example"),
            http=HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5),
            signing_key=SIGNING_KEY,
            lease_s=60,
        )
        dispatcher.deliver_pending()  # the webhook may have gone with the other's last pass
        assert dispatcher.deliver_pending() == 0
        assert {r.status for r in outbox(rt, email.run_id)} == {"sent"}
        assert smtp.wait_for(2)
        assert sorted(r for m in smtp.mails for r in m.rcpt_tos) == ["bob@example.com", OWNER_MAIL]
    [post] = [r for r in receiver.requests if r.path == HOOK]
    assert post.json == {
        "event": "approval.expiring",
        "approval_id": email.approval_id,
        "run_id": email.run_id,
        "graph_id": rt.manager.get(alice, email.run_id).graph_id,
        "node_id": "agent",
        "timeout_action": "escalate",
        "expires_at": email.expires_at.isoformat(),
    }
    stamp = post.headers["x-studio-timestamp"]
    assert verify_signature(SIGNING_KEY, stamp, post.body, post.headers["x-studio-signature"])


def test_a_warning_whose_deadline_passed_while_stopped_is_not_sent(
    rt: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    notify = {"email": OWNER_MAIL}
    doc = timed_doc(receiver, after=600, action="leave", warn_before=120)
    email = paused(rt, alice, doc, "L-0", notify=notify)
    assert email.expires_at is not None
    report = at(rt, email.expires_at + timedelta(hours=2)).sweep()
    assert (report.overdue, report.warned) == ([email.approval_id], [])
    assert outbox(rt, email.run_id) == []


def test_restarts_between_warning_and_expiry_warn_once_and_reject_once(
    db: Path, receiver: HttpReceiver, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_WEBHOOK_SECRET", SIGNING_KEY.decode())
    with opened(db, receiver) as first:
        m = first.manager
        version = m.library.create(alice, gate_doc(after=900, action="reject", warn_before=300))
        run_id = m.start_run(alice, version_id=version.version_id, notify={"email": OWNER_MAIL})
        assert m.wait(alice, run_id, timeout_s=30).status == "waiting_approval"
        [gate] = m.approvals.list(alice, run_id=run_id)
        assert gate.warn_at is not None and gate.expires_at is not None
        assert at(first, gate.warn_at).sweep().warned == [gate.approval_id]
    warned = [r.message_id for r in outbox(first, run_id)]
    assert len(warned) == 1 and warned[0].startswith(gate.approval_id)

    for restart in range(2):  # the background sweeper of each new process takes over
        with opened(db, receiver, timeout_interval_s=0.05) as again:
            m = again.manager
            at(again, gate.warn_at + timedelta(seconds=30))
            threading.Event().wait(0.3)  # several passes between the warning and the expiry
            assert m.approvals.get(alice, gate.approval_id).status == "pending"
            if restart == 1:
                at(again, gate.expires_at)
                until(partial(is_decided, again, alice, gate.approval_id))
                assert m.wait(alice, run_id, timeout_s=30).status == "succeeded"
                threading.Event().wait(0.3)  # more passes after the expiry
            notices = [r.message_id for r in outbox(again, run_id)]
            assert [k for k in notices if k.startswith(gate.approval_id)] == warned

    with opened(db, receiver) as last:
        m = last.manager
        final = m.approvals.get(alice, gate.approval_id)
        assert (final.status, final.decided_by) == ("rejected", TIMEOUT_DECIDER)
        values = state_of(last, alice, run_id)
        assert (values["approved"], values["why"]) == (
            False,
            "timed out after 15 min without a decision",
        )
        decided = [
            e
            for e in m.events.history("acme", run_id)
            if e.kind == "approval_decided" and e.data["approval_id"] == gate.approval_id
        ]
        assert len(decided) == 1  # rejected once, across every process


# --- escalate and leave --------------------------------------------------------------------


def test_escalation_needs_an_admin_who_did_not_start_the_run_and_notifies_admins(
    rt: Runtime, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    m = rt.manager
    directory = Directory({"admin": ["admin@example.com"], "confirm": ["bob@example.com"]})
    m.timeouts.approvers = directory
    audited: list[tuple[str, str, str]] = []
    m.audit = lambda actor, action, target, _details: audited.append(
        (actor.user_id, action, target)
    )
    notify = {"webhook": receiver.url_for(HOOK)}
    email = paused(
        rt, alice, timed_doc(receiver, after=600, action="escalate"), "E-1", notify=notify
    )
    assert email.expires_at is not None and m.approvals.refusal(alice, email) is None

    report = at(rt, email.expires_at).sweep()
    assert report.escalated == [email.approval_id]
    escalated = m.approvals.get(alice, email.approval_id)
    assert (escalated.status, escalated.escalated, escalated.required_tier) == (
        "pending",
        True,
        "admin",
    )
    assert escalated.tier == "confirm"  # the call's binding is unchanged
    assert m.get(alice, email.run_id).status == "waiting_approval"
    assert directory.asked == [("acme", "admin", "alice")]
    assert sorted((r.channel, r.recipient) for r in outbox(rt, email.run_id)) == [
        ("email", "admin@example.com"),
        ("webhook", receiver.url_for(HOOK)),
    ]
    assert m.approvals.refusal(alice, escalated) is not None
    with pytest.raises(Forbidden, match="someone other than the run's starter"):
        m.decide(alice, email.approval_id, "approve")
    assert at(rt, email.expires_at + timedelta(hours=1)).sweep().escalated == []
    assert audited == [(TIMEOUT_DECIDER, "approval.escalated", email.approval_id)]

    m.decide(bob, email.approval_id, "approve")
    assert m.wait(alice, email.run_id, timeout_s=30).status == "waiting_approval"
    assert email_effects(rt, email.run_id) == 1
    assert m.approvals.get(alice, email.approval_id).decided_by == "bob"


def test_the_owner_racing_an_escalation_never_decides_an_escalated_approval(
    rt: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    m = rt.manager
    doc = timed_doc(receiver, after=60, action="escalate")
    for attempt in range(6):
        email = paused(rt, alice, doc, f"X-{attempt}")
        assert email.expires_at is not None
        at(rt, email.expires_at)
        decide = partial(m.decide, alice, email.approval_id, "approve")
        decided, swept = race(decide, m.timeouts.sweep)
        owner_won = not isinstance(decided, Exception)
        assert owner_won or isinstance(decided, Conflict | Forbidden), decided
        if isinstance(decided, Conflict):  # checked before the escalation, written after
            assert "escalated a moment ago" in str(decided)
        assert owner_won != (email.approval_id in swept.escalated)
        final = m.approvals.get(alice, email.approval_id)
        assert final.status == ("approved" if owner_won else "pending")
        assert final.escalated == (not owner_won)
        m.wait(alice, email.run_id, timeout_s=30)
        assert email_effects(rt, email.run_id) == int(owner_won)


def test_leave_marks_the_approval_overdue_and_a_person_still_decides(
    rt: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    m = rt.manager
    email = paused(rt, alice, timed_doc(receiver, after=120, action="leave"), "O-1")
    assert email.expires_at is not None
    audited: list[tuple[str, str]] = []
    m.audit = lambda actor, action, _target, _details: audited.append((actor.user_id, action))
    stamp = m.approvals.inbox_stamp(alice)
    assert at(rt, email.expires_at).sweep().overdue == [email.approval_id]
    overdue = m.approvals.get(alice, email.approval_id)
    assert (overdue.status, overdue.overdue, overdue.escalated) == ("pending", True, False)
    assert overdue.timed_out_at == email.expires_at
    assert m.approvals.inbox_stamp(alice) != stamp  # the inbox reloads to show it
    assert m.get(alice, email.run_id).status == "waiting_approval"
    assert at(rt, email.expires_at + timedelta(days=1)).sweep().overdue == []
    assert audited == [(TIMEOUT_DECIDER, "approval.overdue")]
    m.decide(alice, email.approval_id, "approve")  # the starter may still confirm it
    assert m.wait(alice, email.run_id, timeout_s=30).status == "waiting_approval"
    assert email_effects(rt, email.run_id) == 1


def test_a_question_that_cannot_be_rejected_is_marked_overdue_instead(
    rt: Runtime, alice: Actor
) -> None:
    """A document stored before validation refused it (reject on a human_input node)."""
    m = rt.manager
    doc = {
        "schema_version": 1,
        "name": "Ask",
        "entry": "ask",
        "state": [{"name": "answer", "type": "string"}],
        "nodes": [
            {"id": "ask", "type": "human_input",
             "config": {"question": "Which colour?", "target_field": "answer"}},
        ],
        "policies": {"approval_timeouts": {"ask": {"after": 60, "action": "leave"}}},
    }  # fmt: skip
    version = m.library.create(alice, doc)
    rejecting = {"approval_timeouts": {"ask": {"after": 60, "action": "reject"}}}
    with m.sessions() as session:  # as an older studio, before this check, stored it
        row = session.get(GraphVersion, version.version_id)
        assert row is not None
        row.document = {**doc, "policies": rejecting}
        session.commit()
    run_id = m.start_run(alice, version_id=version.version_id)
    assert m.wait(alice, run_id, timeout_s=30).status == "waiting_approval"
    [question] = m.approvals.list(alice, run_id=run_id)
    assert question.expires_at is not None and question.timeout_action == "reject"
    report = at(rt, question.expires_at).sweep()
    assert (report.rejected, report.overdue) == ([], [question.approval_id])
    assert m.approvals.get(alice, question.approval_id).status == "pending"


# --- validation ----------------------------------------------------------------------------


def problems(doc: dict[str, Any]) -> list[Problem]:
    with pytest.raises(GraphInvalid) as caught:
        load_document(doc, default_registry())
    return caught.value.problems


def with_timeouts(doc: dict[str, Any], timeouts: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "policies": {"approval_timeouts": timeouts}}


def test_documents_without_timeouts_and_with_good_ones_stay_valid(receiver: HttpReceiver) -> None:
    assert load_document(support_doc(receiver), default_registry()).policies.approval_timeouts == {}
    doc = load_document(timed_doc(receiver, after=60, action="leave"), default_registry())
    assert doc.policies.approval_timeouts["agent"].warn_before is None
    good = gate_doc(after=30 * 86400, action="escalate", warn_before=30 * 86400 - 1)
    assert load_document(good, default_registry()).policies.approval_timeouts["gate"].after == (
        30 * 86400
    )


@pytest.mark.parametrize(
    ("timeout", "fragment"),
    [
        ({"after": 59, "action": "reject"}, "after: Input should be greater than or equal to 60"),
        ({"after": 30 * 86400 + 1, "action": "reject"}, "less than or equal to 2592000"),
        ({"after": 600, "action": "approve"}, "action: Input should be 'reject'"),
        ({"after": 600}, "missing required field 'policies.approval_timeouts.gate.action'"),
        ({"after": "600", "action": "leave"}, "after: Input should be a valid integer"),
        ({"after": 600, "action": "leave", "warn_before": 0}, "warn_before"),
        ({"after": 600, "action": "leave", "when": 1}, "unknown field"),
        ({"after": 600, "action": "leave", "warn_before": 600}, "warn_before (600 s) must be less"),
        ({"after": 600, "action": "leave", "warn_before": 900}, "the warning comes before"),
    ],
)
def test_a_bad_timeout_is_reported_at_its_node(timeout: dict[str, Any], fragment: str) -> None:
    found = problems(gate_doc(**timeout))
    assert [p.node_id for p in found] == ["gate"], found
    assert fragment in found[0].message, found[0].message


def test_timeouts_of_unknown_nodes_questions_and_sub_graphs_are_refused(
    receiver: HttpReceiver,
) -> None:
    unknown = problems(with_timeouts(gate_doc(), {"gaet": {"after": 60, "action": "reject"}}))
    assert [(p.where, p.node_id) for p in unknown] == [("document", None)]
    assert "names node 'gaet', which is not in this graph" in unknown[0].message

    question = {
        "schema_version": 1,
        "name": "Ask",
        "entry": "ask",
        "state": [{"name": "answer", "type": "string"}],
        "nodes": [{"id": "ask", "type": "human_input",
                   "config": {"question": "Which colour?", "target_field": "answer"}}],
    }  # fmt: skip
    [refused] = problems(with_timeouts(question, {"ask": {"after": 60, "action": "reject"}}))
    assert refused.node_id == "ask" and "cannot be rejected, only answered" in refused.message
    load_document(
        with_timeouts(question, {"ask": {"after": 60, "action": "escalate"}}), default_registry()
    )

    inner = gate_doc(after=60, action="reject")
    outer = {
        "schema_version": 1,
        "name": "Outer",
        "entry": "sub",
        "nodes": [{"id": "sub", "type": "subgraph", "config": {"graph": inner}}],
        "policies": {"approval_timeouts": {"sub": {"after": 60, "action": "leave"}}},
    }
    found = problems(outer)
    assert {p.node_id for p in found} == {"sub"}
    texts = " | ".join(p.message for p in found)
    assert "not supported inside a sub-graph" in texts
    assert "approvals of a sub-graph's nodes cannot time out" in texts


def test_the_json_schema_publishes_the_timeout_fields() -> None:
    schema = json_schema()
    policies = schema["$defs"]["Policies"]["properties"]["approval_timeouts"]
    assert policies["type"] == "object" and policies["maxProperties"] == 500
    assert policies["additionalProperties"] == {"$ref": "#/$defs/ApprovalTimeout"}
    timeout = schema["$defs"]["ApprovalTimeout"]
    assert timeout["required"] == ["after", "action"]
    assert timeout["properties"]["action"]["enum"] == ["reject", "escalate", "leave"]
    assert (
        timeout["properties"]["after"]["minimum"],
        timeout["properties"]["after"]["maximum"],
    ) == (
        60,
        30 * 86400,
    )
    assert timeout["additionalProperties"] is False


def test_every_policy_and_timeout_field_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for model in (Policies, ApprovalTimeout):
        for name in model.model_fields:
            assert f"`{name}`" in readme, name


# --- the migration -------------------------------------------------------------------------


def migrate_to(db: Path, revision: str, *, down: bool = False) -> None:
    engine = make_engine(f"sqlite:///{db}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", "alembic_version_graphs")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


def approval_columns(db: Path) -> set[str]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("approvals")}
    finally:
        engine.dispose()


def test_migration_0006_upgrades_a_0005_database_with_pending_approvals(
    db: Path, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    new = {"expires_at", "warn_at", "timeout_action", "warned_at", "timed_out_at"}
    with opened(db, receiver) as before:
        email = paused(before, alice, support_doc(receiver), "M-1")
    migrate_to(db, "0005_schedules", down=True)  # now exactly a 0005 database, run paused
    assert not new & approval_columns(db)

    with opened(db, receiver) as after:  # opening upgrades it to 0006
        assert new <= approval_columns(db)
        m = after.manager
        kept = m.approvals.get(alice, email.approval_id)
        assert (kept.status, kept.expires_at, kept.timeout_action) == ("pending", None, None)
        assert [a.approval_id for a in m.approvals.list(alice)] == [email.approval_id]
        assert at(after, datetime.now(UTC) + timedelta(days=400)).sweep() == SweepReport()
        m.decide(alice, email.approval_id, "approve")
        assert m.wait(alice, email.run_id, timeout_s=30).status == "waiting_approval"
        [refund] = m.approvals.list(alice, run_id=email.run_id)
        m.decide(bob, refund.approval_id, "approve")
        assert m.wait(alice, email.run_id, timeout_s=30).status == "succeeded"
