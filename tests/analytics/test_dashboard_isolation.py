"""Tenancy and authority of the dashboards: workspace B never sees a row of A (nor A of B)
in any query, drill-down or export; every SQL statement binds the actor's workspace in each
of its branches; only ``analytics:read`` opens them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics import export
from analytics.queries import Dashboards
from analytics.rows import Filters, Point
from analytics.store import AnalyticsStore, AnalyticsUnavailable
from components.errors import Forbidden, NotFound
from graphs.identity import Actor
from studio.context import Studio, StudioAuthorizer
from tests.analytics.dashboard_world import (
    D1,
    D3,
    SECRET_GRAPH,
    SECRET_MODEL,
    SECRET_USER,
    WS_A,
    WS_B,
    at,
    fill,
    members,
    studio_at,
)

A_MARKS = ("alice", "bob", "carol", "g-a", "g-b", "m-large", "m-small", "'r1'", "0.033", WS_A)
B_MARKS = (SECRET_MODEL, SECRET_GRAPH, SECRET_USER, "rb1", "31.4159", "27.1828", WS_B)
RANGE = Filters(at(D1, 0), at(D3, 0))
PARTIAL = Filters(at(D1, 10, 15), at(D3, 0))  # raw rows for D1, the rollup for D2

Query = Callable[[Dashboards, Actor, Filters], list[Any]]
QUERIES: dict[str, Query] = {
    **{f"cost by {by}": (lambda d, a, f, by=by: d.cost(a, f, by=by))
       for by in [("day", "model"), ("user", "graph"), ("node",), ()]},
    **{f"latency by {by}": (lambda d, a, f, by=by: d.latency(a, f, by=by))
       for by in ("node", "model", "graph", "user", "day")},
    **{f"errors by {by}": (lambda d, a, f, by=by: d.errors(a, f, by=by))
       for by in ("node", "model", "graph", "user", "day", "error_kind")},
    "cache by day": lambda d, a, f: d.cache(a, f),
    "cache by model": lambda d, a, f: d.cache(a, f, by="model"),
    **{f"approvals by {by}": (lambda d, a, f, by=by: d.approvals(a, f, by=by))
       for by in ("tier", "day", "node", "graph", "user", "action")},
    "approvers": lambda d, a, f: d.approvers(a, f),
    "budget burn-down": lambda d, a, f: d.budget_burn(a, f),
    "runs behind a day": lambda d, a, f: d.runs_behind(a, f, Point(day=D1)),
    "runs behind everything": lambda d, a, f: d.runs_behind(a, f, Point()),
    "runs behind approvals": lambda d, a, f: d.runs_behind(a, f, Point("approvals")),
}  # fmt: skip


@dataclass
class World:
    studio: Studio
    store: AnalyticsStore
    dash: Dashboards
    people: dict[tuple[str, str], Actor]
    statements: list[tuple[str, list[object]]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("isolation")
    with studio_at(folder) as studio:
        fill(studio)
        people = members(studio)
        with AnalyticsStore(studio.engine, folder / "analytics.duckdb") as store:
            store.refresh()
            statements: list[tuple[str, list[object]]] = []
            real = store.fetch

            def recording(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
                statements.append((sql, list(params)))
                return real(sql, params)

            store.fetch = recording  # type: ignore[method-assign]
            dash = Dashboards(store, StudioAuthorizer(studio.rbac))
            yield World(studio, store, dash, people, statements)


def _text(rows: list[Any]) -> str:
    return repr(rows)


@pytest.mark.parametrize("window", [RANGE, PARTIAL], ids=["whole days", "partial days"])
@pytest.mark.parametrize("name", list(QUERIES))
def test_no_query_crosses_workspaces(world: World, name: str, window: Filters) -> None:
    query = QUERIES[name]
    a_rows = query(world.dash, world.people[(WS_A, "editor")], window)
    b_rows = query(world.dash, world.people[(WS_B, "editor")], window)
    assert a_rows, "A has rows for every query (so emptiness proves nothing)"
    leaked_into_b = [m for m in A_MARKS if m in _text(b_rows)]
    leaked_into_a = [m for m in B_MARKS if m in _text(a_rows)]
    assert not leaked_into_b and not leaked_into_a


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_statement_binds_the_actor_workspace_in_every_branch(
    world: World, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Dashboards, "EXACT_UP_TO", 0)  # latency percentiles from the sample
    world.statements.clear()
    QUERIES[name](world.dash, world.people[(WS_B, "admin")], PARTIAL)
    assert world.statements
    for sql, params in world.statements:
        tables = ("events", "daily", "approvals", "latency_sample")
        sources = sum(len(re.findall(rf"\bFROM {t}\b", sql)) for t in tables)
        assert sql.count("WHERE workspace_id = ?") == sources, sql
        assert params.count(WS_B) == sources and WS_A not in params
    if name.startswith("latency"):
        assert any("FROM latency_sample" in sql for sql, _ in world.statements)


def test_filter_values_of_another_workspace_find_nothing(world: World) -> None:
    b = world.people[(WS_B, "editor")]
    foreign = Filters(at(D1, 0), at(D3, 0), graph_id="g-a", user_id="alice")
    assert world.dash.cost(b, foreign) == []
    assert world.dash.approvals(b, foreign) == []
    points = [Point(graph_id="g-a"), Point(user_id="alice")]
    for point in [*points, Point("approvals", tier="admin", graph_id="g-a")]:
        assert world.dash.runs_behind(b, RANGE, point) == []
    with pytest.raises(TypeError):
        Filters(at(D1, 0), at(D3, 0), workspace_id=WS_A)  # type: ignore[call-arg]


def test_exports_hold_only_the_actor_workspace(world: World, tmp_path: Path) -> None:
    for ws, marks in ((WS_B, A_MARKS), (WS_A, B_MARKS)):
        actor = world.people[(ws, "editor")]
        rows = world.dash.cost(actor, RANGE, by=("day", "user", "graph", "model", "node"))
        assert rows
        csv_text = export.to_csv(rows, type(rows[0]))
        parquet = export.to_parquet(rows, type(rows[0]))
        con = duckdb.connect()
        path = f"/tmp/iso-{ws}-{id(rows)}.parquet"
        with open(path, "wb") as f:
            f.write(parquet)
        read_back = con.execute(f"SELECT * FROM '{path}'").fetchall()
        assert len(read_back) == len(rows)
        assert not [m for m in marks if m in csv_text or m in repr(read_back)]


@pytest.mark.parametrize("name", ["cost by ('day', 'model')", "latency by node",
                                  "approvals by tier", "budget burn-down",
                                  "runs behind everything"])  # fmt: skip
def test_without_analytics_read_every_query_is_refused(world: World, name: str) -> None:
    query = QUERIES[name]
    for role in ("viewer", "runner"):
        with pytest.raises(Forbidden):
            query(world.dash, world.people[(WS_A, role)], RANGE)
    outsider = Actor(WS_A, world.people[(WS_B, "editor")].user_id)  # B's editor, in A
    with pytest.raises(NotFound):
        query(world.dash, outsider, RANGE)
    editor = world.people[(WS_A, "editor")]
    scoped = Actor(WS_A, editor.user_id, frozenset({"run:read"}))  # a token without the scope
    with pytest.raises(Forbidden):
        query(world.dash, scoped, RANGE)
    allowed = Actor(WS_A, editor.user_id, frozenset({"analytics:read"}))
    query(world.dash, allowed, RANGE)


def test_a_revoked_role_is_refused_at_once(world: World) -> None:
    actor = world.people[(WS_A, "admin")]
    user = world.studio.accounts.create_user("temp-analyst@example.com", None, "t").user_id
    world.studio.rbac.assign_role(WS_A, user, "editor")
    temp = Actor(actor.workspace_id, user)
    assert world.dash.cost(temp, RANGE)
    world.studio.rbac.revoke_role(WS_A, user)
    with pytest.raises((Forbidden, NotFound)):
        world.dash.cost(temp, RANGE)


def test_a_snapshot_of_one_workspace_answers_no_other(world: World) -> None:
    with AnalyticsStore.snapshot(world.studio.engine, WS_B) as snapshot:
        snapshot.refresh()
        dash = Dashboards(snapshot, StudioAuthorizer(world.studio.rbac))
        assert dash.cost(world.people[(WS_B, "editor")], RANGE)
        with pytest.raises(AnalyticsUnavailable, match="holds workspace"):
            dash.cost(world.people[(WS_A, "editor")], RANGE)
