"""Tenancy and authority (TESTING.md "Tenancy" and "Authority", P0; issue 3 "Must show").

One studio with two workspaces (see `tests.tenancy_fixtures`). The tenant matrix runs every
service function that takes an id, for every object type of workspace A, as every member of
workspace B (and B's admin API token): the answer is "not found" — exactly the answer a
made-up id gets, so nothing leaks whether A's id exists — and no row of A changes. Lists and
counts never include A's rows; workspace/owner/tier fields sent by a client are ignored or
refused. The authority tests decide approvals as every role (the Casbin truth table itself is
in tests/auth/test_rbac.py).

The module shares one studio: the matrix only attempts things that must fail (each test
compares a full snapshot of A before and after); tests that change state start their own runs
and use their own users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from auth.actions import ACTIONS
from components.base import HttpPolicy
from components.errors import Forbidden, NotFound, UserError
from graphs.identity import Actor
from studio.context import StudioAuthority, StudioAuthorizer, open_studio
from studio.settings import Settings
from tests.loopback.http_receiver import HttpReceiver
from tests.tenancy_fixtures import (
    A_SECRET,
    A_SECRET_VALUE,
    B_SECRET,
    B_SECRET_VALUE,
    ROLES,
    WAIT_S,
    WS_A,
    WS_B,
    Ids,
    World,
    build_world,
    outcome,
    run_to_email,
    run_to_refund,
    snapshot,
)

ADMIN_TOKEN = "admin-token"
B_ACTORS = (*ROLES, ADMIN_TOKEN)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("tenancy")
    with pytest.MonkeyPatch.context() as mp, HttpReceiver() as receiver:
        mp.delenv("STUDIO_SECRET_KEY", raising=False)
        receiver.route("/refunds", status=201, body={"refund": "accepted"})
        policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
        with open_studio(Settings(data_dir=tmp), http=policy, lease_ttl_s=5) as studio:
            yield build_world(studio, receiver)


def b_actor(world: World, who: str) -> Actor:
    """A member of B (by role), or B's admin acting through its all-actions API token."""
    if who == ADMIN_TOKEN:
        actor = world.studio.token_actor(world.b_token)
        assert actor.workspace_id == WS_B
        return actor
    return world.actor(WS_B, who)


def assert_a_intact(world: World) -> None:
    """Re-read A's objects as A: all there, all as the fixture left them."""
    m, a = world.studio.manager, world.ids_a
    runner, approver = world.actor(WS_A, "runner"), world.actor(WS_A, "approver")
    run = m.get(runner, a.run_id)
    assert (run.status, run.started_by) == ("waiting_approval", runner.user_id)
    assert m.library.latest(runner, a.graph_id).version_id == a.version_id
    assert m.approvals.get(approver, a.refund_approval_id).status == "pending"
    email = m.approvals.get(approver, a.email_approval_id)
    assert (email.status, email.decided_by) == ("approved", approver.user_id)
    tokens = world.studio.tokens.list_tokens(world.actor(WS_A, "admin"))
    assert [t.revoked_at for t in tokens if t.token_id == a.token_id] == [None]
    assert world.studio.token_actor(world.a_token).workspace_id == WS_A


# --- the tenant matrix ------------------------------------------------------------------------

Op = Callable[[World, Actor, Ids], Any]


def _decide(approval: str, decision: str) -> Op:
    def call(w: World, b: Actor, ids: Ids) -> Any:
        approval_id = getattr(ids, approval)
        args: dict[str, Any] | None = None
        if decision == "edit" and approval == "refund_approval_id":
            args = {"order_id": "A-1", "amount": 0.01}
        elif decision == "edit":
            args = {"to": "customer-A-1@example.com", "subject": "s", "body": "b"}
        elif decision == "respond":
            args = {"response": "yes"}
        return w.studio.manager.decide(b, approval_id, decision, args=args)  # type: ignore[arg-type]

    return call


OPS: dict[str, Op] = {
    # graph and version
    "graph.version(latest)": lambda w, b, ids: w.studio.manager.library.version(b, ids.version_id),
    "graph.version(first)": lambda w, b, ids: w.studio.manager.library.version(
        b, ids.first_version_id
    ),
    "graph.latest": lambda w, b, ids: w.studio.manager.library.latest(b, ids.graph_id),
    "graph.save_version": lambda w, b, ids: w.studio.manager.library.save_version(
        b, ids.graph_id, w.doc(), message="taken over"
    ),
    "run.start(version_id)": lambda w, b, ids: w.studio.manager.start_run(
        b, version_id=ids.version_id, input={"order_id": "X-1"}
    ),
    "run.start(first version_id)": lambda w, b, ids: w.studio.manager.start_run(
        b, version_id=ids.first_version_id, input={"order_id": "X-1"}
    ),
    "run.start(graph_id)": lambda w, b, ids: w.studio.manager.start_run(
        b, graph_id=ids.graph_id, input={"order_id": "X-1"}
    ),
    # run and its events
    "run.get": lambda w, b, ids: w.studio.manager.get(b, ids.run_id),
    "run.cancel": lambda w, b, ids: w.studio.manager.cancel(b, ids.run_id),
    "run.wait": lambda w, b, ids: w.studio.manager.wait(b, ids.run_id, timeout_s=1),
    "run.iter_events": lambda w, b, ids: w.studio.manager.iter_events(b, ids.run_id, timeout_s=1),
    "run.iter_events(after=1)": lambda w, b, ids: w.studio.manager.iter_events(
        b, ids.run_id, after=1, timeout_s=1
    ),
    # approvals: the pending one and the decided one (never "conflict": that would tell)
    "approval.get(pending)": lambda w, b, ids: w.studio.manager.approvals.get(
        b, ids.refund_approval_id
    ),
    "approval.get(decided)": lambda w, b, ids: w.studio.manager.approvals.get(
        b, ids.email_approval_id
    ),
    "approvals.decide(pending, service)": lambda w, b, ids: w.studio.manager.approvals.decide(
        b, ids.refund_approval_id, "approve"
    ),
    **{
        f"decide({which}, {decision})": _decide(attr, decision)
        for which, attr in (("pending", "refund_approval_id"), ("decided", "email_approval_id"))
        for decision in ("approve", "edit", "reject", "respond")
    },
    # tokens
    "token.revoke": lambda w, b, ids: w.studio.tokens.revoke_token(b, ids.token_id),
    "token.revoke(any_owner)": lambda w, b, ids: w.studio.tokens.revoke_token(
        b, ids.token_id, any_owner=True
    ),
    # secrets
    "secret.delete": lambda w, b, ids: w.studio.vault.delete_secret(b, ids.secret_name),
    "secret.resolve(vault)": lambda w, b, ids: w.studio.vault.resolver(b.workspace_id)(
        ids.secret_name
    ),
    "secret.resolve(run resolver)": lambda w, b, ids: w.studio.manager.executor.secrets(
        b.workspace_id
    )(ids.secret_name),
}


@pytest.mark.parametrize("who", B_ACTORS)
@pytest.mark.parametrize("op", list(OPS))
def test_an_actor_of_b_finds_nothing_of_a_and_changes_nothing(
    world: World, op: str, who: str
) -> None:
    b = b_actor(world, who)
    before = snapshot(world.studio, WS_A)
    sent = len(world.receiver.effects)
    real = outcome(lambda: OPS[op](world, b, world.ids_a))
    made_up = outcome(lambda: OPS[op](world, b, Ids.made_up()))
    assert real != "ok", f"{who} of B could {op} on A's object"
    assert real == made_up, f"A's id answers {real}, a made-up id {made_up}: existence leaks"
    if who in ("admin", ADMIN_TOKEN):
        assert real == "NotFound"  # B's admin may do everything in B, and finds nothing of A
    else:
        assert real in ("NotFound", "Forbidden")
    world.studio.manager.wait(world.actor(WS_A, "runner"), world.ids_a.run_id, timeout_s=WAIT_S)
    assert snapshot(world.studio, WS_A) == before
    assert len(world.receiver.effects) == sent
    assert_a_intact(world)


def test_waiting_on_a_busy_run_of_a_answers_not_found_at_once(world: World) -> None:
    """`wait` is a scope check like any other: while A's run is busy, B learns nothing from
    how long the answer takes (and does not park a thread on A's run)."""
    m = world.studio.manager
    runner, approver = world.actor(WS_A, "runner"), world.actor(WS_A, "approver")
    run_id, _, refund = run_to_refund(world, runner, world.ids_a.version_id, "A-20", approver)
    world.receiver.route("/refunds", status=201, body={"refund": "accepted"}, delay_s=2.0)
    try:
        m.decide(approver, refund.approval_id, "approve")  # the run is busy for about 2 s
        b = world.actor(WS_B, "admin")
        started = time.monotonic()
        real = outcome(lambda: m.wait(b, run_id, timeout_s=10))
        took_real = time.monotonic() - started
        started = time.monotonic()
        made_up = outcome(lambda: m.wait(b, Ids.made_up().run_id, timeout_s=10))
        took_made_up = time.monotonic() - started
    finally:
        world.receiver.route("/refunds", status=201, body={"refund": "accepted"})
        assert m.wait(runner, run_id, timeout_s=WAIT_S).status == "succeeded"
    assert (real, made_up) == ("NotFound", "NotFound")
    assert took_made_up < 0.5
    assert took_real < 0.5, f"B waited {took_real:.2f} s on A's busy run before 'not found'"


def test_the_matrix_covers_every_object_type() -> None:
    kinds = {name.split(".")[0].split("(")[0] for name in OPS}
    assert {"graph", "run", "approval", "approvals", "decide", "token", "secret"} <= kinds


def test_events_of_a_never_reach_b(world: World) -> None:
    m, a = world.studio.manager, world.ids_a
    m.events.flush()
    mine = m.events.history(WS_A, a.run_id)
    assert mine and {e.workspace_id for e in mine} == {WS_A}  # the fixture made A's events
    assert m.events.history(WS_B, a.run_id) == []
    assert m.events.history(WS_B, a.run_id, after=0) == []
    for who in B_ACTORS:
        with pytest.raises(NotFound):
            list(m.iter_events(b_actor(world, who), a.run_id, timeout_s=1))
    assert not m.events.has_subscribers(a.run_id)  # the refused watcher left nothing behind
    # B's own history is B's only
    theirs = m.events.history(WS_B, world.ids_b.run_id)
    assert theirs and {e.run_id for e in theirs} == {world.ids_b.run_id}


def test_unstored_events_of_a_are_not_served_to_b(world: World) -> None:
    """Events still queued in memory (not yet written) are filtered by workspace too."""
    m, a = world.studio.manager, world.ids_a
    m.events.flush()
    last = m.events.history(WS_A, a.run_id)[-1].seq
    event = m.events.publish(WS_A, a.run_id, "run_status", data={"status": "waiting_approval"})
    try:
        assert m.events.history(WS_B, a.run_id, after=last) == []
        assert [e.seq for e in m.events.history(WS_A, a.run_id, after=last)] == [event.seq]
    finally:
        m.events.flush()


# --- effects ----------------------------------------------------------------------------------


def _effects(world: World, run_id: str) -> list[tuple[Any, ...]]:
    with world.studio.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT workspace_id, node_id, tool_call_id, idempotency_key, tool, status, "
                    "attempts FROM effects WHERE run_id = :r ORDER BY effect_id"
                ),
                {"r": run_id},
            )
        )


def _outbox(world: World, run_id: str) -> list[tuple[Any, ...]]:
    with world.studio.engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT message_id, workspace_id FROM outbox WHERE run_id = :r"),
                {"r": run_id},
            )
        )


def _a_identifiers(world: World) -> list[str]:
    """Strings that identify A's rows: a B-scoped answer must contain none of them (not the
    secret's name: B may have a secret of the same name, see below)."""
    a = world.ids_a
    keys = [a.graph_id, a.version_id, a.first_version_id, a.run_id]
    keys += [a.email_approval_id, a.refund_approval_id, a.token_id, A_SECRET_VALUE]
    keys += [str(row[2]) for row in _effects(world, a.run_id)]  # tool call ids
    keys += [str(row[3]) for row in _effects(world, a.run_id)]  # idempotency keys
    keys += [str(row[0]) for row in _outbox(world, a.run_id)]
    keys += [world.users[(WS_A, role)] for role in ROLES]
    keys.append(world.a_token)
    return keys


def _b_scoped_answers(world: World, b: Actor) -> dict[str, Any]:
    """Everything a B actor can list (calls its role may not make are left out)."""
    s, m = world.studio, world.studio.manager
    calls: dict[str, Callable[[], Any]] = {
        "runs": lambda: m.list(b),
        "runs(waiting)": lambda: m.list(b, status="waiting_approval"),
        "approvals(pending)": lambda: m.approvals.list(b),
        "approvals(all)": lambda: m.approvals.list(b, status=None),
        "approvals(A's run)": lambda: m.approvals.list(b, status=None, run_id=world.ids_a.run_id),
        "graphs": lambda: m.library.list(b),
        "secrets": lambda: s.vault.list_secrets(b),
        "tokens": lambda: s.tokens.list_tokens(b, all_owners=True),
        "audit": lambda: s.audit.entries(b, limit=1000),
        "audit(A's run)": lambda: s.audit.entries(b, target=world.ids_a.run_id),
        "members": lambda: s.rbac.members(b.workspace_id),
        "events(B's run)": lambda: m.events.history(b.workspace_id, world.ids_b.run_id),
        "events(A's run)": lambda: m.events.history(b.workspace_id, world.ids_a.run_id),
    }
    answers = {}
    for name, call in calls.items():
        try:
            answers[name] = call()
        except Forbidden:
            continue
    return answers


@pytest.mark.parametrize("who", B_ACTORS)
def test_no_b_scoped_list_contains_any_row_of_a(world: World, who: str) -> None:
    answers = _b_scoped_answers(world, b_actor(world, who))
    assert {"secrets", "tokens", "audit", "members", "runs", "approvals(all)", "graphs"} <= (
        answers.keys()
    )  # every B role (and B's admin token) may list these: the check is not vacuous
    leaks = [
        (name, key)
        for name, answer in answers.items()
        for key in _a_identifiers(world)
        if key in repr(answer)
    ]
    assert not leaks
    assert answers.get("approvals(A's run)", []) == []
    assert answers.get("audit(A's run)", []) == []
    assert answers.get("events(A's run)", []) == []


def test_the_effect_of_a_exists_and_b_cannot_make_it_happen_again(world: World) -> None:
    m, a = world.studio.manager, world.ids_a
    effects = _effects(world, a.run_id)
    assert [(r[0], r[4], r[5]) for r in effects] == [(WS_A, "email_customer", "done")]
    outbox = _outbox(world, a.run_id)
    assert len(outbox) == 1 and outbox[0][1] == WS_A
    sent = len(world.receiver.effects)
    for who in B_ACTORS:
        b = b_actor(world, who)
        for approval_id in (a.email_approval_id, a.refund_approval_id):
            for decision in ("approve", "edit", "reject", "respond"):
                args = {"order_id": "A-1", "amount": 0.01} if decision == "edit" else None
                with pytest.raises(NotFound):
                    m.decide(b, approval_id, decision, args=args)  # type: ignore[arg-type]
        with pytest.raises((NotFound, Forbidden)):
            m.start_run(b, version_id=a.version_id, input={"order_id": "A-1"})
        with pytest.raises(NotFound):
            m.cancel(b, a.run_id)
    assert m.wait(world.actor(WS_A, "runner"), a.run_id, timeout_s=WAIT_S).status == (
        "waiting_approval"
    )
    assert _effects(world, a.run_id) == effects  # not one more attempt
    assert _outbox(world, a.run_id) == outbox
    assert len(world.receiver.effects) == sent


# --- secrets ----------------------------------------------------------------------------------


def test_b_setting_and_deleting_a_secret_of_the_same_name_touches_only_b(world: World) -> None:
    s = world.studio
    b_admin, a_admin = world.actor(WS_B, "admin"), world.actor(WS_A, "admin")
    other = "sk-b-owns-this-one-" + "0a1b2c3d4e5f"
    a_row = snapshot(s, WS_A)["vault_secrets"]
    with pytest.raises(NotFound):
        s.vault.resolver(WS_B)(A_SECRET)
    info = s.vault.set_secret(b_admin, A_SECRET, other)  # B's own secret of that name
    try:
        assert info.created_by == b_admin.user_id  # created, not an update of A's
        assert s.vault.resolver(WS_B)(A_SECRET) == other
        assert s.vault.resolver(WS_A)(A_SECRET) == A_SECRET_VALUE
        assert snapshot(s, WS_A)["vault_secrets"] == a_row
        assert [i.name for i in s.vault.list_secrets(a_admin)] == [A_SECRET]
        assert all(i.created_by != b_admin.user_id for i in s.vault.list_secrets(a_admin))
    finally:
        s.vault.delete_secret(b_admin, A_SECRET)
    with pytest.raises(NotFound):
        s.vault.delete_secret(b_admin, A_SECRET)  # B has none left; A's is not B's to delete
    with pytest.raises(NotFound):
        s.vault.resolver(WS_B)(A_SECRET)
    assert s.vault.resolver(WS_A)(A_SECRET) == A_SECRET_VALUE
    assert snapshot(s, WS_A)["vault_secrets"] == a_row
    assert [i.name for i in s.vault.list_secrets(b_admin)] == [B_SECRET]
    assert s.vault.resolver(WS_B)(B_SECRET) == B_SECRET_VALUE


# --- tokens, members, audit -------------------------------------------------------------------


def test_tokens_of_a_are_not_b_s_to_see_or_revoke(world: World) -> None:
    s, a = world.studio, world.ids_a
    for who in ROLES:
        b = world.actor(WS_B, who)
        assert a.token_id not in {t.token_id for t in s.tokens.list_tokens(b, all_owners=True)}
        for any_owner in (False, True):
            with pytest.raises(NotFound):
                s.tokens.revoke_token(b, a.token_id, any_owner=any_owner)
    b_tokens = s.tokens.list_tokens(world.actor(WS_B, "admin"), all_owners=True)
    assert [t.token_id for t in b_tokens] == [world.ids_b.token_id]
    a_actor = s.token_actor(world.a_token)
    assert (a_actor.workspace_id, a_actor.user_id) == (WS_A, world.users[(WS_A, "admin")])
    with pytest.raises(NotFound):  # A's token finds nothing of B either
        s.manager.get(a_actor, world.ids_b.run_id)


def test_members_of_a_are_not_listed_in_b(world: World) -> None:
    members = world.studio.rbac.members(WS_B)
    assert set(members) == {world.users[(WS_B, r)] for r in ROLES}
    assert {r for roles in members.values() for r in roles} == set(ROLES)
    assert not set(members) & {world.users[(WS_A, r)] for r in ROLES}
    assert not world.studio.rbac.roles_of(WS_B, world.users[(WS_A, "admin")])


@pytest.mark.parametrize("who", ROLES)
def test_a_member_of_b_holds_no_right_in_a(world: World, who: str) -> None:
    """No service takes an actor and assigns roles (rbac.assign_role is the operator's), so
    the check is the decision itself: B's users, even its admin, may do nothing in A."""
    user = world.users[(WS_B, who)]
    claimed = Actor(WS_A, user)  # a B user claiming workspace A
    for action in ACTIONS:
        decision = world.studio.rbac.authorize(claimed, action, fresh=True)
        assert not decision.allowed, (action, decision)
        with pytest.raises(NotFound):  # not a member there: the workspace does not exist
            StudioAuthorizer(world.studio.rbac).require(claimed, action)
    refund = world.studio.manager.approvals.get(
        world.actor(WS_A, "approver"), world.ids_a.refund_approval_id
    )
    assert StudioAuthority(world.studio.rbac).refusal(claimed, refund)


@pytest.mark.parametrize("who", ROLES)
def test_a_member_of_b_claiming_workspace_a_changes_nothing_there(world: World, who: str) -> None:
    claimed = Actor(WS_A, world.users[(WS_B, who)])
    before = snapshot(world.studio, WS_A)
    for op in OPS:
        if op.startswith(("secret.", "token.")):
            continue  # vault and tokens leave authorization to the caller (documented)
        assert outcome(lambda op=op: OPS[op](world, claimed, world.ids_a)) != "ok", op
    assert snapshot(world.studio, WS_A) == before
    assert_a_intact(world)


def test_audit_entries_of_a_are_not_listed_in_b(world: World) -> None:
    s = world.studio
    a_entries = s.audit.entries(WS_A, limit=1000)
    assert {"graph.created", "graph.published", "approval.decided", "secret.created"} <= {
        e.action for e in a_entries
    }
    for who in ROLES:
        mine = s.audit.entries(world.actor(WS_B, who), limit=1000)
        assert mine and {e.workspace_id for e in mine} == {WS_B}
        assert not {e.seq for e in mine} & {e.seq for e in a_entries}
        for target in (world.ids_a.refund_approval_id, world.ids_a.graph_id, world.ids_a.run_id):
            assert s.audit.entries(world.actor(WS_B, who), target=target) == []


# --- lists and counts -------------------------------------------------------------------------


def _count(world: World, table: str, workspace_id: str, where: str = "") -> int:
    query = f"SELECT count(*) FROM {table} WHERE workspace_id = :ws {where}"
    with world.studio.engine.connect() as conn:
        return int(conn.execute(text(query), {"ws": workspace_id}).scalar_one())


@pytest.mark.parametrize("who", ROLES)
def test_lists_and_counts_in_b_hold_b_s_rows_only(world: World, who: str) -> None:
    s, m, b = world.studio, world.studio.manager, world.actor(WS_B, who)
    runs = m.list(b, limit=1000)
    assert len(runs) == _count(world, "runs", WS_B)
    assert world.ids_b.run_id in {r.run_id for r in runs}
    assert world.ids_a.run_id not in {r.run_id for r in runs}
    waiting = m.list(b, status="waiting_approval")
    assert len(waiting) == _count(world, "runs", WS_B, "AND status = 'waiting_approval'")
    approvals = m.approvals.list(b, status=None)
    assert len(approvals) == _count(world, "approvals", WS_B)
    assert {x.run_id for x in approvals} <= {r.run_id for r in runs}
    pending = m.approvals.list(b)
    assert len(pending) == _count(world, "approvals", WS_B, "AND status = 'pending'")
    graphs = m.library.list(b)
    assert [g.graph_id for g in graphs] == [world.ids_b.graph_id]
    assert graphs[0].latest_version == 2
    assert [x.name for x in s.vault.list_secrets(b)] == [B_SECRET]
    assert {t.workspace_id for t in s.tokens.list_tokens(b, all_owners=True)} == {WS_B}
    assert len(s.tokens.list_tokens(b, all_owners=True)) == _count(world, "api_tokens", WS_B)
    assert len(s.audit.entries(b, limit=1000)) == _count(world, "audit_entries", WS_B)


# --- fields a client sends ---------------------------------------------------------------------

CLIENT_FIELDS = {
    "workspace_id": WS_B,
    "workspace": WS_B,
    "owner": "someone-else",
    "started_by": "someone-else",
    "user_id": "someone-else",
    "role": "admin",
    "tier": "free",
    "thread_id": "run:stolen",
    "checkpoint_id": "1",
    "run_id": "00000000-0000-0000-0000-000000000000",
}


@pytest.mark.parametrize("field", list(CLIENT_FIELDS))
def test_run_input_naming_workspace_owner_tier_or_thread_is_refused(
    world: World, field: str
) -> None:
    m, runner = world.studio.manager, world.actor(WS_A, "runner")
    before = (snapshot(world.studio, WS_A)["runs"], snapshot(world.studio, WS_B)["runs"])
    with pytest.raises(UserError, match=field):
        m.start_run(
            runner,
            version_id=world.ids_a.version_id,
            input={"order_id": "A-7", field: CLIENT_FIELDS[field]},
        )
    after = (snapshot(world.studio, WS_A)["runs"], snapshot(world.studio, WS_B)["runs"])
    assert after == before


def test_a_run_s_workspace_starter_and_thread_come_from_the_server(world: World) -> None:
    m, runner = world.studio.manager, world.actor(WS_A, "runner")
    run_id = m.start_run(runner, version_id=world.ids_a.version_id, input={"order_id": "A-8"})
    m.wait(runner, run_id, timeout_s=WAIT_S)
    with world.studio.engine.connect() as conn:
        row = conn.execute(
            text("SELECT workspace_id, started_by, thread_id, input FROM runs WHERE run_id = :r"),
            {"r": run_id},
        ).one()
    assert (row[0], row[1], row[2]) == (WS_A, runner.user_id, f"run:{run_id}")
    assert m.get(runner, run_id).input == {
        "order_id": "A-8",
        "complaint": "My order arrived broken.",
    }
    with pytest.raises(NotFound):
        m.get(world.actor(WS_B, "admin"), run_id)


@pytest.mark.parametrize("stage", ["email", "refund"])
def test_decision_args_naming_a_tier_are_rejected_by_the_tool_schema(
    world: World, stage: str
) -> None:
    m = world.studio.manager
    runner, approver = world.actor(WS_A, "runner"), world.actor(WS_A, "approver")
    if stage == "email":
        run_id, approval = run_to_email(world, runner, world.ids_a.version_id, "A-9")
    else:
        run_id, _, approval = run_to_refund(world, runner, world.ids_a.version_id, "A-9", approver)
    before = snapshot(world.studio, WS_A)
    for extra in ({"tier": "free"}, {"tier": "free", "workspace_id": WS_B}):
        with pytest.raises(UserError, match=r"tier|workspace_id"):
            m.decide(approver, approval.approval_id, "edit", args={**approval.args, **extra})
    assert snapshot(world.studio, WS_A) == before
    view = m.approvals.get(approver, approval.approval_id)
    assert (view.status, view.tier) == ("pending", approval.tier)
    # approve ignores sent args: the decision is bound to the call that was shown
    m.decide(approver, approval.approval_id, "approve", args={"tier": "free"})
    view = m.approvals.get(approver, approval.approval_id)
    assert (view.status, view.tier, view.decided_args) == ("approved", approval.tier, approval.args)
    m.wait(runner, run_id, timeout_s=WAIT_S)


# --- authority ---------------------------------------------------------------------------------

# who may decide a call of a run the workspace's runner started (the starter is "runner")
MAY_DECIDE = {
    "confirm": {"runner", "approver", "admin"},
    "admin": {"approver", "admin"},
}
DECIDERS = (*ROLES, "other-runner")


def _decider(world: World, who: str) -> Actor:
    if who == "other-runner":
        return world.new_user(WS_A, "runner")
    return world.actor(WS_A, who)


@pytest.mark.parametrize("who", DECIDERS)
@pytest.mark.parametrize("tier", ["confirm", "admin"])
def test_who_may_decide_a_call(world: World, tier: str, who: str) -> None:
    m = world.studio.manager
    runner, approver = world.actor(WS_A, "runner"), world.actor(WS_A, "approver")
    version = world.ids_a.version_id
    if tier == "confirm":
        run_id, approval = run_to_email(world, runner, version, "A-10")
    else:
        run_id, _, approval = run_to_refund(world, runner, version, "A-10", approver)
    actor = _decider(world, who)
    if who in MAY_DECIDE[tier]:
        decided = m.decide(actor, approval.approval_id, "approve")
        assert (decided.status, decided.decided_by) == ("approved", actor.user_id)
    else:
        for decision in ("approve", "reject", "edit"):
            args = approval.args if decision == "edit" else None
            with pytest.raises(Forbidden):
                m.decide(actor, approval.approval_id, decision, args=args)  # type: ignore[arg-type]
        assert m.approvals.get(approver, approval.approval_id).status == "pending"
        m.cancel(runner, run_id)
    m.wait(runner, run_id, timeout_s=WAIT_S)


def test_an_approver_of_a_cannot_decide_in_b(world: World) -> None:
    m, b = world.studio.manager, world.ids_b
    a_approver = world.actor(WS_A, "approver")
    before = snapshot(world.studio, WS_B)
    with pytest.raises(NotFound):  # as a member of A: B's approval does not exist
        m.decide(a_approver, b.refund_approval_id, "approve")
    claimed = Actor(WS_B, a_approver.user_id)  # claiming B: not a member there
    with pytest.raises(NotFound):
        m.decide(claimed, b.refund_approval_id, "approve")
    assert snapshot(world.studio, WS_B) == before
    assert m.approvals.get(world.actor(WS_B, "viewer"), b.refund_approval_id).status == "pending"


@pytest.mark.parametrize("roles", [("admin",), ("runner", "approver")])
def test_the_starter_cannot_approve_their_own_admin_call(
    world: World, roles: tuple[str, ...]
) -> None:
    m = world.studio.manager
    starter = world.new_user(WS_A, *roles)  # holds approval:decide:admin, and started the run
    approver = world.actor(WS_A, "approver")
    run_id, _, refund = run_to_refund(world, starter, world.ids_a.version_id, "A-11", approver)
    with pytest.raises(Forbidden, match="starter"):
        m.decide(starter, refund.approval_id, "approve")
    assert m.approvals.get(approver, refund.approval_id).status == "pending"
    m.decide(approver, refund.approval_id, "approve")  # a second person may
    assert m.wait(starter, run_id, timeout_s=WAIT_S).status == "succeeded"


def test_a_revoked_role_stops_the_very_next_decision(world: World) -> None:
    m, rbac = world.studio.manager, world.studio.rbac
    runner = world.actor(WS_A, "runner")
    deputy = world.new_user(WS_A, "approver")
    run_id, email = run_to_email(world, runner, world.ids_a.version_id, "A-12")
    assert [x.approval_id for x in m.approvals.list(deputy, run_id=run_id)] == [email.approval_id]
    assert rbac.authorize(deputy, "approval:decide:confirm").allowed  # cached as allowed
    rbac.revoke_role(WS_A, deputy.user_id, "approver")
    rbac.assign_role(WS_A, deputy.user_id, "viewer")  # demoted while the inbox is open
    with pytest.raises(Forbidden):
        m.decide(deputy, email.approval_id, "approve")
    rbac.revoke_role(WS_A, deputy.user_id)  # removed altogether: A is now foreign to them
    with pytest.raises(NotFound):
        m.decide(deputy, email.approval_id, "approve")
    assert m.approvals.get(runner, email.approval_id).status == "pending"
    rbac.assign_role(WS_A, deputy.user_id, "approver")  # and granted again: at once too
    assert m.decide(deputy, email.approval_id, "approve").status == "approved"
    m.wait(runner, run_id, timeout_s=WAIT_S)


def test_a_starter_who_lost_run_start_cannot_confirm_their_own_call(world: World) -> None:
    m, rbac = world.studio.manager, world.studio.rbac
    starter = world.new_user(WS_A, "runner")
    run_id, email = run_to_email(world, starter, world.ids_a.version_id, "A-13")
    rbac.revoke_role(WS_A, starter.user_id, "runner")
    rbac.assign_role(WS_A, starter.user_id, "viewer")
    with pytest.raises(Forbidden):
        m.decide(starter, email.approval_id, "approve")
    assert m.approvals.get(starter, email.approval_id).status == "pending"
    m.cancel(world.actor(WS_A, "admin"), run_id)


@pytest.mark.parametrize(
    ("owner_roles", "scopes"),
    [
        (("admin",), ["run:read", "approval:read"]),  # read-only token of an admin
        (("admin",), ["approval:read", "approval:decide:confirm"]),  # confirm only, admin call
        (("viewer",), ["approval:read", "approval:decide:confirm", "approval:decide:admin"]),
    ],
    ids=["read-only", "confirm-scope-on-admin-call", "viewer-owner"],
)
def test_a_token_decides_only_within_its_scopes_and_its_owner_s_role(
    world: World, owner_roles: tuple[str, ...], scopes: list[str]
) -> None:
    s, m = world.studio, world.studio.manager
    runner, approver = world.actor(WS_A, "runner"), world.actor(WS_A, "approver")
    owner = world.new_user(WS_A, *owner_roles)
    value, _ = s.tokens.create_token(owner, name="scoped", actions=scopes)
    actor = s.token_actor(value)
    assert actor.workspace_id == WS_A and actor.scopes == frozenset(scopes)
    run_id, _, refund = run_to_refund(world, runner, world.ids_a.version_id, "A-14", approver)
    for decision in ("approve", "reject", "edit"):
        args = refund.args if decision == "edit" else None
        with pytest.raises(Forbidden):
            m.decide(actor, refund.approval_id, decision, args=args)  # type: ignore[arg-type]
    assert m.approvals.get(approver, refund.approval_id).status == "pending"
    m.cancel(runner, run_id)


def test_a_read_only_token_of_an_admin_can_read_but_not_act(world: World) -> None:
    s, m, a = world.studio, world.studio.manager, world.ids_a
    value, _ = s.tokens.create_token(
        world.actor(WS_A, "admin"), name="ro", actions=["run:read", "approval:read"]
    )
    reader = s.token_actor(value)
    assert m.get(reader, a.run_id).status == "waiting_approval"
    assert m.approvals.get(reader, a.refund_approval_id).status == "pending"
    before = snapshot(s, WS_A)
    with pytest.raises(Forbidden):
        m.decide(reader, a.refund_approval_id, "approve")
    with pytest.raises(Forbidden):
        m.cancel(reader, a.run_id)
    with pytest.raises(Forbidden):
        m.start_run(reader, version_id=a.version_id, input={"order_id": "A-15"})
    with pytest.raises(Forbidden):
        m.library.save_version(reader, a.graph_id, world.doc())
    # last_used_at aside, nothing changed
    assert snapshot(s, WS_A) == before


def test_a_paused_run_of_a_disabled_starter_fails_closed_at_the_effect(world: World) -> None:
    """Disabling an account is losing access: the run it started must not act for it."""
    s, m = world.studio, world.studio.manager
    starter = world.new_user(WS_A, "runner")
    approver = world.actor(WS_A, "approver")
    run_id, email = run_to_email(world, starter, world.ids_a.version_id, "A-21")
    s.disable_user(starter.user_id)  # the studio-level disable: roles and tokens go too
    m.decide(approver, email.approval_id, "approve")  # an approver still says yes
    run = m.wait(approver, run_id, timeout_s=WAIT_S)
    assert [row[5] for row in _effects(world, run_id)] == []
    assert _outbox(world, run_id) == []  # the e-mail never went out on a disabled user's behalf
    assert run.status == "failed"


def test_a_disabled_user_s_token_stops_at_once(world: World) -> None:
    s, m = world.studio, world.studio.manager
    user = world.new_user(WS_A, "approver")
    value, _ = s.tokens.create_token(
        user, name="inbox", actions=["approval:read", "approval:decide:confirm"]
    )
    assert m.approvals.get(s.token_actor(value), world.ids_a.refund_approval_id)
    s.disable_user(user.user_id)
    with pytest.raises(NotFound):
        s.token_actor(value)


def test_a_removed_member_s_token_does_nothing(world: World) -> None:
    s, m, a = world.studio, world.studio.manager, world.ids_a
    user = world.new_user(WS_A, "approver")
    value, _ = s.tokens.create_token(
        user, name="inbox", actions=["run:read", "approval:read", "approval:decide:admin"]
    )
    actor = s.token_actor(value)
    assert m.approvals.get(actor, a.refund_approval_id).status == "pending"
    s.rbac.revoke_role(WS_A, user.user_id)  # removed from the workspace
    for call in (
        lambda: m.approvals.get(s.token_actor(value), a.refund_approval_id),
        lambda: m.approvals.list(s.token_actor(value)),
        lambda: m.get(s.token_actor(value), a.run_id),
        lambda: m.list(s.token_actor(value)),
        lambda: m.decide(s.token_actor(value), a.refund_approval_id, "approve"),
    ):
        assert outcome(call) in ("Forbidden", "NotFound")
    assert_a_intact(world)


def test_fixture_sanity(world: World) -> None:
    """The world really holds every object type in A (else the matrix proves nothing)."""
    s, a = world.studio, world.ids_a
    rows = snapshot(s, WS_A)
    for table in ("graphs", "runs", "approvals", "effects", "outbox", "run_events"):
        assert rows[table], table
    for table in ("vault_secrets", "api_tokens", "audit_entries", "casbin_rule"):
        assert rows[table], table
    assert len(rows["graph_versions"]) >= 2
    assert a.run_id in {r[0] for r in rows["runs"]}
