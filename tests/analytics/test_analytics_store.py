"""The DuckDB store: incremental loads, crashes mid-load, approvals that change, a source
that starts over, the file lock, compaction, and reads racing a load."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Engine, delete, update

from analytics import store as store_module
from analytics.db import migrate as migrate_analytics
from analytics.store import AnalyticsStore, AnalyticsUnavailable
from analytics.tables import UsageEvent
from graphs.db import make_engine
from graphs.db import migrate as migrate_graphs
from graphs.tables import Approval
from tests.analytics.dashboard_world import (
    D1,
    D2,
    EVENTS_A,
    EVENTS_B,
    WS_A,
    WS_B,
    add_approval,
    add_events,
    add_run,
    at,
    event,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """The studio database with the `graphs` and `analytics` tables (real SQLite file)."""
    db = make_engine(f"sqlite:///{tmp_path / 'studio.db'}")
    migrate_graphs(db)
    migrate_analytics(db)
    return db


def totals(store: AnalyticsStore) -> tuple[int, int, int, int]:
    """(events, distinct event ids, rollup calls, max id) — read in one snapshot."""
    [row] = store.fetch(
        "SELECT (SELECT count(*) FROM events), (SELECT count(DISTINCT event_id) FROM events),"
        " (SELECT coalesce(sum(calls), 0) FROM daily), (SELECT max(event_id) FROM events)"
    )
    return row


def test_new_rows_appear_after_refresh_and_nothing_twice(engine: Engine, tmp_path: Path) -> None:
    add_events(engine, EVENTS_A[:4])
    with AnalyticsStore(engine, tmp_path / "a.duckdb", batch_rows=3) as store:
        assert store.refresh().events == 4  # type: ignore[union-attr]
        add_events(engine, EVENTS_A[4:] + EVENTS_B)
        report = store.refresh()
        assert report is not None and report.events == len(EVENTS_A) - 4 + len(EVENTS_B)
        assert store.refresh() == store_module.LoadReport(0, 0, pytest.approx(0, abs=5), False)
        n = len(EVENTS_A + EVENTS_B)
        assert totals(store)[:3] == (n, n, n)
    with AnalyticsStore(engine, tmp_path / "a.duckdb") as reopened:  # the copy persists
        assert reopened.refresh().events == 0  # type: ignore[union-attr]
        assert totals(reopened)[0] == n


def test_max_rows_bounds_one_refresh(engine: Engine) -> None:
    add_events(engine, EVENTS_A)
    with AnalyticsStore(engine, None, batch_rows=2) as store:
        first = store.refresh(max_rows=4)
        assert first is not None and (first.events, first.behind) == (4, True)
        assert store.refresh().events == len(EVENTS_A) - 4  # type: ignore[union-attr]


def test_hostile_text_survives_the_staging_file_and_empty_names_are_no_names(
    engine: Engine,
) -> None:
    odd = ["a,b", 'say "hi"', "line\nbreak", "crlf\r\nx", "ünï☃de", "'; DROP TABLE events;--", ""]
    add_events(engine, [event(WS_A, "r", at(D1, 1), node_id=name or "n", model=name or None,
                              error_kind=name) for name in odd])  # fmt: skip
    with AnalyticsStore(engine, None) as store:
        store.refresh()
        rows = store.fetch("SELECT node_id, model, error_kind FROM events ORDER BY event_id")
    assert [r[0] for r in rows] == [name or "n" for name in odd]
    assert [r[1] for r in rows] == [name or None for name in odd]
    assert rows[-1][2] is None  # an empty optional name is read as no name


def test_an_error_mid_load_leaves_nothing_and_the_next_refresh_loads_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_events(engine, EVENTS_A)
    with AnalyticsStore(engine, None, batch_rows=4) as store:
        real = AnalyticsStore._set_meta
        calls = []

        def failing(self: AnalyticsStore, key: str, value: object) -> None:
            calls.append(key)
            if len(calls) == 2:  # inside the second batch, after its rows were inserted
                raise OSError("disk full")
            real(self, key, value)

        monkeypatch.setattr(AnalyticsStore, "_set_meta", failing)
        with pytest.raises(OSError, match="disk full"):
            store.refresh()
        assert totals(store)[:3] == (4, 4, 4)  # the first batch only, rollup included
        monkeypatch.setattr(AnalyticsStore, "_set_meta", real)
        store.refresh()
        n = len(EVENTS_A)
        assert totals(store) == (n, n, n, n)


CRASHING_LOADER = """
import os, signal, sys
from pathlib import Path
from sqlalchemy import create_engine
from analytics.store import AnalyticsStore

seen = []
real = AnalyticsStore._set_meta
def dying(self, key, value):
    seen.append(key)
    if len(seen) == 3:  # the third batch's rows and rollup are written, not committed
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, key, value)
AnalyticsStore._set_meta = dying
engine = create_engine("sqlite:///" + sys.argv[1])
AnalyticsStore(engine, Path(sys.argv[2]), batch_rows=2).refresh()
"""


def test_sigkill_mid_load_then_restart_has_no_duplicates_and_no_gaps(
    engine: Engine, tmp_path: Path
) -> None:
    add_events(engine, EVENTS_A + EVENTS_B)
    path = tmp_path / "a.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASHING_LOADER), str(tmp_path / "studio.db"),
         str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == -9, done.stderr
    with AnalyticsStore(engine, path, batch_rows=2) as store:
        assert totals(store)[:3] == (4, 4, 4)  # two committed batches survived
        store.refresh()
        n = len(EVENTS_A + EVENTS_B)
        assert totals(store) == (n, n, n, n)
        [(cost,)] = store.fetch("SELECT sum(cost_usd) FROM daily WHERE workspace_id = ?", [WS_A])
        assert cost == sum(e["cost_usd"] or 0 for e in EVENTS_A)


def test_decided_approvals_are_updated_late_ones_found_gone_ones_dropped(
    engine: Engine, tmp_path: Path
) -> None:
    add_run(engine, WS_A, "r1", "g-a", "alice")
    first = add_approval(engine, WS_A, "r1", at(D1, 9))
    gone = add_approval(engine, WS_A, "r1", at(D1, 9, 5))
    with AnalyticsStore(engine, tmp_path / "a.duckdb") as store:
        assert store.refresh().approvals == 2  # type: ignore[union-attr]
        with engine.begin() as conn:
            conn.execute(update(Approval).where(Approval.approval_id == first).values(
                status="approved", decision="approve", decided_by="bob",
                decided_at=at(D1, 9, 1)))  # fmt: skip
            conn.execute(delete(Approval).where(Approval.approval_id == gone))
        late = add_approval(engine, WS_A, "r1", at(D1, 9) - timedelta(minutes=5))  # committed late
        store.refresh()
        rows = store.fetch("SELECT approval_id, status, decided_by FROM approvals ORDER BY 1")
        assert sorted(rows) == sorted([(first, "approved", "bob"), (late, "pending", None)])
        assert store.refresh().approvals == 0  # type: ignore[union-attr]  # nothing new
        assert len(store.fetch("SELECT * FROM approvals")) == 2


def test_a_source_that_starts_over_is_loaded_again(engine: Engine) -> None:
    add_events(engine, EVENTS_A)
    with AnalyticsStore(engine, None) as store:
        store.refresh()
        with engine.begin() as conn:  # emptied (or restored from an old backup)
            conn.execute(delete(UsageEvent))  # new ids start at 1 again
        add_events(engine, EVENTS_B)
        store.refresh()
        assert totals(store)[:3] == (len(EVENTS_B),) * 3
        assert store.fetch("SELECT DISTINCT workspace_id FROM events") == [(WS_B,)]


def test_an_outdated_file_is_rebuilt(engine: Engine, tmp_path: Path) -> None:
    add_events(engine, EVENTS_A)
    path = tmp_path / "a.duckdb"
    with AnalyticsStore(engine, path) as store:
        store.refresh()
    con = duckdb.connect(str(path))
    con.execute("UPDATE store_meta SET value = '0' WHERE key = 'schema'")
    con.execute("INSERT INTO events SELECT * FROM events")  # junk an old version left
    con.close()
    with AnalyticsStore(engine, path) as store:
        assert totals(store)[0] == 0
        store.refresh()
        assert totals(store)[:3] == (len(EVENTS_A),) * 3


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_a_file_held_by_another_process_is_refused_but_a_snapshot_works(
    engine: Engine, tmp_path: Path
) -> None:
    add_events(engine, EVENTS_A + EVENTS_B)
    path = tmp_path / "a.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AnalyticsUnavailable, match="held by another process"):
            AnalyticsStore(engine, path)
        with AnalyticsStore.snapshot(engine, WS_B) as snapshot:
            snapshot.refresh()
            assert snapshot.fetch("SELECT DISTINCT workspace_id FROM events") == [(WS_B,)]
            assert totals(snapshot)[0] == len(EVENTS_B)
    finally:
        holder.kill()
        holder.wait()


def test_a_snapshot_holds_one_workspace_from_its_start(engine: Engine) -> None:
    add_events(engine, EVENTS_A + EVENTS_B)
    add_run(engine, WS_A, "r1", "g-a", "alice")
    add_run(engine, WS_B, "rb1", "g-secret-b", "mallory-b")
    add_approval(engine, WS_A, "r1", at(D1, 9))
    add_approval(engine, WS_B, "rb1", at(D2, 9))
    with AnalyticsStore.snapshot(engine, WS_A, since=at(D2, 0)) as snapshot:
        snapshot.refresh()
        rows = snapshot.fetch("SELECT workspace_id, min(created_at) FROM events GROUP BY 1")
        assert rows == [(WS_A, at(D2, 9).replace(tzinfo=None))]
        assert snapshot.fetch("SELECT count(*) FROM approvals") == [(0,)]  # A's is before D2


def test_compaction_keeps_totals_and_shrinks_the_rollup(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_COMPACT_MIN_ROWS", 5)
    with AnalyticsStore(engine, None) as store:
        for n in range(12):  # one call per refresh, all with the same keys
            add_events(engine, [event(WS_A, "r", at(D1, 1, n), cost_usd=1)])
            store.refresh()
        [(rows, calls, cost)] = store.fetch("SELECT count(*), sum(calls), sum(cost_usd) FROM daily")
    assert (calls, cost) == (12, 12)
    assert rows < 5


def test_reads_racing_a_load_always_see_events_and_rollup_agree(engine: Engine) -> None:
    add_events(engine, [event(WS_A, "r", at(D1, 0) + timedelta(seconds=n)) for n in range(1000)])
    with AnalyticsStore(engine, None, batch_rows=50) as store:
        seen: list[tuple[int, int, int, int]] = []
        failures: list[BaseException] = []
        loading = threading.Thread(target=store.refresh)
        loading.start()

        def read() -> None:
            try:
                while loading.is_alive():
                    seen.append(totals(store))
            except BaseException as exc:
                failures.append(exc)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for reader in readers:
            reader.start()
        loading.join()
        for reader in readers:
            reader.join()
        assert not failures
        assert all(events == distinct == calls for events, distinct, calls, _ in seen)
        assert totals(store)[:3] == (1000, 1000, 1000)
        assert store.refresh(wait=False) is not None


def test_a_closed_store_says_so(engine: Engine) -> None:
    store = AnalyticsStore(engine, None)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(AnalyticsUnavailable, match="closed"):
        store.fetch("SELECT 1")


def test_no_staging_file_is_left_behind(engine: Engine, tmp_path: Path) -> None:
    add_events(engine, EVENTS_A)
    with AnalyticsStore(engine, tmp_path / "a.duckdb") as store:
        store.refresh()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".csv")]
