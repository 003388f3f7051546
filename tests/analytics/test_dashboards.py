"""Every dashboard query against values counted by hand (see `dashboard_world`), on a real
SQLite file loaded into a real DuckDB file."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from analytics import _schema as schema
from analytics.figures import cost_figure, latency_figure, point_from_customdata
from analytics.queries import Dashboards
from analytics.rows import CostRow, Filters, Point
from analytics.store import AnalyticsStore
from components.errors import UserError
from graphs.identity import Actor, LocalAuthorizer
from studio.context import StudioAuthorizer
from tests.analytics.dashboard_world import (
    D1,
    D2,
    D3,
    EVENTS_A,
    WS_A,
    at,
    fill,
    members,
    studio_at,
)


@dataclass
class World:
    dash: Dashboards
    a: Actor  # an editor of workspace A
    ids: dict[str, str]
    engine: Engine


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("dashboards")
    with studio_at(folder) as studio:
        ids = fill(studio)
        people = members(studio)
        with AnalyticsStore(studio.engine, folder / "analytics.duckdb") as store:
            store.refresh()
            dash = Dashboards(store, StudioAuthorizer(studio.rbac))
            yield World(dash, people[(WS_A, "editor")], ids, studio.engine)


TWO_DAYS = Filters(at(D1, 0), at(D3, 0))


def test_cost_and_tokens_by_day_and_model(world: World) -> None:
    assert world.dash.cost(world.a, TWO_DAYS) == [
        CostRow(D1, None, None, "m-large", None, calls=3, priced_calls=3, usage_missing_calls=0,
                cost_usd=Decimal("0.033"), input_tokens=3000, output_tokens=300,
                cached_tokens=100),
        CostRow(D2, None, None, "m-small", None, calls=4, priced_calls=2, usage_missing_calls=2,
                cost_usd=Decimal("0.001"), input_tokens=500, output_tokens=50, cached_tokens=0),
    ]  # fmt: skip


def test_cost_by_user_and_in_total(world: World) -> None:
    by_user = {r.user_id: r for r in world.dash.cost(world.a, TWO_DAYS, by=("user",))}
    assert (by_user["alice"].calls, by_user["alice"].cost_usd) == (5, Decimal("0.034"))
    assert by_user["alice"].usage_missing_calls == 1
    bob = by_user["bob"]  # a call without usage and a cache hit (known to cost nothing)
    assert (bob.calls, bob.priced_calls, bob.cost_usd, bob.input_tokens) == (2, 1, 0, 0)
    [total] = world.dash.cost(world.a, TWO_DAYS, by=())
    assert (total.calls, total.cost_usd, total.input_tokens) == (7, Decimal("0.034"), 3500)


def test_missing_usage_stays_missing_never_zero(world: World) -> None:
    only_missing = Filters(at(D2, 8), at(D2, 9, 15))  # bob's call without usage, alone
    [row] = world.dash.cost(world.a, only_missing, by=("day", "user"))
    assert row.calls == 1 and row.usage_missing_calls == 1 and row.priced_calls == 0
    assert row.cost_usd is None
    assert (row.input_tokens, row.output_tokens, row.cached_tokens) == (None, None, None)


def test_latency_percentiles_by_node_and_model(world: World) -> None:
    by_node = {r.key: r for r in world.dash.latency(world.a, TWO_DAYS, by="node", ttft=True)}
    plan = by_node["plan"]  # 100, 200, 300, 400 (the cache hit is not a call)
    assert (plan.calls, plan.p50_ms, plan.p95_ms, plan.p99_ms) == (4, 250, 385, pytest.approx(397))
    assert (plan.ttft_p50_ms, plan.ttft_p95_ms) == (45, 49.5)
    [without] = [r for r in world.dash.latency(world.a, TWO_DAYS) if r.key == "plan"]
    assert without.ttft_p50_ms is None and without.p50_ms == 250  # time to first token: asked
    assert (by_node["answer"].p50_ms, by_node["answer"].p95_ms) == (575, 957.5)
    assert (by_node["search"].calls, by_node["search"].ttft_p50_ms) == (1, None)
    by_model = {r.key: r for r in world.dash.latency(world.a, TWO_DAYS, by="model")}
    assert set(by_model) == {"m-large", "m-small"}  # tool calls have no model
    assert (by_model["m-large"].p50_ms, by_model["m-large"].p95_ms) == (200, 290)
    assert (by_model["m-small"].p50_ms, by_model["m-small"].p99_ms) == (400, 988)


def test_large_groups_take_percentiles_from_the_sample_counts_and_means_stay_exact(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "SAMPLE_EVERY", 2)  # one call in two, by a hash of its id
    monkeypatch.setattr(Dashboards, "EXACT_UP_TO", 3)  # plan (4 calls) is large, answer is not
    with AnalyticsStore(world.engine, None) as store:
        store.refresh()
        dash = Dashboards(store, LocalAuthorizer())
        rows = {r.key: r for r in dash.latency(world.a, TWO_DAYS)}
        days = {r.key: r for r in dash.latency(world.a, TWO_DAYS, by="day")}
        [(expected,)] = store.fetch(
            "SELECT quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FROM latency_sample WHERE"
            " workspace_id = ? AND node_id = 'plan' AND NOT cache_hit AND created_at < ?",
            [WS_A, datetime(2026, 3, 4)],
        )
    plan, answer = rows["plan"], rows["answer"]
    assert (plan.sample_every, answer.sample_every) == (2, 1)
    assert (plan.calls, plan.mean_ms) == (4, 250)  # exact, from the rollup
    assert [plan.p50_ms, plan.p95_ms, plan.p99_ms] == (expected or [None, None, None])
    assert (answer.calls, answer.p50_ms, answer.p95_ms) == (2, 575, 957.5)  # exact
    assert (days[D1].sample_every, days[D2].sample_every) == (2, 1)  # 4 calls, 3 calls
    assert (days[D2].calls, days[D2].p50_ms) == (3, 400)  # 150, 400, 1000


def test_error_and_retry_rates(world: World) -> None:
    rows = {r.key: r for r in world.dash.errors(world.a, TWO_DAYS, by="node")}
    plan = rows["plan"]
    assert (plan.calls, plan.ok, plan.retries, plan.cache_hits) == (5, 3, 1, 1)
    assert (plan.error_rate, plan.retry_rate) == (0.0, 0.2)
    assert (rows["answer"].errors, rows["answer"].error_rate) == (1, 0.5)
    kinds = {r.key: r.calls for r in world.dash.errors(world.a, TWO_DAYS, by="error_kind")}
    assert kinds == {None: 6, "rate_limit": 1, "timeout": 1}


def test_cache_hit_rate_and_savings(world: World) -> None:
    rows = world.dash.cache(world.a, TWO_DAYS)
    assert [(r.key, r.model_calls, r.cache_hits, r.hit_rate, r.saved_usd) for r in rows] == [
        (D1, 3, 0, 0.0, None),
        (D2, 4, 1, 0.25, Decimal("0.005")),
    ]


def test_approval_rates_and_time_to_decision(world: World) -> None:
    rows = {r.key: r for r in world.dash.approvals(world.a, TWO_DAYS)}
    confirm, admin = rows["confirm"], rows["admin"]
    assert (confirm.requested, confirm.pending, confirm.approved, confirm.rejected) == (4, 1, 2, 1)
    assert confirm.approve_rate == pytest.approx(2 / 3)
    assert confirm.reject_rate == pytest.approx(1 / 3)
    assert (confirm.decision_p50_s, confirm.decision_p95_s) == (60, pytest.approx(114))
    assert (admin.edited, admin.cancelled, admin.edit_rate, admin.decision_p50_s) == (
        1, 1, 1.0, 600,
    )  # fmt: skip
    by_day = {r.key: r.requested for r in world.dash.approvals(world.a, TWO_DAYS, by="day")}
    assert by_day == {D1: 2, D2: 4}


def test_approver_workload(world: World) -> None:
    rows = world.dash.approvers(world.a, TWO_DAYS)
    assert [(r.decided_by, r.decisions, r.approved, r.edited, r.rejected) for r in rows] == [
        ("bob", 2, 2, 0, 0),
        ("carol", 2, 0, 1, 1),
    ]
    assert (rows[0].decision_p50_s, rows[1].decision_mean_s) == (90, 315)


def test_budget_burn_down(world: World) -> None:
    rows = world.dash.budget_burn(world.a, TWO_DAYS)
    series: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        series.setdefault((row.budget_id, row.subject_id), []).append(
            (row.day, row.spent_usd, row.cumulative_usd, row.remaining_usd, row.unpriced_calls)
        )
    ids = world.ids
    assert series[(ids["week"], WS_A)] == [
        (D1, Decimal("0.033"), Decimal("0.033"), Decimal("0.967"), 0),
        (D2, Decimal("0.001"), Decimal("0.034"), Decimal("0.966"), 2),
    ]
    assert series[(ids["users"], "alice")] == [(D2, Decimal("0.001"), Decimal("0.001"),
                                                Decimal("0.049"), 1)]  # fmt: skip
    assert series[(ids["users"], "bob")] == [(D2, 0, 0, Decimal("0.05"), 1)]
    # counted from the budget's creation (D2 noon): r3's earlier failed call is not in it
    assert series[(ids["g-b"], "g-b")] == [(D2, Decimal("0.001"), Decimal("0.001"),
                                            Decimal("0.499"), 0)]  # fmt: skip
    assert {budget for budget, _ in series} == {ids["week"], ids["users"], ids["g-b"]}


def test_filters_narrow_every_query(world: World) -> None:
    g_b = Filters(at(D1, 0), at(D3, 0), graph_id="g-b")
    [row] = world.dash.cost(world.a, g_b)
    assert (row.day, row.calls, row.priced_calls, row.cost_usd) == (D2, 2, 1, Decimal("0.001"))
    bob = Filters(at(D1, 0), at(D3, 0), user_id="bob")
    assert [r.calls for r in world.dash.errors(world.a, bob, by="user")] == [2]
    search = Filters(at(D1, 0), at(D3, 0), node_id="search")
    assert world.dash.cost(world.a, search) == []  # a tool node: no model calls
    assert [r.key for r in world.dash.latency(world.a, search)] == ["search"]
    large = Filters(at(D1, 0), at(D3, 0), model="m-large")
    [plan] = world.dash.latency(world.a, large)
    assert (plan.key, plan.calls, plan.p50_ms) == ("plan", 3, 200)
    assert [r.requested for r in world.dash.approvals(world.a, g_b)] == [2]  # r3's two


def _reference(start: datetime, end: datetime) -> dict[date, tuple[int, Decimal | None, int]]:
    """(calls, cost, errors) per day straight from the inserted rows of A."""
    out: dict[date, tuple[int, Decimal | None, int]] = {}
    for row in EVENTS_A:
        if not start <= row["created_at"] < end:
            continue
        calls, cost, errors = out.get(row["created_at"].date(), (0, None, 0))
        if row["cost_usd"] is not None and row["kind"] == "model":
            cost = (cost or Decimal(0)) + row["cost_usd"]
        out[row["created_at"].date()] = (calls + 1, cost, errors + (row["outcome"] == "error"))
    return out


def test_any_range_is_exact_whole_days_from_the_rollup_partial_days_from_events(
    world: World,
) -> None:
    rng = random.Random(7)
    ranges = [(at(D1, 0), at(D3, 0)), (at(D1, 10, 30), at(D3, 1)), (at(D2, 9, 1), at(D2, 23))]
    for _ in range(12):
        start = at(D1, 0) + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        ranges.append((start, start + timedelta(minutes=rng.randrange(1, 2 * 24 * 60))))
    for start, end in ranges:
        expected = _reference(start, end)
        f = Filters(start, end)
        errors = {r.key: (r.calls, r.errors) for r in world.dash.errors(world.a, f, by="day")}
        assert errors == {day: (calls, err) for day, (calls, _, err) in expected.items()}
        costs = {r.day: r.cost_usd for r in world.dash.cost(world.a, f, by=("day",))}
        assert costs == {d: c for d, (_, c, _) in expected.items() if d in costs}, (start, end)


def test_drill_down_to_the_runs_behind_a_point(world: World) -> None:
    def runs(point: Point) -> list[str]:
        return [r.run_id for r in world.dash.runs_behind(world.a, TWO_DAYS, point)]

    [r1] = world.dash.runs_behind(world.a, TWO_DAYS, Point(day=D1))
    assert (r1.run_id, r1.rows, r1.cost_usd, r1.user_id) == ("r1", 4, Decimal("0.033"), "alice")
    assert runs(Point(day=D2, outcome="error")) == ["r3"]
    assert runs(Point(model="m-small")) == ["r3", "r2"]  # newest first
    assert runs(Point.at("node", "search")) == ["r1"]
    assert runs(Point("approvals", tier="admin")) == ["r2", "r1"]
    assert runs(Point("approvals", decided_by="carol", status="rejected")) == ["r3"]


def test_a_clicked_figure_point_drills_down_to_its_runs(world: World) -> None:
    figure = cost_figure(world.dash.cost(world.a, TWO_DAYS))
    clicked = figure.data[0].customdata[0]  # D1, m-large
    point = point_from_customdata(clicked)
    assert point == Point(day=D1, model="m-large")
    assert [r.run_id for r in world.dash.runs_behind(world.a, TWO_DAYS, point)] == ["r1"]
    bars = latency_figure(world.dash.latency(world.a, TWO_DAYS), "node")
    assert [t.name for t in bars.data] == ["p50", "p95", "p99"]
    assert point_from_customdata(bars.data[0].customdata[1]) == Point(node_id="plan")


def test_filters_and_points_refuse_what_they_cannot_mean() -> None:
    with pytest.raises(UserError, match="timezone-aware"):
        Filters(datetime(2026, 3, 2), datetime(2026, 3, 3))
    with pytest.raises(UserError, match="empty"):
        Filters(at(D2, 0), at(D1, 0))
    with pytest.raises(UserError, match="do not apply"):
        Point("approvals", model="m-large")
    last = Filters.last_days(7, now=at(D3, 15))
    assert (last.start, last.end) == (at(D3, 0) - timedelta(days=6), at(D3, 0) + timedelta(days=1))


def test_unknown_grouping_is_a_user_error(world: World) -> None:
    with pytest.raises(UserError, match="cannot group"):
        world.dash.errors(world.a, TWO_DAYS, by="workspace")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="cannot group"):
        world.dash.approvals(world.a, TWO_DAYS, by="model")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="cannot group"):
        world.dash.cost(world.a, TWO_DAYS, by=("day", "error_kind"))  # type: ignore[list-item]


def test_the_store_file_is_in_the_folder_it_was_given(tmp_path: Path) -> None:
    with studio_at(tmp_path) as studio:
        with AnalyticsStore(studio.engine, tmp_path / "sub" / "analytics.duckdb") as store:
            assert store.refresh() is not None
        assert (tmp_path / "sub" / "analytics.duckdb").exists()
        assert not list((tmp_path / "sub").glob(".analytics-*.csv"))  # staging files removed
