"""Time travel: forks copy the origin's history up to a checkpoint, apply state edits, and
never repeat an effect the origin already made (the ledger answers it); retries run a failed
step again as a new run. Real SQLite, the loopback receiver as the payment API."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from components.base import HttpPolicy
from components.errors import Conflict, Forbidden, NotFound, UserError
from graphs.forks import fork_of, fork_run, retry_run
from graphs.headless import Runtime, open_runtime
from graphs.identity import Actor
from graphs.ledger import idempotency_key
from graphs.tables import Effect, Run
from tests.conftest import example, support_doc
from tests.loopback.http_receiver import HttpReceiver


def chain_doc(receiver: HttpReceiver) -> dict[str, Any]:
    """charge (an effect) → prepare (a note) → notify (an effect) → output."""
    post = {"method": "POST"}
    return {
        "schema_version": 1,
        "name": "Charge and notify",
        "entry": "charge_it",
        "policies": {"untrusted_content_gates_effects": False},
        "state": [
            {"name": "order_id", "type": "string", "input": True},
            {"name": "amount", "type": "number", "default": 10},
            {"name": "note", "type": "string"},
            {"name": "charged", "type": "object"},
            {"name": "notified", "type": "object"},
        ],
        "tools": [
            {
                "name": "charge",
                "type": "http",
                "tier": "free",
                "config": {
                    **post,
                    "url": receiver.url_for("/charges"),
                    "params": [
                        {"name": "order_id", "type": "string"},
                        {"name": "amount", "type": "number"},
                    ],
                },
            },
            {
                "name": "notify",
                "type": "http",
                "tier": "free",
                "config": {
                    **post,
                    "url": receiver.url_for("/notify"),
                    "params": [
                        {"name": "order_id", "type": "string"},
                        {"name": "note", "type": "string"},
                    ],
                },
            },
        ],
        "nodes": [
            {
                "id": "charge_it",
                "type": "tool_call",
                "config": {
                    "tool": "charge",
                    "args": {"order_id": "order_id", "amount": "amount"},
                    "result_field": "charged",
                },
            },
            {
                "id": "prepare",
                "type": "transform",
                "config": {"assign": {"note": "'charged ' + order_id"}},
            },
            {
                "id": "notify_it",
                "type": "tool_call",
                "config": {
                    "tool": "notify",
                    "args": {"order_id": "order_id", "note": "note"},
                    "result_field": "notified",
                },
            },
            {"id": "done", "type": "output", "config": {"fields": ["order_id", "note", "charged"]}},
        ],
        "edges": [
            {"source": "charge_it", "target": "prepare"},
            {"source": "prepare", "target": "notify_it"},
            {"source": "notify_it", "target": "done"},
        ],
    }


@pytest.fixture
def api(receiver: HttpReceiver) -> HttpReceiver:
    receiver.route("/charges", status=201, body={"charge": "ch_1"})
    receiver.route("/notify", status=201, body={"sent": True})
    return receiver


def run_chain(rt: Runtime, actor: Actor, receiver: HttpReceiver, order: str = "A-1") -> str:
    version = rt.manager.library.create(actor, chain_doc(receiver))
    run_id = rt.manager.start_run(actor, version_id=version.version_id, input={"order_id": order})
    assert rt.manager.wait(actor, run_id, timeout_s=30).status == "succeeded"
    return run_id


def history(rt: Runtime, actor: Actor, run_id: str) -> list[Any]:
    """The run's checkpoints, oldest first."""
    run = rt.manager.get(actor, run_id)
    graph = rt.manager.executor.compiled(run.version_id).graph
    return list(graph.get_state_history({"configurable": {"thread_id": f"run:{run_id}"}}))[::-1]


def at_next(rt: Runtime, actor: Actor, run_id: str, node: str) -> Any:
    """The checkpoint from which `node` ran next."""
    return next(s for s in history(rt, actor, run_id) if s.next == (node,))


def checkpoint_id(snapshot: Any) -> str:
    return str(snapshot.config["configurable"]["checkpoint_id"])


def finished(rt: Runtime, actor: Actor, run_id: str) -> Any:
    view = rt.manager.wait(actor, run_id, timeout_s=30)
    assert view.status == "succeeded", view.error
    return view


def effects_by_path(receiver: HttpReceiver) -> dict[str, int]:
    counts: dict[str, int] = {}
    for effect in receiver.effects:
        counts[effect.path] = counts.get(effect.path, 0) + 1
    return counts


@pytest.mark.parametrize("node", ["charge_it", "prepare", "notify_it", "done"])
def test_a_fork_from_step_k_reproduces_the_earlier_steps_and_repeats_no_effect(
    runtime: Runtime, api: HttpReceiver, alice: Actor, node: str
) -> None:
    m = runtime.manager
    origin = run_chain(runtime, alice, api)
    assert effects_by_path(api) == {"/charges": 1, "/notify": 1}
    requests_before = len(api.requests)
    point = at_next(runtime, alice, origin, node)

    fork = fork_run(m, alice, origin, checkpoint_id(point))
    view = finished(runtime, alice, fork)

    assert view.output == m.get(alice, origin).output
    # the steps before k are the origin's, copied: same step numbers, same state
    origin_steps = history(runtime, alice, origin)
    fork_steps = history(runtime, alice, fork)
    k = point.metadata["step"]
    before = [(s.metadata["step"], s.values) for s in origin_steps if s.metadata["step"] <= k]
    assert [(s.metadata["step"], s.values) for s in fork_steps[: len(before)]] == before
    # the steps from k on ran again, and every effect they made was answered by the ledger
    assert [s.values for s in fork_steps] == [s.values for s in origin_steps]
    assert effects_by_path(api) == {"/charges": 1, "/notify": 1}
    assert len(api.requests) == requests_before  # not even a replayed request went out
    with m.sessions() as session:
        assert session.scalars(select(Effect).where(Effect.run_id == fork)).all() == []
    info = fork_of(m, alice, fork)
    assert info is not None and (info.origin_run_id, info.step, info.kind) == (origin, k, "fork")


def test_a_state_edit_makes_a_new_effect_only_where_the_call_changed(
    runtime: Runtime, api: HttpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    origin = run_chain(runtime, alice, api)
    # edit the amount before the charge: a different charge (new), the same notification
    point = at_next(runtime, alice, origin, "charge_it")
    fork = fork_run(m, alice, origin, checkpoint_id(point), {"amount": 25})
    finished(runtime, alice, fork)
    assert effects_by_path(api) == {"/charges": 2, "/notify": 1}
    new_charge = api.effects[-1]
    assert new_charge.json == {"order_id": "A-1", "amount": 25}
    assert new_charge.idempotency_key == idempotency_key("acme", fork, "charge_it", "charge_it@1")

    # edit the note before the notification: only the notification is new
    point = at_next(runtime, alice, origin, "notify_it")
    second = fork_run(m, alice, origin, checkpoint_id(point), {"note": "<b>edited</b>"})
    state = finished(runtime, alice, second)
    assert state.output == {"order_id": "A-1", "note": "<b>edited</b>", "charged": {
        "status": 201, "body": {"charge": "ch_1"}}}  # fmt: skip
    assert effects_by_path(api) == {"/charges": 2, "/notify": 2}
    assert api.effects[-1].json == {"order_id": "A-1", "note": "<b>edited</b>"}
    # the edit is a checkpoint of its own at the same step, after the copied one
    steps = history(runtime, alice, second)
    [edit] = [s for s in steps if s.metadata["source"] == "update"]
    assert steps.index(edit) == len(steps) - 3  # then notify_it's checkpoint and the end
    assert steps[steps.index(edit) - 1].values["note"] == "charged A-1"  # the copied head
    assert edit.values["note"] == "<b>edited</b>"
    assert edit.metadata["step"] == point.metadata["step"] and edit.next == ("notify_it",)


def test_a_fork_of_a_fork_is_answered_by_whichever_origin_made_the_call(
    runtime: Runtime, api: HttpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    origin = run_chain(runtime, alice, api)
    first = fork_run(
        m, alice, origin, checkpoint_id(at_next(runtime, alice, origin, "notify_it")), {"note": "x"}
    )
    finished(runtime, alice, first)
    assert effects_by_path(api) == {"/charges": 1, "/notify": 2}
    # from the first fork's copied start: the charge is the origin's, the recomputed note
    # gives the origin's notification again — the first fork's own (edited) one differs
    second = fork_run(m, alice, first, checkpoint_id(at_next(runtime, alice, first, "charge_it")))
    finished(runtime, alice, second)
    # and again from the first fork's edited head: the first fork's notification
    edited = next(s for s in history(runtime, alice, first) if s.metadata["source"] == "update")
    third = fork_run(m, alice, first, checkpoint_id(edited))
    finished(runtime, alice, third)
    assert effects_by_path(api) == {"/charges": 1, "/notify": 2}


def test_an_effect_that_happened_but_was_never_recorded_goes_out_with_the_origin_key(
    runtime: Runtime, api: HttpReceiver, alice: Actor
) -> None:
    """The crash window: the receiver applied the notification, the process died before
    the ledger row was marked done. The fork sends the origin's idempotency key again."""
    m = runtime.manager
    origin = run_chain(runtime, alice, api)
    with m.sessions() as session:
        session.execute(
            update(Effect)
            .where(Effect.run_id == origin, Effect.node_id == "notify_it")
            .values(status="started", result=None)
        )
        session.commit()
    fork = fork_run(m, alice, origin, checkpoint_id(at_next(runtime, alice, origin, "notify_it")))
    finished(runtime, alice, fork)
    assert effects_by_path(api) == {"/charges": 1, "/notify": 1}
    replayed = api.requests[-1]
    assert replayed.headers["idempotency-key"] == idempotency_key(
        "acme", origin, "notify_it", "notify_it@3"
    )


def test_retry_runs_the_failed_step_again_and_not_the_effects_before_it(
    runtime: Runtime, api: HttpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    api.route("/notify", status=503, body={"error": "down"})
    version = m.library.create(alice, chain_doc(api))
    origin = m.start_run(alice, version_id=version.version_id, input={"order_id": "A-7"})
    failed = m.wait(alice, origin, timeout_s=30)
    assert failed.status == "failed" and "notify_it" in (failed.error or "")
    assert effects_by_path(api) == {"/charges": 1}

    api.route("/notify", status=201, body={"sent": True})
    retry = retry_run(m, alice, origin)
    view = finished(runtime, alice, retry)
    assert view.output is not None and view.output["charged"]["body"] == {"charge": "ch_1"}
    assert effects_by_path(api) == {"/charges": 1, "/notify": 1}
    # the failed call is tried again under the key the origin used for it
    assert api.effects[-1].idempotency_key == idempotency_key(
        "acme", origin, "notify_it", "notify_it@3"
    )
    info = fork_of(m, alice, retry)
    assert info is not None and info.kind == "retry" and info.origin_run_id == origin
    with pytest.raises(Conflict, match="succeeded"):
        retry_run(m, alice, retry)


def test_a_fork_of_a_paused_agent_asks_again_and_the_ledger_answers_the_refund(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor, bob: Actor
) -> None:
    """Model-made tool calls: a fork from the step that executes the refund needs a new
    approval in the fork, and the approved refund is the origin's, not a second one."""
    m = runtime.manager
    version = m.library.create(alice, support_doc(receiver))
    origin = m.start_run(alice, version_id=version.version_id, input={"order_id": "A-1001"})
    m.wait(alice, origin, timeout_s=30)
    [email] = m.approvals.list(alice, run_id=origin)
    m.decide(alice, email.approval_id, "approve")
    m.wait(alice, origin, timeout_s=30)
    [refund] = [a for a in m.approvals.list(alice, run_id=origin) if a.status == "pending"]
    m.decide(bob, refund.approval_id, "approve")
    assert m.wait(alice, origin, timeout_s=30).status == "succeeded"
    assert len(receiver.effects) == 1
    point = next(
        s for s in history(runtime, alice, origin)
        if s.next == ("agent.tools",) and s.tasks[0].result
        and "refund" in str(s.tasks[0].result)
    )  # fmt: skip

    fork = fork_run(m, alice, origin, checkpoint_id(point))
    assert m.wait(alice, fork, timeout_s=30).status == "waiting_approval"
    [again] = m.approvals.list(alice, run_id=fork)
    assert again.action == "issue_refund" and again.approval_id != refund.approval_id
    m.decide(bob, again.approval_id, "approve")
    assert m.wait(alice, fork, timeout_s=30).status == "succeeded"
    assert len(receiver.effects) == 1


# --- authority, scope and bad input ------------------------------------------------------


class RoleAuthorizer:
    """Roles by user, as the studio's RBAC grants them."""

    ROLES: Mapping[str, set[str]] = {
        "viewer": {"graph:read", "run:read"},
        "runner": {"graph:read", "run:read", "run:start", "run:cancel"},
        "editor": {"graph:read", "run:read", "run:start", "run:cancel", "graph:edit"},
    }

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = users

    def require(self, actor: Actor, action: str) -> None:
        if action not in self.ROLES[self.users.get(actor.user_id, "viewer")]:
            raise Forbidden(f"{actor.user_id!r} may not {action!r}")


@pytest.fixture
def governed(tmp_path: Path, api: HttpReceiver) -> Iterator[Runtime]:
    users = {"ed": "editor", "vi": "viewer", "ru": "runner", "mallory": "editor"}
    policy = HttpPolicy(allow_hosts=frozenset({api.host_port}), timeout_s=5)
    with open_runtime(
        tmp_path / "g.db", http=policy, lease_ttl_s=5, authorizer=RoleAuthorizer(users)
    ) as rt:
        yield rt


def count_runs(rt: Runtime) -> int:
    with rt.manager.sessions() as session:
        return len(session.scalars(select(Run.run_id)).all())


def test_only_editors_fork_runners_retry_and_outsiders_find_nothing(
    governed: Runtime, api: HttpReceiver
) -> None:
    m = governed.manager
    ed, vi, ru = Actor("acme", "ed"), Actor("acme", "vi"), Actor("acme", "ru")
    mallory = Actor("evil", "mallory")
    origin = run_chain(governed, ed, api)
    point = checkpoint_id(at_next(governed, ed, origin, "notify_it"))
    runs = count_runs(governed)
    with pytest.raises(Forbidden):
        fork_run(m, vi, origin, point)
    with pytest.raises(Forbidden):
        fork_run(m, ru, origin, point, {"note": "x"})
    with pytest.raises(NotFound):
        fork_run(m, mallory, origin, point)
    with pytest.raises(NotFound):
        retry_run(m, mallory, origin)
    with pytest.raises(Forbidden):
        retry_run(m, vi, origin)
    assert count_runs(governed) == runs
    assert fork_of(m, ed, origin) is None
    with pytest.raises(NotFound):
        fork_of(m, mallory, origin)


def test_a_checkpoint_must_belong_to_the_run(governed: Runtime, api: HttpReceiver) -> None:
    m = governed.manager
    ed = Actor("acme", "ed")
    mine = run_chain(governed, ed, api, "A-1")
    other = run_chain(governed, ed, api, "A-2")
    theirs = checkpoint_id(at_next(governed, ed, other, "notify_it"))
    for bad in (theirs, "", "../../etc", "1f1e9881-dcd5-653e-8003-18c512fccf9b", "x" * 5000):
        with pytest.raises(NotFound):
            fork_run(m, ed, mine, bad)
    end = checkpoint_id(history(governed, ed, mine)[-1])
    with pytest.raises(Conflict, match="ended"):
        fork_run(m, ed, mine, end)


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"messages": []}, "messages"),
        ({"studio_tainted": False}, "studio_tainted"),
        ({"studio_output": {"order_id": "forged"}}, "studio_output"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"amount": "lots"}, "must be a number"),
        ({"amount": True}, "must be a number"),
        ({"note": "x" * 300_000}, "larger than"),
    ],
)
def test_bad_state_edits_are_refused_and_start_nothing(
    runtime: Runtime, api: HttpReceiver, alice: Actor, edits: dict[str, Any], message: str
) -> None:
    origin = run_chain(runtime, alice, api)
    point = checkpoint_id(at_next(runtime, alice, origin, "notify_it"))
    runs = count_runs(runtime)
    with pytest.raises(UserError, match=message):
        fork_run(runtime.manager, alice, origin, point, edits)
    assert count_runs(runtime) == runs


def test_a_fork_at_a_sub_graph_step_runs_the_sub_graph_again_with_the_edit(
    runtime: Runtime, alice: Actor
) -> None:
    m = runtime.manager
    version = m.library.create(alice, example("triage_router"))
    origin = m.start_run(alice, version_id=version.version_id, input={"ticket": "hello"})
    assert finished(runtime, alice, origin).output == {
        "category": "unknown",
        "attempts": 3,
        "answer": "Escalated to a person after 3 attempts.",
    }
    first_classify = at_next(runtime, alice, origin, "classify")
    fork = fork_run(m, alice, origin, checkpoint_id(first_classify), {"ticket": "It crashed"})
    assert finished(runtime, alice, fork).output == {
        "category": "bug",
        "attempts": 0,
        "answer": "Engineering is looking into the crash.",
    }
    assert m.get(alice, fork).input == {"ticket": "hello"}  # the run's input stays the origin's
