"""The table view, CSV and Parquet exports and the figure builders, on rows made by hand."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from analytics import export, figures
from analytics.rows import (
    ApprovalRow,
    ApproverRow,
    BudgetBurnRow,
    CacheRow,
    CostRow,
    ErrorRow,
    LatencyRow,
    Point,
    RunRef,
)

D = date(2026, 3, 2)
COST = [
    CostRow(D, None, "alice", "m-large", None, 3, 3, 0, Decimal("0.033"), 3000, 300, 100),
    CostRow(D, None, "bob", "m-small", None, 1, 0, 1, None, None, None, None),
    CostRow(D, None, "carol", "m-tiny", None, 1, 1, 0, Decimal("1E-9"), 1, 0, 0),
]


def test_csv_and_text_table_keep_unknown_values_unknown() -> None:
    lines = export.to_csv(COST, CostRow).splitlines()
    assert lines[0] == ",".join(export.columns(CostRow))
    assert lines[2] == "2026-03-02,,bob,m-small,,1,0,1,,,,"
    assert lines[3].split(",")[8] == "0.000000001"  # never 1E-9
    text = export.text_table(COST, CostRow).splitlines()
    assert text[3].split()[-4:] == ["-", "-", "-", "-"]
    assert export.text_table([], CostRow) == "no rows"


def test_parquet_has_typed_columns_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "cost.parquet"
    path.write_bytes(export.to_parquet(COST, CostRow))
    con = duckdb.connect()
    types = dict(
        con.execute(f"SELECT column_name, column_type FROM (DESCRIBE '{path}')").fetchall()
    )
    assert (types["day"], types["cost_usd"], types["calls"]) == ("DATE", "DECIMAL(38,9)", "BIGINT")
    rows = con.execute(f"SELECT user_id, cost_usd, input_tokens FROM '{path}'").fetchall()
    assert rows == [("alice", Decimal("0.033"), 3000), ("bob", None, None),
                    ("carol", Decimal("0.000000001"), 1)]  # fmt: skip
    path.write_bytes(export.to_parquet([], CostRow))
    assert con.execute(f"SELECT count(*) FROM '{path}'").fetchall() == [(0,)]


def test_mixed_keys_export_as_text(tmp_path: Path) -> None:
    rows = [LatencyRow(D, 2, 1.0, 2.0, 3.0, 1.5, None, None), LatencyRow("plan", 1, 1, 1, 1, 1,
                                                                           None, None)]  # fmt: skip
    path = tmp_path / "lat.parquet"
    path.write_bytes(export.to_parquet(rows, LatencyRow))
    keys = duckdb.connect().execute(f"SELECT key FROM '{path}'").fetchall()
    assert keys == [("2026-03-02",), ("plan",)]
    with pytest.raises(TypeError):
        export.columns(dict)


def test_every_figure_builds_and_says_when_it_is_empty() -> None:
    at = datetime(2026, 3, 2, 10)
    built = [
        figures.cost_figure(COST, "user"),
        figures.tokens_figure(COST),
        figures.latency_figure([LatencyRow("plan", 2, 1, 2, 3, 1.5, None, None)]),
        figures.errors_figure([ErrorRow("plan", 4, 2, 1, 1, 0, 0, 0, 0, 0.25, 0.25)]),
        figures.cache_figure([CacheRow(D, 4, 1, 0.25, Decimal("0.5"))]),
        figures.budget_figure([BudgetBurnRow("b", "user", "alice", "day", Decimal(1), D,
                                             Decimal("0.2"), Decimal("0.2"), Decimal("0.8"), 0)]),
        figures.approvals_figure([ApprovalRow("admin", 2, 0, 1, 1, 0, 0, 0, 0, 0.5, 0.5, 0,
                                              60.0, 90.0)]),
        figures.approvers_figure([ApproverRow("bob", 2, 2, 0, 0, 0, 60.0, 60.0)]),
    ]  # fmt: skip
    assert all(f.data for f in built)
    assert [t.name for t in built[0].data] == ["alice", "bob", "carol"]
    assert built[0].data[1].y == (None,)  # unknown cost is not drawn as 0
    empty = figures.cost_figure([])
    assert not empty.data and "no data" in empty.layout.annotations[0].text
    assert RunRef("r", "g", "u", 1, None, at, at).cost_usd is None


def test_clicked_points_map_back_to_drill_down_points() -> None:
    cost = figures.cost_figure(COST)
    assert figures.point_from_customdata(cost.data[0].customdata[0]) == Point(
        day=D, user_id="alice", model="m-large"
    )
    approvers = figures.approvers_figure([ApproverRow("bob", 2, 2, 0, 0, 0, 60.0, 60.0)])
    point = figures.point_from_customdata(approvers.data[0].customdata[0])
    assert point == Point("approvals", decided_by="bob")
    zero, one = Decimal(0), Decimal(1)
    row = BudgetBurnRow("b", "graph", "g-a", "day", one, D, zero, zero, one, 0)
    burn = figures.budget_figure([row])
    assert figures.point_from_customdata(burn.data[0].customdata[0]) == Point(day=D, graph_id="g-a")
