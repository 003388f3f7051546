"""Casbin RBAC: the truth table, tenancy, freshness after a change, approval authority, tokens
and tool-tier floors. Real SQLite files; expectations come from the role data in
`auth.actions`, never written down a second time."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casbin
import pytest
from sqlalchemy import Engine, insert
from sqlalchemy.orm import sessionmaker
from sqlalchemy_adapter import Adapter

from auth.actions import ACTIONS, ROLE_NAMES, ROLES, markdown_table, role_actions
from auth.rbac import (
    MODEL,
    CasbinRule,
    Decision,
    LastAdmin,
    Rbac,
    RbacApprovalAuthority,
    Resource,
    create_tables,
)
from components.base import HttpPolicy, max_tier
from components.errors import Forbidden, NotFound, UserError
from components.registry import default_registry
from graphs.approvals import ApprovalAuthority, ApprovalView
from graphs.compiler import compile_document
from graphs.db import make_engine
from graphs.headless import Runtime, open_runtime
from graphs.identity import Actor
from graphs.ledger import EffectLedger
from graphs.validation import load_document
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver

ROOT = Path(__file__).resolve().parents[2]
HOME, OTHER = "acme", "globex"


def user_for(role: str) -> str:
    return f"u-{role}"


def new_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    create_tables(engine)
    return engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = new_engine(tmp_path / "rbac.db")
    yield engine
    engine.dispose()


@pytest.fixture
def rbac(engine: Engine) -> Rbac:
    rbac = Rbac(engine)
    rbac.sync_role_templates()
    return rbac


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rbac]:
    """One user per role in HOME; in OTHER the same role names belong to other users."""
    engine = new_engine(tmp_path_factory.mktemp("truth") / "rbac.db")
    rbac = Rbac(engine)
    rbac.sync_role_templates()
    rbac.assign_roles([(HOME, user_for(role), role) for role in ROLE_NAMES])
    rbac.assign_roles([(OTHER, f"other-{role}", role) for role in ROLE_NAMES])
    yield rbac
    engine.dispose()


# --- the truth table --------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["same workspace", "other workspace"])
@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", ROLE_NAMES)
def test_truth_table(populated: Rbac, role: str, action: str, where: str) -> None:
    workspace = HOME if where == "same workspace" else OTHER
    decision = populated.authorize(Actor(workspace, user_for(role)), action)
    expected = where == "same workspace" and action in role_actions(role)
    assert decision.allowed is expected, decision.reason
    assert decision.reason  # every decision says why
    if expected:
        assert repr(role) in decision.reason


def test_decisions_match_a_stock_casbin_enforcer_over_the_whole_policy(populated: Rbac) -> None:
    """The per-workspace fast load decides exactly as plain pycasbin with the stock adapter."""
    stock_adapter = Adapter(populated._engine, db_class=CasbinRule, create_table=False)
    stock = casbin.Enforcer(casbin.Enforcer.new_model(text=MODEL), stock_adapter)
    users = [user_for(r) for r in ROLE_NAMES] + [f"other-{r}" for r in ROLE_NAMES] + ["nobody"]
    for workspace in (HOME, OTHER, "initech"):
        for user in users:
            for action in ACTIONS.values():
                ours = populated.authorize(Actor(workspace, user), action.name).allowed
                theirs = stock.enforce(user, workspace, action.kind, action.name)
                assert ours is theirs, (workspace, user, action.name)


def test_roles_nest_as_documented() -> None:
    viewer, runner, editor = (role_actions(r) for r in ("viewer", "runner", "editor"))
    assert viewer < runner < editor
    assert role_actions("approver") == viewer | {"approval:decide:confirm", "approval:decide:admin"}
    assert role_actions("admin") == set(ACTIONS)
    for role in ("viewer", "runner", "editor"):
        assert not role_actions(role) & {"approval:decide:confirm", "approval:decide:admin"}


def test_every_action_and_role_is_described_and_in_the_table() -> None:
    table = markdown_table()
    for action in ACTIONS.values():
        assert action.description.strip() and f"`{action.name}`" in table
    for role in ROLES.values():
        assert role.description.strip() and f"**{role.name}**" in table


def test_readme_documents_every_action() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in ACTIONS if f"`{name}`" not in readme]
    assert not missing, f"paste auth.actions.markdown_table() into README.md; missing {missing}"


# --- default deny -------------------------------------------------------------------------
def test_empty_policy_denies_everything(engine: Engine) -> None:
    rbac = Rbac(engine)  # no templates, no members
    for action in ACTIONS:
        assert not rbac.authorize(Actor(HOME, "alice"), action).allowed


def test_members_without_templates_get_nothing(engine: Engine) -> None:
    """Decisions come from the policy in the database, not from the Python role data."""
    rbac = Rbac(engine)
    rbac.assign_role(HOME, "alice", "admin")
    decision = rbac.authorize(Actor(HOME, "alice"), "graph:read")
    assert decision == Decision(False, "role admin does not allow 'graph:read'")
    rbac.sync_role_templates()
    assert rbac.authorize(Actor(HOME, "alice"), "graph:read").allowed


def test_unknown_user_and_unknown_action_are_denied_with_reasons(rbac: Rbac) -> None:
    rbac.assign_role(HOME, "alice", "admin")
    assert rbac.authorize(Actor(HOME, "mallory"), "graph:read") == Decision(
        False, "'mallory' is not a member of workspace 'acme'"
    )
    assert rbac.authorize(Actor(HOME, "alice"), "graph:delete-everything") == Decision(
        False, "unknown action 'graph:delete-everything'"
    )
    assert not rbac.authorize(Actor(HOME, ""), "graph:read").allowed
    assert not rbac.authorize(Actor("", "alice"), "graph:read").allowed


def test_a_role_held_in_another_workspace_grants_nothing(rbac: Rbac) -> None:
    rbac.assign_role(OTHER, "bob", "admin")
    for action in ACTIONS:
        assert not rbac.authorize(Actor(HOME, "bob"), action).allowed
    assert rbac.authorize(Actor(OTHER, "bob"), "member:manage").allowed


@pytest.mark.parametrize("user", ["admin", "role:admin", "role:editor"])
def test_users_named_like_roles_get_nothing(rbac: Rbac, user: str) -> None:
    """Casbin's g() links equal names: a user id must never meet a role name."""
    rbac.assign_role(HOME, "alice", "admin")
    for action in ACTIONS:
        assert not rbac.authorize(Actor(HOME, user), action).allowed
    if user.startswith("role:"):
        with pytest.raises(UserError, match="not usable"):
            rbac.assign_role(HOME, user, "viewer")


@pytest.mark.parametrize("workspace", ["*", "role:admin", "a,b", " acme"])
def test_template_and_malformed_domains_grant_nothing(rbac: Rbac, workspace: str) -> None:
    rbac.assign_role(HOME, "alice", "admin")
    assert not rbac.authorize(Actor(workspace, "alice"), "graph:read").allowed
    with pytest.raises(UserError):
        rbac.assign_role(workspace, "alice", "admin")


# --- resources: foreign objects are not found ----------------------------------------------
def test_a_foreign_resource_is_not_found(rbac: Rbac) -> None:
    rbac.assign_role(HOME, "alice", "admin")
    alice = Actor(HOME, "alice")
    foreign = Resource("graph", OTHER, "g-1")
    assert rbac.authorize(alice, "graph:read", foreign) == Decision(False, "not found")
    with pytest.raises(NotFound, match="graph 'g-1' not found"):
        rbac.require(alice, "graph:read", foreign)
    assert rbac.authorize(alice, "graph:read", Resource("graph", HOME, "g-2")).allowed
    assert not rbac.authorize(alice, "graph:read", Resource("run", HOME, "r-1")).allowed


def test_require_raises_forbidden_with_the_reason(rbac: Rbac) -> None:
    rbac.assign_role(HOME, "carol", "viewer")
    with pytest.raises(Forbidden, match="role viewer does not allow 'graph:edit'"):
        rbac.require(Actor(HOME, "carol"), "graph:edit", Resource("graph", HOME, "g-1"))
    rbac.require(Actor(HOME, "carol"), "graph:read")


# --- changes take effect at once -------------------------------------------------------------
def test_revoking_a_role_takes_effect_on_the_very_next_decision(rbac: Rbac) -> None:
    alice = Actor(HOME, "alice")
    rbac.assign_role(HOME, "alice", "editor")
    rbac.assign_role(HOME, "alice", "approver")
    assert rbac.authorize(alice, "graph:edit").allowed  # now cached
    assert rbac.revoke_role(HOME, "alice", "editor")
    assert not rbac.authorize(alice, "graph:edit").allowed
    assert rbac.authorize(alice, "approval:decide:admin").allowed
    assert rbac.revoke_role(HOME, "alice")  # every role: no longer a member
    assert not rbac.authorize(alice, "graph:read").allowed
    assert rbac.roles_of(HOME, "alice") == set()
    assert not rbac.revoke_role(HOME, "alice")
    rbac.assign_role(HOME, "alice", "viewer")
    assert rbac.authorize(alice, "graph:read").allowed


def test_a_change_made_by_another_process_is_seen_within_the_poll_interval(
    engine: Engine, tmp_path: Path
) -> None:
    now = [0.0]
    server = Rbac(engine, poll_interval_s=5.0, clock=lambda: now[0])
    cli = Rbac(new_engine(tmp_path / "rbac.db"))  # another engine on the same file
    cli.sync_role_templates()
    cli.assign_role(HOME, "alice", "admin")
    alice = Actor(HOME, "alice")
    assert server.authorize(alice, "secret:manage").allowed  # loaded and cached
    cli.revoke_role(HOME, "alice", "admin")
    now[0] = 1.0
    assert server.authorize(alice, "secret:manage").allowed  # documented staleness window
    assert not server.authorize(alice, "secret:manage", fresh=True).allowed
    cli.assign_role(HOME, "alice", "viewer")
    now[0] = 7.0  # past the poll interval: checked without being asked
    assert server.authorize(alice, "graph:read").allowed


def test_template_changes_from_another_process_reach_every_workspace(
    engine: Engine, tmp_path: Path
) -> None:
    server = Rbac(engine, poll_interval_s=0)
    cli = Rbac(new_engine(tmp_path / "rbac.db"))
    cli.sync_role_templates()
    cli.assign_roles([(HOME, "carol", "viewer"), (OTHER, "carol", "viewer")])
    carol_home, carol_other = Actor(HOME, "carol"), Actor(OTHER, "carol")
    assert not server.authorize(carol_home, "secret:manage").allowed
    with engine.begin() as conn:  # a template line written behind Rbac's back...
        row = {"ptype": "p", "v0": "role:viewer", "v1": "*", "v2": "secret", "v3": "secret:manage"}
        conn.execute(insert(CasbinRule), [row])
    # ...decides for a workspace loaded after it (the lines in the database are the policy),
    assert server.authorize(carol_other, "secret:manage").allowed
    assert cli.sync_role_templates()  # start-up sync removes it and bumps the template version
    assert not server.authorize(carol_other, "secret:manage").allowed  # every workspace sees it
    assert not server.authorize(carol_home, "secret:manage").allowed
    assert not cli.sync_role_templates()  # idempotent


def test_policy_versions_move_only_when_something_changed(rbac: Rbac) -> None:
    before = rbac.policy_version(HOME)
    assert rbac.assign_role(HOME, "alice", "viewer")
    after = rbac.policy_version(HOME)
    assert after > before
    assert not rbac.assign_role(HOME, "alice", "viewer")  # already held
    assert not rbac.revoke_role(HOME, "alice", "editor")  # never held
    assert rbac.policy_version(HOME) == after
    assert rbac.policy_version(OTHER) == 0


def test_decisions_stay_right_while_roles_change_under_load(rbac: Rbac) -> None:
    rbac.assign_role(HOME, "alice", "editor")
    alice, stop = Actor(HOME, "alice"), threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            while not stop.is_set():
                rbac.authorize(alice, "graph:edit")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            rbac.revoke_role(HOME, "alice", "editor")
            assert not rbac.authorize(alice, "graph:edit").allowed
            rbac.assign_role(HOME, "alice", "editor")
            assert rbac.authorize(alice, "graph:edit").allowed
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors


def test_small_caches_evict_and_stay_correct(engine: Engine) -> None:
    rbac = Rbac(engine, max_workspaces=2, max_decisions=3)
    rbac.sync_role_templates()
    workspaces = [f"ws-{i}" for i in range(5)]
    rbac.assign_roles([(ws, "alice", "runner") for ws in workspaces])
    for _ in range(2):
        for ws in workspaces:
            for action in ACTIONS:
                expected = action in role_actions("runner")
                assert rbac.authorize(Actor(ws, "alice"), action).allowed is expected


def test_a_large_workspace_loads_in_milliseconds(rbac: Rbac) -> None:
    """pycasbin's default domain matcher made loading quadratic in members (~12 s here)."""
    rbac.assign_roles([(HOME, f"user-{j}", ROLE_NAMES[j % 5]) for j in range(3000)])
    started = time.perf_counter()
    assert rbac.authorize(Actor(HOME, "user-1"), "run:start").allowed  # user-1 is a runner
    assert not rbac.authorize(Actor(HOME, "user-0"), "run:start").allowed  # a viewer
    assert time.perf_counter() - started < 2.0


class _Cycle:
    """Garbage only the cycle collector frees; its finalizer runs Python code, so the collector,
    started by any allocation (the AST constructor's too), can switch threads."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        sum(range(50))


def test_decisions_and_expressions_from_many_threads_at_once(rbac: Rbac) -> None:
    """CPython 3.11's `ast.parse` is not safe to run in two threads at once (SystemError:
    AST constructor recursion depth mismatch): Casbin parses its matcher on every decision,
    edge conditions parse, and LangGraph parses node functions' source when a graph compiles.
    Seen in CI (inbox page tests: a decision racing a worker's compile); here provoked."""
    from components.expressions import evaluate

    rbac.assign_roles([(HOME, "alice", "runner")])
    failures: list[BaseException] = []

    def decide(offset: int) -> None:
        try:
            for i in range(300):  # a new user each time: no cached decision, Casbin decides
                rbac.authorize(Actor(HOME, f"u{offset}-{i}"), "run:start")
                _Cycle()
        except BaseException as exc:
            failures.append(exc)

    def conditions(offset: int) -> None:
        try:
            for i in range(300):  # a new expression each time: parsed, not cached
                assert evaluate(f"x + {offset * 1000 + i} > 0 and len(y) == 2", {"x": 1, "y": "ab"})
                _Cycle()
        except BaseException as exc:
            failures.append(exc)

    registry = default_registry()  # imports every component first (import time parses too)
    document = load_document(
        {
            "schema_version": 1,
            "name": "One step",
            "entry": "step",
            "nodes": [{"id": "step", "type": "transform", "config": {"assign": {"n": "1"}}}],
            "edges": [{"source": "step", "target": "__end__"}],
            "state": [{"name": "n", "type": "number"}],
        },
        registry,
    )

    def compile_graphs() -> None:
        try:
            for _ in range(40):  # LangGraph parses reducers' signatures and nodes' source
                compile_document(document, registry, EffectLedger(sessionmaker()))
                _Cycle()
        except BaseException as exc:
            failures.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [
            threading.Thread(target=f, args=(n,)) for n in range(2) for f in (decide, conditions)
        ]
        threads.append(threading.Thread(target=compile_graphs))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert failures == []
    assert rbac.authorize(Actor(HOME, "alice"), "run:start").allowed


# --- membership queries --------------------------------------------------------------------
def test_roles_members_workspaces_and_forgetting_a_user(rbac: Rbac) -> None:
    rbac.assign_roles(
        [(HOME, "alice", "editor"), (HOME, "alice", "approver"), (HOME, "bob", "viewer")]
    )
    rbac.assign_role(OTHER, "alice", "admin")
    assert rbac.roles_of(HOME, "alice") == {"editor", "approver"}
    assert rbac.members(HOME) == {"alice": {"editor", "approver"}, "bob": {"viewer"}}
    assert rbac.workspaces_of("alice") == {HOME, OTHER}
    assert rbac.authorize(Actor(OTHER, "alice"), "audit:read").allowed
    assert rbac.forget_user("alice") == {HOME, OTHER}
    assert rbac.workspaces_of("alice") == set()
    assert not rbac.authorize(Actor(OTHER, "alice"), "audit:read").allowed
    assert rbac.members(HOME) == {"bob": {"viewer"}}
    assert rbac.forget_user("alice") == set()


def test_assigning_checks_the_role_and_is_idempotent(rbac: Rbac) -> None:
    with pytest.raises(UserError, match="unknown role 'owner'"):
        rbac.assign_role(HOME, "alice", "owner")
    with pytest.raises(UserError, match="unknown role"):
        rbac.revoke_role(HOME, "alice", "superuser")
    assert rbac.assign_role(HOME, "alice", "admin")
    assert not rbac.assign_role(HOME, "alice", "admin")
    assert rbac.members(HOME) == {"alice": {"admin"}}


def test_set_member_makes_one_role_and_keeps_the_last_admin(rbac: Rbac) -> None:
    rbac.assign_roles([(HOME, "alice", "admin"), (HOME, "bob", "editor"), (HOME, "bob", "runner")])
    before = rbac.policy_version(HOME)
    assert rbac.set_member(HOME, "bob", "viewer") == {"editor", "runner"}
    assert rbac.members(HOME) == {"alice": {"admin"}, "bob": {"viewer"}}
    assert rbac.set_member(HOME, "bob", "viewer") == {"viewer"}  # no change, no new version
    assert rbac.policy_version(HOME) == before + 1
    with pytest.raises(LastAdmin, match="last admin of workspace 'acme'"):
        rbac.set_member(HOME, "alice", "editor")
    with pytest.raises(LastAdmin):
        rbac.set_member(HOME, "alice", None)
    assert rbac.members(HOME) == {"alice": {"admin"}, "bob": {"viewer"}}  # nothing changed
    rbac.set_member(HOME, "bob", "admin")
    with pytest.raises(LastAdmin):  # bob does not count (say, a disabled account)
        rbac.set_member(HOME, "alice", None, counts_as_admin=lambda user: user != "bob")
    assert rbac.set_member(HOME, "alice", None) == {"admin"}  # bob counts by default
    assert rbac.members(HOME) == {"bob": {"admin"}}
    assert rbac.set_member(HOME, "alice", None) == set()  # not a member: nothing to do
    assert not rbac.authorize(Actor(HOME, "alice"), "graph:read").allowed
    with pytest.raises(UserError, match="unknown role"):
        rbac.set_member(HOME, "bob", "owner")


def _demote_in_each(db_paths: list[str], user: str, start: Any, outcomes: Any) -> None:
    """In a process of its own: at each barrier, take `user`'s admin role in the next file."""
    for path in db_paths:
        rbac = Rbac(make_engine(f"sqlite:///{path}"))
        start.wait()
        try:
            rbac.set_member(HOME, user, "viewer")
            outcomes.put((path, user, "demoted"))
        except LastAdmin:
            outcomes.put((path, user, "refused"))


def test_two_processes_cannot_each_demote_one_of_the_last_two_admins(tmp_path: Path) -> None:
    """The last-admin check and the change are one transaction under the policy's write lock:
    two processes demoting alice and bob at the same moment leave exactly one admin."""
    rounds = 12
    paths = []
    for i in range(rounds):
        engine = new_engine(tmp_path / f"race-{i}.db")
        rbac = Rbac(engine)
        rbac.sync_role_templates()
        rbac.assign_roles([(HOME, "alice", "admin"), (HOME, "bob", "admin")])
        engine.dispose()
        paths.append(str(tmp_path / f"race-{i}.db"))
    ctx = multiprocessing.get_context("spawn")
    start, outcomes = ctx.Barrier(2), ctx.Queue()
    workers = [
        ctx.Process(target=_demote_in_each, args=(paths, user, start, outcomes))
        for user in ("alice", "bob")
    ]
    for worker in workers:
        worker.start()
    results = [outcomes.get(timeout=60) for _ in range(2 * rounds)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    for path in paths:
        seen = sorted(outcome for p, _, outcome in results if p == path)
        assert seen == ["demoted", "refused"], (path, seen)
        admins = [
            u
            for u, roles in Rbac(make_engine(f"sqlite:///{path}")).members(HOME).items()
            if "admin" in roles
        ]
        assert len(admins) == 1, (path, admins)


# --- approval authority --------------------------------------------------------------------
def approval(tier: str, started_by: str = "alice") -> ApprovalView:
    now = datetime.now(UTC)
    return ApprovalView(
        approval_id="apr_1",
        run_id="run_1",
        node_id="agent",
        kind="tool",
        action="issue_refund",
        args={"amount": 10},
        tier=tier,
        reason="",
        description="",
        allowed=["approve", "reject"],
        status="pending",
        run_started_by=started_by,
        decision=None,
        decided_args=None,
        feedback=None,
        decided_by=None,
        decided_at=None,
        created_at=now,
    )


@pytest.fixture
def authority(rbac: Rbac) -> RbacApprovalAuthority:
    rbac.assign_roles(
        [
            (HOME, "alice", "runner"),  # starts the runs
            (HOME, "bob", "approver"),
            (HOME, "carol", "viewer"),
            (HOME, "dan", "runner"),
            (HOME, "erin", "admin"),
            (HOME, "fay", "editor"),
            (OTHER, "gus", "approver"),
        ]
    )
    return RbacApprovalAuthority(rbac)


def test_authority_fits_the_runtime_protocol(authority: RbacApprovalAuthority) -> None:
    seam: ApprovalAuthority = authority
    assert seam.refusal(Actor(HOME, "bob"), approval("admin")) is None


@pytest.mark.parametrize("tier", ["confirm", "admin"])
@pytest.mark.parametrize("user", ["carol", "dan", "fay"])
def test_viewers_runners_and_editors_cannot_decide_others_calls(
    authority: RbacApprovalAuthority, user: str, tier: str
) -> None:
    assert authority.refusal(Actor(HOME, user), approval(tier)) is not None


@pytest.mark.parametrize("user", ["bob", "erin"])
@pytest.mark.parametrize("tier", ["confirm", "admin"])
def test_approvers_and_admins_decide_others_calls(
    authority: RbacApprovalAuthority, user: str, tier: str
) -> None:
    assert authority.refusal(Actor(HOME, user), approval(tier)) is None


def test_an_approver_of_another_workspace_cannot_decide(authority: RbacApprovalAuthority) -> None:
    for tier in ("confirm", "admin"):
        refusal = authority.refusal(Actor(HOME, "gus"), approval(tier))
        assert refusal == "'gus' is not a member of workspace 'acme'"


def test_the_starter_confirms_their_own_call_but_never_their_own_admin_call(
    authority: RbacApprovalAuthority, rbac: Rbac
) -> None:
    alice = Actor(HOME, "alice")
    assert authority.refusal(alice, approval("confirm")) is None
    assert "other than the run's starter" in str(authority.refusal(alice, approval("admin")))
    rbac.assign_role(HOME, "alice", "admin")  # even an admin
    assert "other than the run's starter" in str(authority.refusal(alice, approval("admin")))
    erin = Actor(HOME, "erin")
    assert "other than" in str(authority.refusal(erin, approval("admin", started_by="erin")))


def test_a_starter_who_lost_run_start_cannot_confirm(
    authority: RbacApprovalAuthority, rbac: Rbac
) -> None:
    rbac.revoke_role(HOME, "alice")
    rbac.assign_role(HOME, "alice", "viewer")
    refusal = authority.refusal(Actor(HOME, "alice"), approval("confirm"))
    assert refusal == "role viewer does not allow 'approval:decide:confirm'"


def test_unknown_tiers_are_refused(authority: RbacApprovalAuthority) -> None:
    assert authority.refusal(Actor(HOME, "erin"), approval("root")) == (
        "unknown approval tier 'root'"
    )


def test_a_role_revoked_elsewhere_a_moment_ago_no_longer_decides(
    authority: RbacApprovalAuthority, rbac: Rbac, engine: Engine, tmp_path: Path
) -> None:
    """The inbox is open in the server; the CLI (another process) revokes bob."""
    server = RbacApprovalAuthority(Rbac(engine, poll_interval_s=3600))
    bob = Actor(HOME, "bob")
    assert server.refusal(bob, approval("admin")) is None  # cached by the server
    Rbac(new_engine(tmp_path / "rbac.db")).revoke_role(HOME, "bob", "approver")
    assert server.refusal(bob, approval("admin")) is not None
    assert authority.refusal(bob, approval("confirm")) is not None


# --- API tokens: scopes intersect the owner's current role -----------------------------------
READ_ONLY = frozenset({"graph:read", "run:read", "approval:read"})


def test_a_read_only_token_cannot_decide_even_for_an_admin(rbac: Rbac) -> None:
    rbac.assign_role(HOME, "erin", "admin")
    for action in ("approval:decide:confirm", "approval:decide:admin", "run:start"):
        decision = rbac.authorize_token(HOME, "erin", READ_ONLY, action)
        assert decision == Decision(False, f"the API token is not scoped for {action!r}")
    assert rbac.authorize_token(HOME, "erin", READ_ONLY, "run:read").allowed


def test_a_token_never_does_more_than_its_owners_current_role(rbac: Rbac) -> None:
    everything = frozenset(ACTIONS)
    rbac.assign_role(HOME, "carol", "viewer")
    for action in ACTIONS:
        expected = action in role_actions("viewer")
        assert rbac.authorize_token(HOME, "carol", everything, action).allowed is expected
    assert not rbac.authorize_token(OTHER, "carol", everything, "graph:read").allowed
    foreign = Resource("graph", OTHER, "g-1")
    assert rbac.authorize_token(HOME, "carol", everything, "graph:read", foreign).reason == (
        "not found"
    )
    rbac.forget_user("carol")  # a removed user's tokens stop working at once
    assert not rbac.authorize_token(HOME, "carol", everything, "graph:read").allowed
    assert not rbac.authorize_token(HOME, "carol", everything, "no:such").allowed


# --- workspace tool-tier floors ------------------------------------------------------------
def test_tool_floors_only_raise(rbac: Rbac) -> None:
    assert rbac.tool_floor(HOME, "send_email") == "free"
    assert rbac.set_tool_floor(HOME, "send_email", "confirm") == "confirm"
    assert rbac.tool_floor(HOME, "send_email") == "confirm"
    assert rbac.set_tool_floor(HOME, "send_email", "confirm") == "confirm"  # unchanged
    rbac.set_tool_floor(HOME, "send_email", "admin")
    with pytest.raises(UserError, match="only raises tiers"):
        rbac.set_tool_floor(HOME, "send_email", "confirm")
    with pytest.raises(UserError, match="only raises tiers"):
        rbac.set_tool_floor(HOME, "send_email", "free")
    assert rbac.tool_floor(HOME, "send_email") == "admin"
    with pytest.raises(UserError, match="unknown tier"):
        rbac.set_tool_floor(HOME, "send_email", "none")
    assert rbac.tool_floor(OTHER, "send_email") == "free"  # floors are per workspace
    assert rbac.tool_floors(HOME) == {"send_email": "admin"}
    # The floor combines with the graph's own tier by max: it can never lower it.
    assert max_tier("admin", rbac.tool_floor(OTHER, "send_email")) == "admin"
    assert rbac.clear_tool_floor(HOME, "send_email")  # deliberate, audited lowering
    assert rbac.tool_floor(HOME, "send_email") == "free"


# --- wired into the runtime ----------------------------------------------------------------
@pytest.fixture
def governed(tmp_path: Path, receiver: HttpReceiver) -> Iterator[tuple[Runtime, Rbac]]:
    db = tmp_path / "studio.db"
    rbac = Rbac(new_engine(db))
    rbac.sync_role_templates()
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
    options: dict[str, Any] = {
        "authorizer": rbac,
        "authority": RbacApprovalAuthority(rbac),
        "tier_floor": rbac.tool_floor,
    }
    with open_runtime(db, http=policy, lease_ttl_s=5, **options) as rt:
        yield rt, rbac


def test_the_runtime_decides_with_current_roles(
    governed: tuple[Runtime, Rbac], receiver: HttpReceiver
) -> None:
    rt, rbac = governed
    m = rt.manager
    rbac.assign_roles(
        [
            (HOME, "alice", "editor"),
            (HOME, "bob", "approver"),
            (HOME, "carol", "viewer"),
            (OTHER, "gus", "admin"),
        ]
    )
    alice, bob, carol, gus = (
        Actor(HOME, "alice"),
        Actor(HOME, "bob"),
        Actor(HOME, "carol"),
        Actor(OTHER, "gus"),
    )
    version = m.library.create(alice, support_doc(receiver))
    with pytest.raises(Forbidden):
        m.start_run(carol, version_id=version.version_id, input={"order_id": "A-1"})
    run_id = m.start_run(alice, version_id=version.version_id, input={"order_id": "A-1"})
    m.wait(alice, run_id, timeout_s=30)
    [email] = m.approvals.list(alice, run_id=run_id)
    with pytest.raises(Forbidden):
        m.decide(carol, email.approval_id, "approve")
    with pytest.raises(NotFound):
        m.decide(gus, email.approval_id, "approve")
    m.decide(alice, email.approval_id, "approve")
    m.wait(alice, run_id, timeout_s=30)
    [refund] = m.approvals.list(alice, run_id=run_id)
    assert refund.tier == "admin"
    with pytest.raises(Forbidden, match="other than the run's starter"):
        m.decide(alice, refund.approval_id, "approve")
    rbac.revoke_role(HOME, "bob", "approver")
    with pytest.raises(Forbidden):
        m.decide(bob, refund.approval_id, "approve")
    rbac.assign_role(HOME, "bob", "approver")
    m.decide(bob, refund.approval_id, "approve")
    assert m.wait(alice, run_id, timeout_s=30).status == "succeeded"
    assert len(receiver.effects) == 1
