"""The run manager end to end: approvals, exactly-once effects, versions, cancel, events."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from components.errors import Conflict, Forbidden, NotFound, UserError
from graphs.headless import Runtime
from graphs.identity import Actor
from graphs.tables import Effect, OutboxMessage
from tests.conftest import example, support_doc
from tests.loopback.http_receiver import HttpReceiver


def start(rt: Runtime, actor: Actor, doc: dict[str, Any], inputs: dict[str, Any]) -> str:
    version = rt.manager.library.create(actor, doc)
    run_id = rt.manager.start_run(actor, version_id=version.version_id, input=inputs)
    rt.manager.wait(actor, run_id, timeout_s=30)
    return run_id


def pending(rt: Runtime, actor: Actor, run_id: str) -> list[Any]:
    return rt.manager.approvals.list(actor, run_id=run_id)


def count(rt: Runtime, table: Any) -> int:
    with rt.manager.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_support_agent_pauses_for_each_gated_call_and_refunds_once_with_edit(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, support_doc(receiver), {"order_id": "A-1001"})
    assert m.get(alice, run_id).status == "waiting_approval"
    [email] = pending(runtime, alice, run_id)
    assert (email.action, email.tier) == ("email_customer", "confirm")
    assert email.args["to"] == "customer-A-1001@example.com"

    m.decide(alice, email.approval_id, "approve")  # confirm: the starter may decide
    assert m.wait(alice, run_id, timeout_s=30).status == "waiting_approval"
    [refund] = pending(runtime, alice, run_id)
    assert (refund.action, refund.tier, refund.args) == (
        "issue_refund",
        "admin",
        {"order_id": "A-1001", "amount": 49.9},
    )
    with pytest.raises(Forbidden, match="someone other than the run's starter"):
        m.decide(alice, refund.approval_id, "approve")
    m.decide(bob, refund.approval_id, "edit", args={"order_id": "A-1001", "amount": 20})

    run = m.wait(alice, run_id, timeout_s=30)
    assert run.status == "succeeded", run.error
    assert run.output == {
        "order_id": "A-1001",
        "reply": (
            "Order A-1001 was looked up, the customer was e-mailed and the refund was issued."
        ),
    }
    [effect] = receiver.effects
    assert effect.json == {"order_id": "A-1001", "amount": 20.0}
    assert effect.idempotency_key and effect.idempotency_key.startswith("eff_")
    assert count(runtime, OutboxMessage) == 1
    assert count(runtime, Effect) == 2


def test_second_decision_is_a_conflict_and_changes_nothing(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, support_doc(receiver), {"order_id": "A-1002"})
    [email] = pending(runtime, alice, run_id)
    m.decide(alice, email.approval_id, "approve")
    with pytest.raises(Conflict):
        m.decide(bob, email.approval_id, "reject", feedback="too late")
    m.wait(alice, run_id, timeout_s=30)
    assert m.approvals.get(alice, email.approval_id).decided_by == "alice"
    assert count(runtime, OutboxMessage) == 1


def test_racing_double_click_yields_one_decision(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, support_doc(receiver), {"order_id": "A-1003"})
    [email] = pending(runtime, alice, run_id)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def click() -> None:
        barrier.wait()
        try:
            m.decide(alice, email.approval_id, "approve")
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=click) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
    m.wait(alice, run_id, timeout_s=30)
    assert count(runtime, OutboxMessage) == 1


def test_reject_feedback_reaches_the_model_and_no_effect_happens(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, support_doc(receiver), {"order_id": "A-1004"})
    [email] = pending(runtime, alice, run_id)
    m.decide(alice, email.approval_id, "approve")
    m.wait(alice, run_id, timeout_s=30)
    [refund] = pending(runtime, alice, run_id)
    m.decide(bob, refund.approval_id, "reject", feedback="refund policy: store credit only")
    assert m.wait(alice, run_id, timeout_s=30).status == "succeeded"
    assert receiver.effects == []
    compiled = m.executor.compiled(m.get(alice, run_id).version_id)
    state = compiled.graph.get_state({"configurable": {"thread_id": f"run:{run_id}"}})
    tool_texts = [msg.content for msg in state.values["messages"] if msg.type == "tool"]
    assert any("store credit only" in text for text in tool_texts)


def test_edit_is_revalidated_against_the_tool_schema(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, support_doc(receiver), {"order_id": "A-1005"})
    [email] = pending(runtime, alice, run_id)
    m.decide(alice, email.approval_id, "approve")
    m.wait(alice, run_id, timeout_s=30)
    [refund] = pending(runtime, alice, run_id)
    with pytest.raises(UserError, match="amount"):
        m.decide(bob, refund.approval_id, "edit", args={"order_id": "A-1005", "amount": "lots"})
    with pytest.raises(UserError):
        m.decide(
            bob,
            refund.approval_id,
            "edit",
            args={"order_id": "A-1005", "amount": 1, "to_account": "attacker"},
        )
    assert m.approvals.get(alice, refund.approval_id).status == "pending"


def test_parallel_gated_calls_are_decided_independently_by_id(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    doc = support_doc(receiver)
    llm = doc["nodes"][0]["config"]
    llm["provider_config"]["script"] = [
        {
            "tool_calls": [
                {
                    "name": "email_customer",
                    "args": {"to": "c@example.com", "subject": "s", "body": "b"},
                },
                {"name": "issue_refund", "args": {"order_id": "A-7", "amount": 5}},
            ]
        },
        {"text": "both handled"},
    ]
    m = runtime.manager
    run_id = start(runtime, alice, doc, {"order_id": "A-7"})
    both = {a.action: a for a in pending(runtime, alice, run_id)}
    assert set(both) == {"email_customer", "issue_refund"}
    m.decide(bob, both["issue_refund"].approval_id, "approve")
    assert m.wait(alice, run_id, timeout_s=30).status == "waiting_approval"
    assert len(receiver.effects) == 1
    assert [a.action for a in pending(runtime, alice, run_id)] == ["email_customer"]
    m.decide(alice, both["email_customer"].approval_id, "reject", feedback="no mail")
    assert m.wait(alice, run_id, timeout_s=30).status == "succeeded"
    assert len(receiver.effects) == 1
    assert count(runtime, OutboxMessage) == 0


def test_paused_run_resumes_on_its_own_version(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    doc = support_doc(receiver)
    v1 = m.library.create(alice, doc)
    run_id = m.start_run(alice, version_id=v1.version_id, input={"order_id": "A-1006"})
    m.wait(alice, run_id, timeout_s=30)
    changed = copy.deepcopy(doc)
    changed["nodes"][0]["config"]["provider_config"]["script"][-1] = {"text": "VERSION TWO"}
    v2 = m.library.save_version(alice, v1.graph_id, changed)
    assert v2.number == 2
    [email] = pending(runtime, alice, run_id)
    m.decide(alice, email.approval_id, "reject", feedback="skip")
    m.wait(alice, run_id, timeout_s=30)
    [refund] = pending(runtime, alice, run_id)
    m.decide(Actor("acme", "bob"), refund.approval_id, "reject", feedback="skip")
    run = m.wait(alice, run_id, timeout_s=30)
    assert run.version_id == v1.version_id
    assert "VERSION TWO" not in str(run.output)


def test_cancel_wins_over_a_later_decision(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, support_doc(receiver), {"order_id": "A-1007"})
    [email] = pending(runtime, alice, run_id)
    assert m.cancel(alice, run_id).status == "cancelled"
    with pytest.raises(Conflict):
        m.decide(alice, email.approval_id, "approve")
    assert m.approvals.get(alice, email.approval_id).status == "cancelled"
    with pytest.raises(Conflict):
        m.cancel(alice, run_id)
    assert count(runtime, OutboxMessage) == 0


def test_foreign_workspace_sees_nothing(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, mallory: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, support_doc(receiver), {"order_id": "A-1008"})
    [email] = pending(runtime, alice, run_id)
    with pytest.raises(NotFound):
        m.get(mallory, run_id)
    with pytest.raises(NotFound):
        m.decide(mallory, email.approval_id, "approve")
    with pytest.raises(NotFound):
        m.cancel(mallory, run_id)
    with pytest.raises(NotFound):
        m.library.version(mallory, m.get(alice, run_id).version_id)
    assert m.list(mallory) == []
    assert m.approvals.list(mallory) == []
    assert m.library.list(mallory) == []
    assert m.events.history(mallory.workspace_id, run_id) == []
    assert m.approvals.get(alice, email.approval_id).status == "pending"


def test_thread_ids_are_derived_on_the_server(runtime: Runtime, alice: Actor) -> None:
    m = runtime.manager
    version = m.library.create(alice, example("triage_router"))
    with pytest.raises(UserError, match="unknown input"):
        m.start_run(
            alice,
            version_id=version.version_id,
            input={"ticket": "x", "thread_id": "someone-elses-thread"},
        )
    run_id = m.start_run(alice, version_id=version.version_id, input={"ticket": "invoice"})
    m.wait(alice, run_id)
    with m.sessions() as session:
        from graphs.tables import Run

        run = session.get(Run, run_id)
        assert run is not None and run.thread_id == f"run:{run_id}"


@pytest.mark.parametrize(
    ("ticket", "category", "attempts", "answer"),
    [
        ("My invoice is wrong", "billing", 0, "Billing will correct"),
        ("The app crashes on start", "bug", 0, "Engineering"),
        ("Hello?", "unknown", 3, "Escalated to a person after 3 attempts."),
    ],
)
def test_triage_router_with_bounded_loop_and_subgraph(
    runtime: Runtime, alice: Actor, ticket: str, category: str, attempts: int, answer: str
) -> None:
    run_id = start(runtime, alice, example("triage_router"), {"ticket": ticket})
    run = runtime.manager.get(alice, run_id)
    assert run.status == "succeeded", run.error
    assert run.output is not None
    assert (run.output["category"], run.output["attempts"]) == (category, attempts)
    assert run.output["answer"].startswith(answer)


def test_dataset_report_is_a_long_run_that_mails_once_after_confirmation(
    runtime: Runtime, alice: Actor
) -> None:
    m = runtime.manager
    run_id = start(runtime, alice, example("dataset_report"), {"dataset": "sales"})
    [mail] = pending(runtime, alice, run_id)
    assert mail.action == "send_report" and mail.args["to"] == "me@example.com"
    m.decide(alice, mail.approval_id, "approve")
    run = m.wait(alice, run_id, timeout_s=60)
    assert run.status == "succeeded", run.error
    assert run.output is not None
    assert len(run.output["profiles"]) == 5
    steps = [e for e in m.events.history("acme", run_id) if e.kind == "node_finished"]
    assert len(steps) >= 14
    assert count(runtime, OutboxMessage) == 1


@pytest.mark.parametrize("watched", [True, False])
def test_events_are_numbered_and_describe_steps_tokens_and_approvals(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, watched: bool
) -> None:
    m = runtime.manager
    version = m.library.create(alice, support_doc(receiver))
    run_id = m.start_run(
        alice, version_id=version.version_id, input={"order_id": "A-1009"}, stream_tokens=watched
    )
    m.wait(alice, run_id, timeout_s=30)
    m.events.flush()
    events = m.events.history("acme", run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = {e.kind for e in events}
    assert {"run_status", "node_started", "node_finished", "approval_requested"} <= kinds
    tokens = "".join(e.data["text"] for e in events if e.kind == "token")
    assert ("Let me look that order up." in tokens) is watched
    model_steps = [e for e in events if e.kind == "node_finished" and e.data.get("model")]
    assert model_steps and all(e.data["input_tokens"] > 0 for e in model_steps)
