"""A small, hand-counted analytics world in a real studio database, for the dashboard tests.

Workspace A holds the rows whose totals the tests compute by hand (see the comments);
workspace B holds rows of the same shape on the same days, with names and amounts of its
own (`SECRET_*`), so any leak of B into A's answers (or the reverse) is visible.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from analytics.tables import Budget, UsageEvent
from graphs.identity import Actor
from graphs.tables import Approval, Graph, GraphVersion, Run
from studio.context import Studio, open_studio
from studio.settings import Settings

WS_A, WS_B = "ws-a", "ws-b"
D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)  # Monday to Wednesday
SECRET_MODEL, SECRET_GRAPH, SECRET_USER = "m-secret-b", "g-secret-b", "mallory-b"


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def event(workspace_id: str, run_id: str, created_at: datetime, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "workspace_id": workspace_id, "run_id": run_id, "graph_id": "g-a", "graph_version": 1,
        "user_id": "alice", "node_id": "plan", "kind": "model", "attempt": 1,
        "model": "m-large", "provider": "scripted", "tool": None, "input_tokens": None,
        "output_tokens": None, "cached_tokens": None, "usage_missing": False,
        "cost_usd": None, "price_source": "override", "ttft_ms": None, "latency_ms": 0.0,
        "outcome": "ok", "cache_hit": False, "saved_usd": None, "error_kind": None,
        "created_at": created_at,
    }  # fmt: skip
    row.update(values)
    return row


def usage(i: int, o: int, c: int | None, cost: str, **values: Any) -> dict[str, Any]:
    return {"input_tokens": i, "output_tokens": o, "cached_tokens": c,
            "cost_usd": Decimal(cost), **values}  # fmt: skip


MISSING = {"input_tokens": None, "output_tokens": None, "cached_tokens": None,
           "usage_missing": True, "cost_usd": None}  # fmt: skip

# Workspace A, by hand:
# D1  m-large (alice, g-a, plan): 3 calls, cost 0.012 + 0.010 + 0.011 = 0.033,
#     input 3000, output 300, cached 100 (one call reported no cached count)
#     latency plan/m-large 100, 300, 200; ttft 40, 50; one retry (rate_limit)
# D1  tool call (alice, g-a, search): latency 50, no tokens, no cost
# D2  m-small (bob, g-a, plan): usage missing (latency 400); a cache hit saving 0.005
# D2  m-small (alice, g-b, answer): an error without usage (1000 ms), then 0.001 (150 ms)
# D3  00:30 m-small (alice, g-b, answer): 0.002, 120 ms — outside ranges ending at D3
EVENTS_A = [
    event(WS_A, "r1", at(D1, 10), **usage(1000, 200, 100, "0.012"), latency_ms=100.0, ttft_ms=40.0),
    event(WS_A, "r1", at(D1, 11), **usage(1000, 0, 0, "0.010"), latency_ms=300.0,
          outcome="retry", error_kind="rate_limit"),
    event(WS_A, "r1", at(D1, 11, 1), **usage(1000, 100, None, "0.011"), latency_ms=200.0,
          ttft_ms=50.0, attempt=2),
    event(WS_A, "r1", at(D1, 12), kind="tool", model=None, provider=None, tool="http",
          node_id="search", latency_ms=50.0),
    event(WS_A, "r2", at(D2, 9), **MISSING, model="m-small", user_id="bob", latency_ms=400.0),
    event(WS_A, "r2", at(D2, 9, 30), **usage(0, 0, 0, "0"), model="m-small", user_id="bob",
          latency_ms=2.0, outcome="cache_hit", cache_hit=True, saved_usd=Decimal("0.005"),
          price_source="cache"),
    event(WS_A, "r3", at(D2, 10), **MISSING, model="m-small", graph_id="g-b", node_id="answer",
          latency_ms=1000.0, outcome="error", error_kind="timeout"),
    event(WS_A, "r3", at(D2, 23, 30), **usage(500, 50, 0, "0.001"), model="m-small",
          graph_id="g-b", node_id="answer", latency_ms=150.0, attempt=2),
    event(WS_A, "r4", at(D3, 0, 30), **usage(10, 10, 0, "0.002"), model="m-small",
          graph_id="g-b", node_id="answer", latency_ms=120.0),
]  # fmt: skip
SECRET = {"model": SECRET_MODEL, "graph_id": SECRET_GRAPH, "user_id": SECRET_USER}
EVENTS_B = [
    event(WS_B, "rb1", at(D1, 10, 30), **usage(7777, 777, 77, "31.4159"), **SECRET,
          latency_ms=9999.0, node_id="plan"),
    event(WS_B, "rb1", at(D2, 9, 15), **MISSING, **SECRET, latency_ms=8888.0,
          outcome="error", error_kind="secret_failure", node_id="answer"),
    event(WS_B, "rb2", at(D2, 9, 45), **usage(0, 0, 0, "0"), **SECRET, latency_ms=1.0,
          outcome="cache_hit", cache_hit=True, saved_usd=Decimal("27.1828"), node_id="plan"),
]  # fmt: skip


@contextmanager
def studio_at(folder: Path) -> Iterator[Studio]:
    """The full studio (all migrations, RBAC) on a real SQLite file in `folder`."""
    settings = Settings(data_dir=folder)
    with open_studio(settings, db_path=folder / "studio.db", resume=False) as studio:
        yield studio


def add_events(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(UsageEvent), rows)


def add_run(engine: Engine, workspace_id: str, run_id: str, graph_id: str, user_id: str) -> None:
    now = at(D1, 0)
    version_id = str(uuid.uuid4())
    with engine.begin() as conn:
        if conn.execute(Graph.__table__.select().where(Graph.graph_id == graph_id)).first() is None:
            conn.execute(insert(Graph), [{"graph_id": graph_id, "workspace_id": workspace_id,
                                          "name": graph_id, "created_by": user_id,
                                          "created_at": now}])  # fmt: skip
        conn.execute(insert(GraphVersion), [{
            "version_id": version_id, "graph_id": graph_id, "workspace_id": workspace_id,
            "number": 1 + len(conn.execute(GraphVersion.__table__.select().where(
                GraphVersion.graph_id == graph_id)).all()),
            "document": {}, "document_hash": "0" * 64, "created_by": user_id, "created_at": now,
        }])  # fmt: skip
        conn.execute(insert(Run), [{
            "run_id": run_id, "workspace_id": workspace_id, "graph_id": graph_id,
            "version_id": version_id, "thread_id": f"t-{run_id}", "status": "succeeded",
            "started_by": user_id, "input": {}, "created_at": now,
        }])  # fmt: skip


def add_approval(
    engine: Engine,
    workspace_id: str,
    run_id: str,
    created_at: datetime,
    status: str = "pending",
    *,
    decided_at: datetime | None = None,
    decided_by: str | None = None,
    tier: str = "confirm",
    node_id: str = "gate",
) -> str:
    approval_id = uuid.uuid4().hex
    decision = {"approved": "approve", "edited": "edit", "rejected": "reject"}.get(status)
    with engine.begin() as conn:
        conn.execute(insert(Approval), [{
            "approval_id": approval_id, "workspace_id": workspace_id, "run_id": run_id,
            "node_id": node_id, "tool_call_id": approval_id, "interrupt_id": approval_id,
            "kind": "tool", "action": "issue_refund", "args": {}, "args_hash": "0" * 64,
            "tier": tier, "allowed": ["approve", "reject"], "status": status,
            "decision": decision, "decided_by": decided_by, "decided_at": decided_at,
            "created_at": created_at,
        }])  # fmt: skip
    return approval_id


def add_budget(engine: Engine, workspace_id: str, scope: str, scope_id: str, amount: str,
               period: str, created_at: datetime) -> str:  # fmt: skip
    budget_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(insert(Budget), [{
            "budget_id": budget_id, "workspace_id": workspace_id, "scope": scope,
            "scope_id": scope_id, "amount_usd": Decimal(amount), "period": period,
            "action": "stop", "created_by": "admin", "created_at": created_at,
        }])  # fmt: skip
    return budget_id


def fill(studio: Studio) -> dict[str, str]:
    """Events, runs, approvals and budgets of both workspaces; returns the approval ids.

    Approvals of A (requested on D1 and D2; decision times in seconds):
      confirm: approved by bob after 60 s, approved by bob after 120 s, rejected by carol
               after 30 s, still pending;
      admin:   edited by carol after 600 s, cancelled (not a decision).
    """
    engine = studio.engine
    add_events(engine, EVENTS_A + EVENTS_B)
    for run_id, graph_id, user in (("r1", "g-a", "alice"), ("r2", "g-a", "bob"),
                                   ("r3", "g-b", "alice"), ("r4", "g-b", "alice")):  # fmt: skip
        add_run(engine, WS_A, run_id, graph_id, user)
    add_run(engine, WS_B, "rb1", SECRET_GRAPH, SECRET_USER)
    t1, t2 = at(D1, 9), at(D2, 14)
    sec = timedelta(seconds=1)
    ids = {
        "ok1": add_approval(engine, WS_A, "r1", t1, "approved", decided_at=t1 + 60 * sec,
                            decided_by="bob"),
        "ok2": add_approval(engine, WS_A, "r2", t2, "approved", decided_at=t2 + 120 * sec,
                            decided_by="bob"),
        "no": add_approval(engine, WS_A, "r3", t2, "rejected", decided_at=t2 + 30 * sec,
                           decided_by="carol"),
        "pending": add_approval(engine, WS_A, "r3", t2),
        "edit": add_approval(engine, WS_A, "r1", t1, "edited", decided_at=t1 + 600 * sec,
                             decided_by="carol", tier="admin"),
        "cancel": add_approval(engine, WS_A, "r2", t2, "cancelled", decided_at=t2, tier="admin"),
        "b": add_approval(engine, WS_B, "rb1", t1, "approved", decided_at=t1 + 5 * sec,
                          decided_by=SECRET_USER),
    }  # fmt: skip
    # Budgets of A: the workspace per week (D1 is a Monday), every user per day, graph g-b
    # per month from D2 noon (after r3's failed call), and a per-run budget (no burn-down).
    ids["week"] = add_budget(engine, WS_A, "workspace", WS_A, "1", "week", at(D1, 0))
    ids["users"] = add_budget(engine, WS_A, "user", "*", "0.05", "day", at(D1, 0))
    ids["g-b"] = add_budget(engine, WS_A, "graph", "g-b", "0.5", "month", at(D2, 12))
    ids["run"] = add_budget(engine, WS_A, "run", "*", "0.01", "total", at(D1, 0))
    ids["secret"] = add_budget(engine, WS_B, "workspace", WS_B, "99", "week", at(D1, 0))
    return ids


def members(studio: Studio) -> dict[tuple[str, str], Actor]:
    """Real accounts with roles in both workspaces: (workspace, role) → actor. Editors and
    admins have ``analytics:read``; viewers and runners do not."""
    found: dict[tuple[str, str], Actor] = {}
    for ws in (WS_A, WS_B):
        for role in ("admin", "editor", "runner", "viewer"):
            name = f"{role}-{ws}"
            user_id = studio.accounts.create_user(f"{name}@example.com", None, name).user_id
            studio.rbac.assign_role(ws, user_id, role)
            found[(ws, role)] = Actor(ws, user_id)
        owner = found[(ws, "admin")].user_id
        studio.accounts.create_workspace(f"Workspace {ws}", owner_user_id=owner, workspace_id=ws)
    return found
