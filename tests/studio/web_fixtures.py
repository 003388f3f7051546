"""Seeded studio databases for page tests: two workspaces, one member per role."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from graphs.identity import Actor
from studio.context import open_studio
from studio.settings import Settings
from tests.conftest import example

PASSWORD = "correct horse battery staple"
ROLES = {"ed": "editor", "vi": "viewer", "ad": "admin", "ap": "approver"}


@dataclass
class Seeded:
    data_dir: Path
    users: dict[str, str] = field(default_factory=dict)  # name -> user id
    graphs: dict[str, str] = field(default_factory=dict)  # name -> graph id
    foreign_graph: str = ""
    cookies: dict[str, str] = field(default_factory=dict)  # name -> live session cookie

    def actor(self, name: str) -> Actor:
        return Actor("acme" if name != "mallory" else "evil", self.users[name])

    def session_cookie(self, name: str) -> str:
        return self.cookies[name]


def seed(data_dir: Path, graphs: dict[str, dict[str, Any]] | None = None) -> Seeded:
    seeded = Seeded(data_dir)
    with open_studio(Settings(data_dir=data_dir), resume=False) as studio:
        for name in [*ROLES, "mallory"]:
            user = studio.accounts.create_user(f"{name}@example.com", PASSWORD, name)
            seeded.users[name] = user.user_id
        studio.accounts.create_workspace(
            "Acme", owner_user_id=seeded.users["ad"], workspace_id="acme"
        )
        studio.accounts.create_workspace(
            "Evil", owner_user_id=seeded.users["mallory"], workspace_id="evil"
        )
        for name, role in ROLES.items():
            studio.rbac.assign_role("acme", seeded.users[name], role)
        studio.rbac.assign_role("evil", seeded.users["mallory"], "admin")
        library = studio.manager.library
        for name, doc in (graphs or {"router": example("triage_router")}).items():
            seeded.graphs[name] = library.create(seeded.actor("ed"), doc).graph_id
        seeded.foreign_graph = library.create(
            seeded.actor("mallory"), {**example("triage_router"), "name": "Evil secret plan"}
        ).graph_id
        for name in seeded.users:
            seeded.cookies[name], _ = studio.web_sessions.start_session(
                seeded.users[name], seeded.actor(name).workspace_id
            )
    return seeded


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Seeded once per test session; each test gets its own copy of the files."""
    return seed(tmp_path_factory.mktemp("seeded"))


@pytest.fixture
def seeded(
    seeded_template: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Seeded]:
    data_dir = tmp_path / "data"
    shutil.copytree(seeded_template.data_dir, data_dir)
    monkeypatch.setenv("STUDIO_TEST_DATA_DIR", str(data_dir))
    yield replace(seeded_template, data_dir=data_dir)


def add_pending_approvals(
    engine: Any,
    *,
    workspace_id: str,
    run_ids: list[str],
    count: int,
    action: str = "issue_refund",
    tier: str = "admin",
    start: Any = None,
) -> list[str]:
    """Insert `count` pending approval rows spread over `run_ids` (newest last, one second
    apart from `start`), straight into the table: for paging tests and the inbox benchmark.
    They have no live interrupt, so only use them in a studio that does not reconcile after
    they were written."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from graphs.tables import Approval

    start = start or datetime.now(UTC) - timedelta(seconds=count)
    rows = [
        {
            "approval_id": f"apr_fake{workspace_id[:8]}{i:08d}",
            "workspace_id": workspace_id,
            "run_id": run_ids[i % len(run_ids)],
            "node_id": "agent",
            "tool_call_id": f"call_{i}",
            "interrupt_id": f"int_{i}",
            "kind": "tool",
            "action": action,
            "args": {"order_id": f"A-{i:05d}", "amount": 10 + i % 90},
            "args_hash": f"{i:064d}",
            "tier": tier,
            "reason": f"graph policy sets {action!r} to {tier!r}",
            "description": "Refund an order through the payments API. Amount in EUR.",
            "allowed": ["approve", "edit", "reject"],
            "status": "pending",
            "created_at": start + timedelta(seconds=i),
            "tainted": i % 3 == 0,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        for at in range(0, len(rows), 1000):
            conn.execute(insert(Approval.__table__), rows[at : at + 1000])
    return [str(r["approval_id"]) for r in rows]


def seeded_studio(seeded: Seeded) -> Any:
    """The seeded database opened as a second studio (a context manager; it resumes no
    runs): for arranging data before a page opens and checking it afterwards."""
    return open_studio(Settings(data_dir=seeded.data_dir), resume=False)


def add_graph(seeded: Seeded, document: dict[str, Any], *, by: str = "ed") -> str:
    """Store (and publish) a graph in the seeded workspace of `by`; returns its id."""
    with seeded_studio(seeded) as studio:
        return studio.manager.library.create(seeded.actor(by), document).graph_id


def set_role(seeded: Seeded, name: str, role: str) -> None:
    """Give member `name` exactly one role in their workspace (e.g. demote an editor)."""
    actor = seeded.actor(name)
    with seeded_studio(seeded) as studio:
        studio.rbac.revoke_role(actor.workspace_id, actor.user_id)
        studio.rbac.assign_role(actor.workspace_id, actor.user_id, role)
    # The app's RBAC (another Rbac on the same database) sees a change within its poll
    # interval, 0.1 s: wait that long, or a click right after could still pass the old role.
    time.sleep(0.3)
