"""The run hot path's database helpers: a `DriverStatement` (a Core statement compiled once and
run as plain SQL) must store and read back exactly what Core's own execution would; a
`KeptConnection` serializes its writers and recovers from a failed transaction."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, create_engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from components.sqlwrites import DriverStatement, KeptConnection
from graphs.db import make_engine, migrate
from graphs.tables import Graph, GraphVersion, Run

RUNS = cast(Table, Run.__table__)
WHEN = datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=UTC)
FINISH = (
    update(RUNS)
    .where(RUNS.c.run_id == bindparam("p_run_id"), or_(RUNS.c.status == "running"))
    .values(status=bindparam("p_status"), output=bindparam("p_output"), attempts=0)
)


def _run_row(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workspace_id": "acme",
        "graph_id": "g1",
        "version_id": "v1",
        "thread_id": f"run:{run_id}",
        "status": "running",
        "started_by": "alice",
        "input": {"text": "naïve 🚀 \u202e", "n": [1, 2.5, None]},
        "output": None,
        "error": None,
        "notify": {},
        "attempts": 2,
        "lease_owner": None,
        "lease_expires_at": None,
        "created_at": WHEN,
        "started_at": WHEN,
        "finished_at": None,
    }


@pytest.mark.parametrize("paramstyle", ["qmark", "named"])  # by position, and by name
def test_rows_written_and_returned_as_core_writes_and_reads_them(
    tmp_path: Path, paramstyle: str
) -> None:
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    engine = make_engine(url) if paramstyle == "qmark" else create_engine(url, paramstyle="named")
    assert engine.dialect.paramstyle == paramstyle
    migrate(engine)
    with Session(engine) as session:  # the run's graph and version (foreign keys)
        session.add(
            Graph(graph_id="g1", workspace_id="acme", name="G", created_by="alice", created_at=WHEN)
        )
        session.flush()
        session.add(
            GraphVersion(
                version_id="v1",
                graph_id="g1",
                workspace_id="acme",
                number=1,
                document={},
                document_hash="-",
                created_by="alice",
                created_at=WHEN,
            )
        )
        session.commit()
    fast = DriverStatement(insert(RUNS), engine.dialect, keys=[c.key for c in RUNS.c])
    with engine.begin() as conn:
        fast.execute(conn, _run_row("fast"))
        conn.execute(insert(RUNS), _run_row("core"))
    with engine.connect() as conn:
        rows = {r.run_id: r._asdict() for r in conn.execute(select(RUNS))}
    assert rows["fast"] == {**rows["core"], "run_id": "fast", "thread_id": "run:fast"}

    columns = [RUNS.c.run_id, RUNS.c.status, RUNS.c.input, RUNS.c.output, RUNS.c.created_at]
    finish = DriverStatement(FINISH.returning(*columns), engine.dialect, returning=columns)
    output = {"answer": "done ✓", "items": [{"a": 1}]}
    with engine.begin() as conn:
        changed, returned = finish.execute(
            conn, {"p_run_id": "fast", "p_status": "succeeded", "p_output": output}
        )
        core = conn.execute(
            FINISH.returning(*columns),
            {"p_run_id": "core", "p_status": "succeeded", "p_output": output},
        ).one()
        again = finish.execute(  # no longer running: nothing updated, nothing returned
            conn, {"p_run_id": "fast", "p_status": "failed", "p_output": None}
        )
    assert returned == {**core._asdict(), "run_id": "fast"}
    assert changed == 1 and returned is not None and returned["output"] == output
    assert again == (0, None)
    plain = DriverStatement(FINISH, engine.dialect)  # no RETURNING: the rows it changed
    with engine.begin() as conn:
        assert plain.execute(conn, {"p_run_id": "core", "p_status": "x", "p_output": None}) == (
            0,
            None,
        )
        conn.execute(update(RUNS).where(RUNS.c.run_id == "core").values(status="running"))
        assert plain.execute(conn, {"p_run_id": "core", "p_status": "x", "p_output": None}) == (
            1,
            None,
        )
    with engine.connect() as conn:
        attempts = conn.execute(select(RUNS.c.attempts).where(RUNS.c.run_id == "fast")).scalar()
    assert attempts == 0  # the statement's own value was sent


def test_parameters_left_open_are_required_and_an_expanding_in_is_refused() -> None:
    dialect = make_engine("sqlite://").dialect
    finish = DriverStatement(FINISH, dialect)
    with pytest.raises(KeyError):  # p_output left out: an error, not a NULL
        finish.params({"p_run_id": "r1", "p_status": "failed"})
    with pytest.raises(ValueError, match="expanding IN"):
        DriverStatement(update(RUNS).where(RUNS.c.status.in_(["a", "b"])), dialect)


def test_kept_connection_serializes_writers_and_recovers_from_a_failed_transaction(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'kept.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER UNIQUE)")
    kept = KeptConnection(engine)
    with kept.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with pytest.raises(IntegrityError), kept.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")  # fails: the whole block rolls back
    with kept.begin() as conn:  # a fresh connection after the failure
        conn.exec_driver_sql("INSERT INTO t VALUES (3)")

    def write(start: int) -> None:
        for x in range(start, start + 50):
            with kept.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (?)", (x,))

    threads = [threading.Thread(target=write, args=(100 * (i + 1),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept.close()
    with engine.connect() as conn:
        stored = [x for (x,) in conn.exec_driver_sql("SELECT x FROM t ORDER BY x")]
    assert stored == [
        1,
        3,
        *[x for i in range(4) for x in range(100 * (i + 1), 100 * (i + 1) + 50)],
    ]
