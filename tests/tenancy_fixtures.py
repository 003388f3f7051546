"""Two workspaces in one studio, for the tenant matrix and the authority tests.

Workspace A ("ws-a") and B ("ws-b") each have an admin, an approver, a runner, an editor and a
viewer (real accounts, roles through RBAC). A holds one of every object type: a graph with
two versions, a support-agent run paused on its admin-tier refund approval after its e-mail
approval was approved (so an effect row and an outbox row exist), run events, a secret, an
API token (its admin's, carrying every action), members and audit entries. B holds the same
kinds of objects of its own, so B's lists are not empty by accident.

`snapshot()` reads every row of a workspace from every workspace-scoped table, so a test can
prove that an attempt "changed nothing" by comparing two snapshots.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from auth.actions import ACTIONS
from components.errors import StudioError
from graphs.identity import Actor
from studio.context import Studio
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver

WS_A = "ws-a"
WS_B = "ws-b"
ROLES = ("admin", "approver", "runner", "editor", "viewer")
A_SECRET = "PAY_KEY_A"
A_SECRET_VALUE = "sk-live-tenant-a-" + "4c1d9e7f2a6b3850"
B_SECRET = "PAY_KEY_B"
B_SECRET_VALUE = "sk-live-tenant-b-" + "91e0f3c7d5a2b864"
WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Ids:
    """The ids of one workspace's objects (or made-up ones of the same shape)."""

    graph_id: str
    version_id: str  # the latest version
    first_version_id: str
    run_id: str
    email_approval_id: str  # decided (approved)
    refund_approval_id: str  # pending
    token_id: str
    secret_name: str

    @staticmethod
    def made_up() -> Ids:
        def new() -> str:
            return str(uuid.uuid4())

        return Ids(new(), new(), new(), new(), new(), new(), new(), "NO_SUCH_SECRET")


@dataclass
class World:
    studio: Studio
    receiver: HttpReceiver
    users: dict[tuple[str, str], str] = field(default_factory=dict)  # (ws, role) → user id
    a: Ids | None = None
    b: Ids | None = None
    a_token: str = ""
    b_token: str = ""

    def actor(self, workspace_id: str, role: str) -> Actor:
        return Actor(workspace_id, self.users[(workspace_id, role)])

    def new_user(self, workspace_id: str, *roles: str) -> Actor:
        """A fresh member (for tests that change or disable it)."""
        name = f"u-{uuid.uuid4().hex[:10]}"
        user_id = self.studio.accounts.create_user(f"{name}@example.com", None, name).user_id
        for role in roles:
            self.studio.rbac.assign_role(workspace_id, user_id, role)
        return Actor(workspace_id, user_id)

    @property
    def ids_a(self) -> Ids:
        assert self.a is not None
        return self.a

    @property
    def ids_b(self) -> Ids:
        assert self.b is not None
        return self.b

    def doc(self) -> dict[str, Any]:
        return support_doc(self.receiver)


def pending(studio: Studio, actor: Actor, run_id: str) -> list[Any]:
    return studio.manager.approvals.list(actor, run_id=run_id)


def run_to_email(world: World, starter: Actor, version_id: str, order: str) -> tuple[str, Any]:
    """Start a support-agent run and wait for its e-mail (confirm-tier) approval."""
    m = world.studio.manager
    run_id = m.start_run(starter, version_id=version_id, input={"order_id": order})
    view = m.wait(starter, run_id, timeout_s=WAIT_S)
    assert view.status == "waiting_approval", view
    [email] = pending(world.studio, starter, run_id)
    assert email.action == "email_customer" and email.tier == "confirm"
    return run_id, email


def run_to_refund(
    world: World, starter: Actor, version_id: str, order: str, approver: Actor
) -> tuple[str, Any, Any]:
    """... then let `approver` approve the e-mail and wait for the refund (admin-tier)."""
    m = world.studio.manager
    run_id, email = run_to_email(world, starter, version_id, order)
    m.decide(approver, email.approval_id, "approve")
    view = m.wait(starter, run_id, timeout_s=WAIT_S)
    assert view.status == "waiting_approval", view
    [refund] = pending(world.studio, starter, run_id)
    assert refund.action == "issue_refund" and refund.tier == "admin"
    return run_id, email, refund


def build_world(studio: Studio, receiver: HttpReceiver) -> World:
    world = World(studio, receiver)
    for ws in (WS_A, WS_B):
        for role in ROLES:
            name = f"{role}-{ws}"
            user_id = studio.accounts.create_user(f"{name}@example.com", None, name).user_id
            world.users[(ws, role)] = user_id
            studio.rbac.assign_role(ws, user_id, role)
        studio.accounts.create_workspace(
            f"Workspace {ws}", owner_user_id=world.users[(ws, "admin")], workspace_id=ws
        )
    world.a, world.a_token = _populate(world, WS_A, A_SECRET, A_SECRET_VALUE, "A-1")
    world.b, world.b_token = _populate(world, WS_B, B_SECRET, B_SECRET_VALUE, "B-1")
    studio.manager.events.flush()
    return world


def _populate(world: World, ws: str, secret: str, value: str, order: str) -> tuple[Ids, str]:
    studio, m = world.studio, world.studio.manager
    editor, runner = world.actor(ws, "editor"), world.actor(ws, "runner")
    approver, admin = world.actor(ws, "approver"), world.actor(ws, "admin")
    first = m.library.create(editor, world.doc(), message="first")
    latest = m.library.save_version(editor, first.graph_id, world.doc(), message="second")
    run_id, email, refund = run_to_refund(world, runner, latest.version_id, order, approver)
    studio.vault.set_secret(admin, secret, value)
    token, view = studio.tokens.create_token(admin, name="ci", actions=sorted(ACTIONS))
    ids = Ids(
        graph_id=first.graph_id,
        version_id=latest.version_id,
        first_version_id=first.version_id,
        run_id=run_id,
        email_approval_id=email.approval_id,
        refund_approval_id=refund.approval_id,
        token_id=view.token_id,
        secret_name=secret,
    )
    return ids, token


# Every workspace-scoped table, and the columns that change without anyone acting (the
# lease heartbeat, a token's last use) which a "nothing changed" comparison leaves out.
_SCOPED: dict[str, tuple[str, tuple[str, ...]]] = {
    "graphs": ("workspace_id", ()),
    "graph_versions": ("workspace_id", ()),
    "runs": ("workspace_id", ("lease_owner", "lease_expires_at")),
    "approvals": ("workspace_id", ()),
    "effects": ("workspace_id", ()),
    "outbox": ("workspace_id", ("status", "attempts", "last_error", "sent_at")),
    "run_events": ("workspace_id", ()),
    "vault_secrets": ("workspace_id", ()),
    "api_tokens": ("workspace_id", ("last_used_at",)),
    "audit_entries": ("workspace_id", ()),
    "casbin_rule": ("v2", ()),
    "workspace_tool_tier": ("workspace_id", ()),
}


def snapshot(studio: Studio, workspace_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of `workspace_id` in every workspace-scoped table (sorted, comparable)."""
    studio.manager.events.flush()
    found: dict[str, list[tuple[Any, ...]]] = {}
    with studio.engine.connect() as conn:
        for table, (column, volatile) in _SCOPED.items():
            names = [
                row[1]
                for row in conn.execute(text(f"PRAGMA table_info({table})"))
                if row[1] not in volatile
            ]
            cols = ", ".join(f'"{n}"' for n in names)
            query = text(f'SELECT {cols} FROM "{table}" WHERE "{column}" = :ws')
            rows = conn.execute(query, {"ws": workspace_id}).all()
            found[table] = sorted((tuple(r) for r in rows), key=repr)
    return found


def outcome(call: Callable[[], Any]) -> str:
    """'ok', or the name of the studio error `call` raised (anything else propagates)."""
    try:
        result = call()
        if hasattr(result, "__next__"):  # a generator: the scope check runs on first use
            list(result)
    except StudioError as exc:
        return type(exc).__name__
    return "ok"
