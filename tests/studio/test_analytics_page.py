"""The dashboards (`/analytics`) with NiceGUI's `user` fixture, over real runs: the scripted
support agent run through the real run manager (approved, rejected and paused calls), in
workspace A (acme) and in workspace B (evil), then loaded into the page's DuckDB store.

Totals are checked against the studio database itself (`usage_events`), not against
numbers the page computed."""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest
from nicegui import ui
from nicegui.testing import User
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from analytics.tables import UsageEvent
from graphs.identity import Actor
from studio.context import Studio
from studio.pages.analytics import EMPTY
from studio.pages.analytics_data import usd
from studio.web_auth import SESSION_COOKIE
from tests.conftest import example
from tests.studio.web_fixtures import Seeded, seeded_studio, set_role

pytestmark = pytest.mark.nicegui_main_file("tests/studio/web_main.py")
PRICED, EVIL_MODEL = "scripted-1", "m-evil-secret"
# Names people and models choose reach the page: plotly must show them as text.
UNPRICED = 'mini <a href="http://evil.test/">click</a><b>bold</b>'
MINI = 'Support mini <img src=x onerror="alert(1)">'
T = TypeVar("T")


# --- the world: real runs in two workspaces --------------------------------------------


@dataclass(frozen=True)
class World:
    seeded: Seeded
    runs: dict[str, str]  # name → run id
    graphs: dict[str, str]  # name → graph id


def support(name: str, model: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("support_agent"))
    doc["name"] = name
    doc["nodes"][0]["config"]["provider_config"]["model"] = model
    return doc


def pending(studio: Studio, actor: Actor, run_id: str) -> str:
    [approval] = studio.manager.approvals.list(actor, run_id=run_id)
    return approval.approval_id


def settle(studio: Studio, actor: Actor, run_id: str, status: str) -> None:
    assert studio.manager.wait(actor, run_id, timeout_s=60).status == status


def start(studio: Studio, actor: Actor, version_id: str, order: str) -> str:
    run_id = studio.manager.start_run(actor, version_id=version_id, input={"order_id": order})
    settle(studio, actor, run_id, "waiting_approval")
    return run_id


def build_world(seeded: Seeded) -> World:
    """A (acme): ed's priced support run (e-mail approved, refund rejected: it ends), ed's
    second run paused at the e-mail, ad's run of an unpriced model, paused. B (evil):
    mallory's run of a model whose name must never show in A."""
    ed, ad, ap, mallory = (seeded.actor(n) for n in ("ed", "ad", "ap", "mallory"))
    with seeded_studio(seeded) as studio:
        studio.budgets.set_price(ad, model=PRICED, provider="scripted",
                                 input_per_mtok="1.5", output_per_mtok="6")  # fmt: skip
        library = studio.manager.library
        priced = library.create(ed, example("support_agent"))
        mini = library.create(ed, support(MINI, UNPRICED))
        evil = library.create(mallory, support("Evil support", EVIL_MODEL))
        runs = {"ed1": start(studio, ed, priced.version_id, "A-1001")}
        studio.manager.decide(ap, pending(studio, ap, runs["ed1"]), "approve")
        settle(studio, ed, runs["ed1"], "waiting_approval")  # now the refund (admin tier)
        studio.manager.decide(ap, pending(studio, ap, runs["ed1"]), "reject", feedback="No.")
        settle(studio, ed, runs["ed1"], "succeeded")
        runs["ed2"] = start(studio, ed, priced.version_id, "A-1002")
        runs["ad1"] = start(studio, ad, mini.version_id, "A-2001")
        runs["evil"] = start(studio, mallory, evil.version_id, "E-1")
    graphs = {"priced": priced.graph_id, "mini": mini.graph_id, "evil": evil.graph_id}
    return World(seeded, runs, graphs)


@pytest.fixture(scope="module")
def world_template(seeded_template: Seeded, tmp_path_factory: pytest.TempPathFactory) -> World:
    data_dir = tmp_path_factory.mktemp("analytics-world") / "data"
    shutil.copytree(seeded_template.data_dir, data_dir)
    return build_world(replace(seeded_template, data_dir=data_dir))


@pytest.fixture
def world(
    world_template: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    data_dir = tmp_path / "data"
    shutil.copytree(world_template.seeded.data_dir, data_dir)
    monkeypatch.setenv("STUDIO_TEST_DATA_DIR", str(data_dir))
    yield replace(world_template, seeded=replace(world_template.seeded, data_dir=data_dir))


def model_totals(data_dir: Path, workspace_id: str = "acme", **where: str) -> dict[str, Any]:
    """Model-call totals straight from the studio database (exact decimals)."""
    query = select(UsageEvent).where(
        UsageEvent.kind == "model", UsageEvent.workspace_id == workspace_id,
        *(getattr(UsageEvent, column) == value for column, value in where.items()),
    )  # fmt: skip
    engine = create_engine(f"sqlite:///{data_dir / 'studio.db'}")
    try:
        with Session(engine) as session:
            rows = list(session.scalars(query))
    finally:
        engine.dispose()
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    return {
        "calls": len(rows),
        "cost": sum(costs, Decimal(0)) if costs else None,
        "tokens_in": sum(r.input_tokens or 0 for r in rows),
    }


# --- page helpers ------------------------------------------------------------------------


def sign_in(user: User, seeded: Seeded, name: str) -> None:
    user.http_client.cookies.set(SESSION_COOKIE, seeded.session_cookie(name))


def one(user: User, marker: str) -> Any:
    return next(iter(user.find(marker=marker).elements))


def figure(user: User, marker: str) -> dict[str, Any]:
    plot = one(user, marker)
    assert isinstance(plot, ui.plotly)
    assert isinstance(plot.figure, dict)
    return plot.figure


def table_rows(user: User) -> list[dict[str, Any]]:
    table = one(user, "chart-table")
    assert isinstance(table, ui.table)
    return list(table.rows)


async def open_dashboards(user: User, seeded: Seeded, name: str = "ed") -> None:
    sign_in(user, seeded, name)
    await user.open("/analytics")
    await user.should_see(marker="chart-table", retries=100)


def _has(user: User, marker: str) -> bool:
    try:
        return bool(user.find(marker=marker).elements)
    except AssertionError:
        return False


def models(user: User) -> list[str] | None:
    """The models in the table (None while it is not there); [] for "no rows"."""
    if _has(user, "no-rows"):
        return []
    return [row["model"] for row in table_rows(user)] if _has(user, "chart-table") else None


async def until(check: Callable[[], T | None], timeout_s: float = 10.0) -> T:
    """Poll `check` while the page's event loop runs (answers arrive asynchronously)."""
    for _ in range(int(timeout_s / 0.05)):
        result = check()
        if result is not None and result is not False:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {check}")


async def switch_tab(user: User, chart: str) -> None:
    tabs = next(e for e in user.find(ui.tabs).elements)
    tabs.set_value(chart)
    await user.should_see(marker=f"chart-{chart}-0", retries=200)


def escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cost_trace_totals(fig: dict[str, Any]) -> dict[str, list[float | None]]:
    return {trace["name"]: trace["y"] for trace in fig["data"]}


# --- tests -------------------------------------------------------------------------------


async def test_cost_dashboard_shows_the_real_runs_and_unknown_cost_as_missing(
    world: World, user: User
) -> None:
    await open_dashboards(user, world.seeded)
    totals = model_totals(world.seeded.data_dir)
    priced = model_totals(world.seeded.data_dir, model=PRICED)
    assert totals["calls"] == 8 and priced["calls"] == 6  # ed1: 4 calls, ed2: 2, ad1: 2
    bars = cost_trace_totals(figure(user, "chart-cost-0"))
    assert set(bars) == {PRICED, escaped(UNPRICED)}  # plotly shows it as text
    assert sum(bars[PRICED]) == pytest.approx(float(priced["cost"]), abs=1e-12)
    assert bars[escaped(UNPRICED)] == [None]  # unknown: no bar, never a $0 bar
    tokens = {t["name"]: sum(t["y"]) for t in figure(user, "chart-cost-1")["data"]}
    assert tokens["input"] == totals["tokens_in"]
    summary = str(one(user, "chart-summary").text)
    assert f"Cost {usd(totals['cost'])}" in summary
    assert "8 model calls" in summary and "2 of unknown cost" in summary
    by_model = {row["model"]: row for row in table_rows(user)}
    assert by_model[UNPRICED]["cost_usd"] == "—" and by_model[UNPRICED]["calls"] == "2"
    assert Decimal(by_model[PRICED]["cost_usd"]) == priced["cost"]
    assert EVIL_MODEL not in str([figure(user, "chart-cost-0"), table_rows(user)])


async def test_a_run_that_ends_while_the_page_is_open_counts_after_a_refresh(
    world: World, user: User
) -> None:
    await open_dashboards(user, world.seeded)
    assert "8 model calls" in str(one(user, "chart-summary").text)
    ed = world.seeded.actor("ed")
    with seeded_studio(world.seeded) as studio:  # another process of the same database
        version = studio.manager.library.head(ed, world.graphs["priced"]).version_id
        start(studio, ed, version, "A-3001")  # two more model calls, then the e-mail waits
    user.find(marker="refresh").click()
    await user.should_see(marker="chart-summary", content="10 model calls", retries=100)
    totals = model_totals(world.seeded.data_dir)
    assert totals["calls"] == 10
    assert f"Cost {usd(totals['cost'])}" in str(one(user, "chart-summary").text)


async def test_every_chart_renders_from_the_runs(world: World, user: User) -> None:
    await open_dashboards(user, world.seeded)
    one(user, "tab-latency")  # the tabs are there
    for chart, check in (
        ("latency", lambda f: {t["name"] for t in f["data"]} == {"p50", "p95", "p99"}),
        ("errors", lambda f: {t["name"] for t in f["data"]} == {"error rate", "retry rate"}),
        ("cache", lambda f: f["data"][0]["name"] == "saved USD"),
        ("approvals", lambda f: sum(sum(t["y"]) for t in f["data"]) == 4),
        ("approvers", lambda f: f["data"][0]["x"] == ["ap@example.com"]),
    ):
        await switch_tab(user, chart)
        assert check(figure(user, f"chart-{chart}-0")), chart
    await switch_tab(user, "approvals")
    summary = str(one(user, "chart-summary").text)
    # ed1: e-mail approved, then refund rejected; ed2 and ad1: the e-mail pending
    assert "4 requested" in summary and "2 pending" in summary
    assert "approved 50%" in summary and "rejected 50%" in summary
    waits = figure(user, "chart-approvals-1")  # time to decision
    assert {t["name"] for t in waits["data"]} == {"p50", "p95"}
    rows = {row["key"]: row for row in table_rows(user)}
    assert rows["admin"]["rejected"] == "1" and rows["confirm"]["approved"] == "1"
    await switch_tab(user, "latency")
    one(user, "chart-by").set_value("graph")  # graph ids are shown by name

    def shown() -> set[str]:
        return set(figure(user, "chart-latency-0")["data"][0]["x"])

    await until(lambda: shown() != {"agent"} or None)  # by node, before
    assert shown() == {"Support agent", escaped(MINI)}


async def test_filters_change_the_rows(world: World, user: User) -> None:
    await open_dashboards(user, world.seeded)
    assert set(models(user) or []) == {PRICED, UNPRICED}
    one(user, "filter-model").set_value(UNPRICED)
    await until(lambda: models(user) == [UNPRICED])
    one(user, "filter-model").set_value("")
    one(user, "filter-user_id").set_value(world.seeded.users["ed"])
    await until(lambda: models(user) == [PRICED])
    one(user, "filter-graph_id").set_value(world.graphs["mini"])  # ed never ran it
    await until(lambda: models(user) == [])
    one(user, "filter-user_id").set_value("")
    await until(lambda: models(user) == [UNPRICED])
    one(user, "filter-node_id").set_value("done")  # the output node calls no model
    await until(lambda: models(user) == [])
    options = one(user, "filter-graph_id").options
    assert world.graphs["evil"] not in options and MINI in options.values()
    assert set(one(user, "filter-model").options) == {"", PRICED, UNPRICED}


async def test_custom_dates_and_bad_dates(world: World, user: User) -> None:
    await open_dashboards(user, world.seeded)
    one(user, "range").set_value("custom")
    await user.should_see(marker="range-apply", retries=100)
    one(user, "range-since").set_value("2020-01-01")
    one(user, "range-until").set_value("2020-01-31")
    user.find(marker="range-apply").click()
    await until(lambda: models(user) == [])
    assert "2020-01-01 00:00 to 2020-02-01 00:00 UTC" in one(user, "analytics-note").text
    one(user, "range-until").set_value("not a day")
    user.find(marker="range-apply").click()
    await user.should_see("To must be a date like 2026-03-01", retries=100)
    one(user, "range").set_value("24h")
    await until(lambda: set(models(user) or []) == {PRICED, UNPRICED})


async def test_clicking_a_point_lists_the_runs_behind_it(world: World, user: User) -> None:
    await open_dashboards(user, world.seeded)
    cost = figure(user, "chart-cost-0")
    priced = next(t for t in cost["data"] if t["name"] == PRICED)
    user.find(marker="chart-cost-0").trigger(
        "plotly_click", {"customdata": priced["customdata"][0]}
    )
    await user.should_see(marker="drill-title", content="Runs behind this point: 2", retries=100)
    for name in ("ed1", "ed2"):
        row = one(user, f"drill-run-{world.runs[name]}")
        links = [e for e in row.descendants() if isinstance(e, ui.link)]
        assert links[0].props["href"] == f"/runs/{world.runs[name]}"
        spent = model_totals(world.seeded.data_dir, run_id=world.runs[name], model=PRICED)
        texts = [str(getattr(e, "text", "")) for e in row.descendants()]
        assert f"{spent['calls']} calls · {usd(spent['cost'])}" in texts, texts
    assert not _has(user, f"drill-run-{world.runs['ad1']}")  # the unpriced model's run
    await switch_tab(user, "approvals")
    user.find(marker="chart-approvals-0").trigger(
        "plotly_click", {"customdata": {"source": "approvals", "tier": "admin"}}
    )
    await user.should_see(marker="drill-title", content="Runs behind this point: 1", retries=100)
    assert _has(user, f"drill-run-{world.runs['ed1']}")  # the one refund asked for
    assert not _has(user, f"drill-run-{world.runs['ed2']}")


async def test_forged_points_show_nothing_foreign(world: World, user: User) -> None:
    await open_dashboards(user, world.seeded, "mallory")  # admin of workspace B
    cost = figure(user, "chart-cost-0")
    assert [t["name"] for t in cost["data"]] == [EVIL_MODEL]
    assert {row["model"] for row in table_rows(user)} == {EVIL_MODEL}
    plot = user.find(marker="chart-cost-0")
    plot.trigger("plotly_click", {"customdata": cost["data"][0]["customdata"][0]})
    await user.should_see(marker=f"drill-run-{world.runs['evil']}", retries=100)
    one(user, "drill").clear()
    for forged in (
        {"source": "usage", "graph_id": world.graphs["priced"]},  # A's graph
        {"source": "usage", "model": PRICED},
    ):
        plot.trigger("plotly_click", {"customdata": forged})
        await user.should_see(
            marker="drill-title", content="Runs behind this point: 0", retries=100
        )
        one(user, "drill").clear()
    for bad in (
        {"source": "usage", "workspace_id": "acme"},  # not a field of a point
        {"source": "usage", "day": "not a day"},
        {"source": "approvals", "model": PRICED},  # approvals have no model
        {"source": "usage", "graph_id": {"$ne": None}},
        "usage",
    ):
        plot.trigger("plotly_click", {"customdata": bad})
    refused = "this point of the chart has no runs to show"
    await until(lambda: sum(refused in m for m in user.notify.messages) == 4 or None)
    assert any("do not apply to approvals" in m for m in user.notify.messages)
    assert not _has(user, "drill-title")
    user.find(marker="download-csv").click()
    exported = (await user.download.next(timeout=10)).content.decode()
    assert EVIL_MODEL in exported and PRICED not in exported and UNPRICED not in exported


async def test_exports_have_the_same_totals_as_the_database(world: World, user: User) -> None:
    await open_dashboards(user, world.seeded)
    totals = model_totals(world.seeded.data_dir)
    user.find(marker="download-csv").click()
    rows = list(csv.DictReader(io.StringIO((await user.download.next(timeout=10)).text)))
    assert sum(int(r["calls"]) for r in rows) == totals["calls"]
    assert sum(Decimal(r["cost_usd"]) for r in rows if r["cost_usd"]) == totals["cost"]
    assert [r["cost_usd"] for r in rows if r["model"] == UNPRICED] == [""]  # unknown, not 0
    user.find(marker="download-parquet").click()
    parquet = (await user.download.next(timeout=10)).content
    path = world.seeded.data_dir / "export.parquet"
    path.write_bytes(parquet)
    con = duckdb.connect()
    try:
        calls, cost, unknown = con.execute(
            "SELECT sum(calls), sum(cost_usd), count(*) FILTER (cost_usd IS NULL)"
            " FROM read_parquet(?)",
            [str(path)],
        ).fetchone() or (None, None, None)
    finally:
        con.close()
    assert (calls, Decimal(cost), unknown) == (totals["calls"], totals["cost"], 1)


@pytest.mark.parametrize("name", ["vi", "ap"])
async def test_roles_without_analytics_read_are_refused(
    world: World, user: User, name: str
) -> None:
    sign_in(user, world.seeded, name)
    await user.open("/analytics")
    await user.should_see(marker="no-access", retries=100)
    assert not _has(user, "chart") and not _has(user, "chart-table")
    assert not _has(user, "filter-graph_id")  # not even the names of graphs or people
    assert any("'analytics:read'" in m for m in user.notify.messages), user.notify.messages
    await user.open("/graphs")
    await user.should_see(MINI, retries=100)
    nav = {e.props.get("href") for e in user.find(ui.link).elements}
    assert "/graphs" in nav and "/analytics" not in nav  # no link to the dashboards


async def test_a_role_revoked_while_the_page_is_open_stops_the_answers(
    world: World, user: User
) -> None:
    await open_dashboards(user, world.seeded)
    set_role(world.seeded, "ed", "viewer")
    user.find(marker="refresh").click()
    await user.should_see(marker="no-access", retries=100)
    assert not _has(user, "chart") and not _has(user, "chart-table")  # what it showed is gone
    assert any("'analytics:read'" in m for m in user.notify.messages), user.notify.messages


async def test_empty_workspace_says_how_to_get_data(seeded: Seeded, user: User) -> None:
    sign_in(user, seeded, "ed")
    await user.open("/analytics")
    await user.should_see(EMPTY, retries=100)
    assert one(user, "analytics-empty").visible
    assert not _has(user, "chart-table")
    assert (seeded.data_dir / "analytics.duckdb").exists()


@pytest.fixture
def held_elsewhere(world: World) -> Iterator[Path]:
    """Another process holds the data folder's `analytics.duckdb` (DuckDB locks the file)."""
    path = world.seeded.data_dir / "analytics.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]);"
         " print('held', flush=True); time.sleep(120)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield path
    finally:
        holder.kill()
        holder.wait()


async def test_the_studio_still_serves_when_the_analytics_file_is_held(
    world: World, held_elsewhere: Path, user: User
) -> None:
    unavailable = "The dashboards are unavailable"
    sign_in(user, world.seeded, "ed")
    await user.open("/analytics")
    await user.should_see(unavailable, retries=100)
    await user.should_see("held by another process", retries=10)
    assert not _has(user, "chart")
    await user.open("/graphs")  # everything else works
    await user.should_see(MINI, retries=100)
    sign_in(user, world.seeded, "vi")  # and someone without analytics:read learns nothing
    await user.open("/analytics")
    await user.should_see(marker="no-access", retries=100)
    await user.should_not_see(unavailable)
