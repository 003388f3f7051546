"""`studio analytics`, driven like an operator does: the local operator's workspace, an API
token's workspace (never another's), refusal without ``analytics:read``, exports, and a
server holding the DuckDB file at the same time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from graphs.headless import LOCAL_WORKSPACE
from studio.cli import main
from tests.analytics.dashboard_world import (
    EVENTS_A,
    SECRET_GRAPH,
    SECRET_MODEL,
    SECRET_USER,
    WS_A,
    WS_B,
    add_events,
    fill,
    members,
    studio_at,
)

RANGE = ["--since", "2026-03-02", "--until", "2026-03-04"]
A_MARKS = ("alice", "m-large", "m-small", "g-a", "0.033")
B_MARKS = (SECRET_MODEL, SECRET_GRAPH, SECRET_USER, "31.4159")
REPORTS = ("cost", "tokens", "latency", "errors", "cache", "budgets", "approvals", "approvers",
           "runs")  # fmt: skip


@dataclass
class Setup:
    db: Path
    tokens: dict[str, str]  # B's token with analytics:read, B's without, A's with


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("cli")
    with studio_at(folder) as studio:
        fill(studio)
        add_events(studio.engine, [{**row, "workspace_id": LOCAL_WORKSPACE} for row in EVENTS_A])
        people = members(studio)
        make = studio.tokens.create_token
        tokens = {
            "b": make(people[(WS_B, "admin")], name="dash", actions=["analytics:read"])[0],
            "b-no-read": make(people[(WS_B, "admin")], name="runs", actions=["run:read"])[0],
            "a": make(people[(WS_A, "admin")], name="dash", actions=["analytics:read"])[0],
        }
    yield Setup(folder / "studio.db", tokens)


def run(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    token: str | None = None,
) -> tuple[int, str, str]:
    with monkeypatch.context() as patch:
        if token is None:
            patch.delenv("STUDIO_TOKEN", raising=False)
        else:
            patch.setenv("STUDIO_TOKEN", token)
        rc = main(["analytics", *argv, "--db", str(setup.db)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_local_operator_sees_the_local_workspace_as_a_table(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, _ = run(setup, capsys, monkeypatch, "cost", *RANGE, "--by", "day,model")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["day", "graph_id", "user_id"]
    assert lines[2].split() == ["2026-03-02", "-", "-", "m-large", "-", "3", "3", "0", "0.033",
                                "3000", "300", "100"]  # fmt: skip
    assert lines[3].split()[8] == "0.001" and len(lines) == 4  # D3 is outside the range


def test_json_output_and_missing_usage_shown_as_missing(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, _ = run(setup, capsys, monkeypatch, "cost", "--since", "2026-03-03T08:00",
                     "--until", "2026-03-03T09:15", "--by", "user", "--json")  # fmt: skip
    assert rc == 0
    [row] = json.loads(out)
    assert row["user_id"] == "bob" and row["usage_missing_calls"] == 1
    assert row["cost_usd"] is None and row["input_tokens"] is None
    rc, out, _ = run(setup, capsys, monkeypatch, "cost", "--since", "2026-03-03T08:00",
                     "--until", "2026-03-03T09:15", "--by", "user")  # fmt: skip
    assert out.splitlines()[2].split()[-4:] == ["-", "-", "-", "-"]


@pytest.mark.parametrize("report", REPORTS)
def test_a_token_sees_only_its_own_workspace(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, report: str
) -> None:
    rc, out_b, err = run(setup, capsys, monkeypatch, report, *RANGE, "--json",
                         token=setup.tokens["b"])  # fmt: skip
    assert rc == 0, err
    assert not [m for m in A_MARKS if m in out_b]
    rc, out_a, err = run(setup, capsys, monkeypatch, report, *RANGE, "--json",
                         token=setup.tokens["a"])  # fmt: skip
    assert rc == 0, err
    assert json.loads(out_a), "A has rows for every report"
    assert not [m for m in B_MARKS if m in out_a]


def test_b_sees_its_own_numbers(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, _ = run(setup, capsys, monkeypatch, "cost", *RANGE, "--by", "", "--json",
                     token=setup.tokens["b"])  # fmt: skip
    assert rc == 0
    [total] = json.loads(out)
    assert (total["calls"], total["cost_usd"]) == (3, "31.4159")


def test_without_analytics_read_the_cli_refuses_and_prints_no_rows(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, err = run(setup, capsys, monkeypatch, "cost", *RANGE,
                       token=setup.tokens["b-no-read"])  # fmt: skip
    assert rc == 2 and out == ""
    assert "analytics:read" in err
    rc, out, err = run(setup, capsys, monkeypatch, "cost", *RANGE, token="not-a-token")
    assert rc == 2 and out == "" and "not valid" in err


def test_exports_and_figure_files(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    csv_file, parquet, html = tmp_path / "c.csv", tmp_path / "c.parquet", tmp_path / "c.html"
    rc, _, err = run(setup, capsys, monkeypatch, "latency", *RANGE, "--csv", str(csv_file),
                     "--parquet", str(parquet), "--figure", str(html), "--ttft")  # fmt: skip
    assert rc == 0, err
    assert csv_file.read_text().splitlines()[0].startswith("key,calls,p50_ms,p95_ms,p99_ms")
    rows = (
        duckdb.connect()
        .execute(f"SELECT key, calls, ttft_p50_ms FROM '{parquet}' ORDER BY 1")
        .fetchall()
    )
    assert rows == [("answer", 2, None), ("plan", 4, 45.0), ("search", 1, None)]
    assert "plotly" in html.read_text()[:5000].lower()


def test_drill_down_and_bad_options(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, _ = run(setup, capsys, monkeypatch, "runs", *RANGE, "--day", "2026-03-03",
                     "--outcome", "error", "--json")  # fmt: skip
    assert rc == 0 and [r["run_id"] for r in json.loads(out)] == ["r3"]
    rc, _, err = run(setup, capsys, monkeypatch, "cost", *RANGE, "--by", "day,workspace")
    assert rc == 2 and "--by takes" in err
    rc, _, err = run(setup, capsys, monkeypatch, "cost", "--since", "yesterday")
    assert rc == 2 and "--since must be" in err
    rc, _, err = run(setup, capsys, monkeypatch, "runs", *RANGE, "--figure", "x.html")
    assert rc == 2 and "has no figure" in err


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_the_cli_works_while_a_server_holds_the_analytics_file(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    held = setup.db.parent / "analytics.duckdb"  # another process owns it, as a server would
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(held)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rc, out, err = run(setup, capsys, monkeypatch, "errors", *RANGE, "--json")
        assert rc == 0, err
        assert {r["key"] for r in json.loads(out)} == {"plan", "answer", "search"}
    finally:
        holder.kill()
        holder.wait()
