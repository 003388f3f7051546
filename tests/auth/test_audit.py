"""The hash-chained audit log on real SQLite files: scoping, tampering, concurrent writers."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from auth.audit import AUDIT_ACTIONS, GENESIS, AuditEntry, AuditLog, entry_hash
from auth.base import Base
from auth.redact import REDACTED, Redactor
from components.errors import StudioError, UserError
from graphs.db import make_engine
from graphs.identity import Actor

ALICE = Actor("acme", "alice")
MALLORY = Actor("evil-corp", "mallory")
FIELDS = ["workspace_id", "actor", "action", "target", "details", "at", "prev_hash", "hash"]


def new_engine(db_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{db_path}")
    Base.metadata.create_all(engine, tables=[Base.metadata.tables["audit_entries"]])
    return engine


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studio.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = new_engine(db_path)
    yield engine
    engine.dispose()


@pytest.fixture
def audit(engine: Engine) -> AuditLog:
    return AuditLog(sessionmaker(engine, expire_on_commit=False))


def fill(audit: AuditLog, count: int = 8) -> None:
    """A realistic mix: system-wide logins and entries of two workspaces."""
    for i in range(count):
        if i % 4 == 0:
            audit.record("login", actor="alice", workspace_id=None, details={"via": "oidc"})
        elif i % 4 == 1:
            audit.record(
                "member.role_changed",
                actor="alice",
                workspace_id="acme",
                target="bob",
                details={"from": "viewer", "to": "approver", "n": i, "ok": True, "x": 1.5},
            )
        elif i % 4 == 2:
            audit.record("run.cancelled", actor="mallory", workspace_id="evil-corp", target="r-9")
        else:
            audit.record("token.created", actor="alice", workspace_id="acme", target=f"t-{i}")


def sql(db_path: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(statement, params)


def row(db_path: Path, seq: int) -> dict[str, object]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM audit_entries WHERE seq = ?", (seq,)).fetchone()
        return dict(found)


# -- appending and reading -------------------------------------------------------------------


def test_entries_chain_and_verify(audit: AuditLog) -> None:
    assert audit.head() == (0, GENESIS)
    assert audit.verify().ok and audit.verify().checked == 0
    fill(audit, 8)
    result = audit.verify()
    assert (result.ok, result.checked, result.first_broken_seq) == (True, 8, None)
    assert "8 entries" in result.reason
    seq, digest = audit.head()
    assert seq == 8
    first = audit.system_entries()[0]
    assert first.prev_hash == GENESIS and first.seq == 1
    assert first.hash == entry_hash(
        1, None, "alice", "login", "", {"via": "oidc"}, first.at, GENESIS
    )
    assert audit.verify(anchor=(seq, digest)).ok


def test_record_returns_the_stored_entry(audit: AuditLog) -> None:
    entry = audit.record(
        "graph.published", actor="alice", workspace_id="acme", target="g-1", details={"v": 2}
    )
    [stored] = audit.entries(ALICE)
    assert stored == entry
    assert entry.at.tzinfo is not None and entry.action == "graph.published"


def test_hash_ignores_key_order_but_not_values() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    a = entry_hash(1, "w", "u", "login", "", {"a": 1, "b": 2}, at, GENESIS)
    assert a == entry_hash(1, "w", "u", "login", "", {"b": 2, "a": 1}, at, GENESIS)
    assert a == entry_hash(
        1, "w", "u", "login", "", {"a": 1, "b": 2}, at.replace(tzinfo=None), GENESIS
    )
    assert a != entry_hash(1, "w", "u", "login", "", {"a": 1, "b": 3}, at, GENESIS)
    assert a != entry_hash(2, "w", "u", "login", "", {"a": 1, "b": 2}, at, GENESIS)


def test_entries_are_workspace_scoped(audit: AuditLog) -> None:
    fill(audit, 12)
    mine = audit.entries(ALICE)
    assert mine and all(e.workspace_id == "acme" for e in mine)
    theirs = audit.entries(MALLORY)
    assert theirs and all(e.workspace_id == "evil-corp" for e in theirs)
    assert {e.seq for e in mine}.isdisjoint({e.seq for e in theirs})
    assert audit.entries(Actor("nobody", "x")) == []
    assert audit.entries("acme") == mine
    system = audit.system_entries()
    assert system and all(e.workspace_id is None for e in system)
    assert not any(e.workspace_id is None for e in mine + theirs)  # logins are not foreign rows
    # filters cannot widen the scope
    assert audit.entries(MALLORY, action="token.created") == []
    assert audit.entries(MALLORY, by="alice") == []
    assert audit.entries(MALLORY, target="bob") == []


def test_filters_and_paging(engine: Engine) -> None:
    clock = iter(datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(100))
    audit = AuditLog(sessionmaker(engine), clock=lambda: next(clock))
    fill(audit, 16)
    roles = audit.entries(ALICE, action="member.role_changed")
    assert [e.seq for e in roles] == [2, 6, 10, 14]
    assert [e.target for e in audit.entries(ALICE, target="t-7")] == ["t-7"]
    assert all(e.actor == "alice" for e in audit.entries(ALICE, by="alice"))
    window = audit.entries(
        ALICE,
        since=datetime(2025, 1, 1, 0, 5, tzinfo=UTC),
        until=datetime(2025, 1, 1, 0, 10, tzinfo=UTC),
    )
    assert [e.seq for e in window] == [6, 8, 10]
    page1 = audit.entries(ALICE, limit=3)
    page2 = audit.entries(ALICE, after_seq=page1[-1].seq, limit=3)
    assert [e.seq for e in page1 + page2] == [2, 4, 6, 8, 10, 12]
    assert len(audit.entries(ALICE, limit=10**9)) == 8


def test_undeclared_actions_are_refused(audit: AuditLog) -> None:
    with pytest.raises(UserError, match=r"'made\.up'"):
        audit.record("made.up", actor="alice", workspace_id="acme")
    assert audit.head() == (0, GENESIS)


def test_every_action_is_documented() -> None:
    for action, description in AUDIT_ACTIONS.items():
        assert action and description.endswith("."), action
    required = {
        "login", "login_failed", "member.role_changed", "token.created", "token.revoked",
        "secret.created", "secret.updated", "secret.used", "graph.published",
        "graph.imported", "graph.exported", "approval.decided", "run.cancelled",
    }  # fmt: skip
    assert required <= AUDIT_ACTIONS.keys()


def test_details_must_be_json_and_small(audit: AuditLog) -> None:
    with pytest.raises(UserError, match="JSON"):
        audit.record("login", actor="a", workspace_id=None, details={"x": float("nan")})
    with pytest.raises(UserError, match="larger than"):
        audit.record("login", actor="a", workspace_id=None, details={"x": "y" * 20_000})
    entry = audit.record("login", actor="a", workspace_id=None, details={"when": datetime.now})
    assert isinstance(entry.details["when"], str)  # odd objects are stored as text
    assert audit.verify().ok


def test_secret_values_never_reach_the_log(engine: Engine, db_path: Path) -> None:
    value = f"canary-{secrets.token_urlsafe(24)}"
    audit = AuditLog(sessionmaker(engine), redactor=Redactor([value]))
    audit.record(
        "secret.used",
        actor="alice",
        workspace_id="acme",
        target=f"API_KEY={value}",
        details={"header": f"Bearer {value}", "nested": [{"v": value}]},
    )
    [entry] = audit.entries(ALICE)
    assert entry.target == f"API_KEY={REDACTED}"
    assert entry.details == {"header": f"Bearer {REDACTED}", "nested": [{"v": REDACTED}]}
    assert audit.verify().ok
    engine.dispose()
    blob = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    assert value.encode() not in blob


def test_the_orm_refuses_to_change_entries(audit: AuditLog, engine: Engine) -> None:
    fill(audit, 2)
    sessions = sessionmaker(engine)
    with sessions() as session:
        entry = session.scalars(select(AuditEntry)).first()
        assert entry is not None
        entry.target = "forged"
        with pytest.raises(StudioError, match="append-only"):
            session.flush()
    with sessions() as session:
        entry = session.scalars(select(AuditEntry)).first()
        session.delete(entry)
        with pytest.raises(StudioError, match="append-only"):
            session.flush()
    assert audit.verify().ok


# -- tampering ---------------------------------------------------------------------------


def forged(field: str, old: object) -> object:
    if field == "details":
        data = json.loads(str(old))
        data["forged"] = True
        return json.dumps(data)
    if field == "at":
        return str(old).replace("20", "19", 1)
    if field == "workspace_id":
        return "evil-corp" if old != "evil-corp" else "acme"
    if field in ("prev_hash", "hash"):
        return "f" * 64
    return f"{old}-forged"


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("seq", [1, 4, 8])
def test_editing_any_field_of_any_entry_is_detected(
    audit: AuditLog, db_path: Path, field: str, seq: int
) -> None:
    fill(audit, 8)
    old = row(db_path, seq)[field]
    sql(db_path, f"UPDATE audit_entries SET {field} = ? WHERE seq = ?", forged(field, old), seq)
    result = audit.verify()
    assert not result.ok
    assert result.first_broken_seq == seq
    assert result.checked == seq - 1
    assert str(seq) in result.reason


def test_editing_with_the_entrys_hash_recomputed_breaks_the_next_link(
    audit: AuditLog, db_path: Path
) -> None:
    fill(audit, 8)
    entry = row(db_path, 3)
    target = "forged-target"
    at = datetime.fromisoformat(str(entry["at"]))
    details = json.loads(str(entry["details"]))
    digest = entry_hash(
        3, entry["workspace_id"], entry["actor"], entry["action"], target, details, at,  # type: ignore[arg-type]
        str(entry["prev_hash"]),
    )  # fmt: skip
    sql(db_path, "UPDATE audit_entries SET target = ?, hash = ? WHERE seq = 3", target, digest)
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 4)
    assert "prev_hash" in result.reason


def test_editing_the_seq_is_detected(audit: AuditLog, db_path: Path) -> None:
    fill(audit, 8)
    sql(db_path, "UPDATE audit_entries SET seq = 100 WHERE seq = 5")
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 5)


@pytest.mark.parametrize("seq", [1, 2, 5, 7])
def test_deleting_an_entry_is_detected(audit: AuditLog, db_path: Path, seq: int) -> None:
    fill(audit, 8)
    sql(db_path, "DELETE FROM audit_entries WHERE seq = ?", seq)
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, seq)
    assert "missing" in result.reason


def test_deleting_and_renumbering_is_detected(audit: AuditLog, db_path: Path) -> None:
    fill(audit, 8)
    sql(db_path, "DELETE FROM audit_entries WHERE seq = 4")
    sql(db_path, "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 4")
    sql(db_path, "UPDATE audit_entries SET seq = seq - 1001 WHERE seq > 1000")
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 4)


def test_truncating_the_end_needs_the_anchor(audit: AuditLog, db_path: Path) -> None:
    fill(audit, 8)
    anchor = audit.head()
    sql(db_path, "DELETE FROM audit_entries WHERE seq >= 7")
    assert audit.verify().ok  # a shorter chain is still a chain: this is why we anchor
    result = audit.verify(anchor=anchor)
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 7, 6)
    assert "removed from the end" in result.reason


def test_recomputing_the_whole_chain_is_caught_by_the_anchor(
    audit: AuditLog, db_path: Path
) -> None:
    fill(audit, 6)
    anchor = audit.head()
    sql(db_path, "UPDATE audit_entries SET target = 'forged' WHERE seq = 2")
    with sqlite3.connect(db_path) as conn:  # a thorough attacker rewrites every hash
        conn.row_factory = sqlite3.Row
        prev = GENESIS
        rows = conn.execute("SELECT * FROM audit_entries ORDER BY seq").fetchall()
        conn.execute("UPDATE audit_entries SET prev_hash = 'p' || seq, hash = 'h' || seq")
        for r in rows:
            digest = entry_hash(
                r["seq"], r["workspace_id"], r["actor"], r["action"], r["target"],
                json.loads(r["details"]), datetime.fromisoformat(r["at"]), prev,
            )  # fmt: skip
            conn.execute(
                "UPDATE audit_entries SET prev_hash = ?, hash = ? WHERE seq = ?",
                (prev, digest, r["seq"]),
            )
            prev = digest
    assert audit.verify().ok  # documented limit of an unkeyed chain
    result = audit.verify(anchor=anchor)
    assert (result.ok, result.first_broken_seq) == (False, 6)
    assert "anchor" in result.reason


def insert(db_path: Path, values: dict[str, object]) -> None:
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    sql(db_path, f"INSERT INTO audit_entries ({columns}) VALUES ({marks})", *values.values())


def test_appending_a_forged_entry_is_detected(audit: AuditLog, db_path: Path) -> None:
    fill(audit, 5)
    fake = row(db_path, 5) | {"seq": 6, "target": "forged", "prev_hash": "a" * 64}
    fake["hash"] = "b" * 64
    insert(db_path, fake)
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 6)


def test_inserting_in_the_middle_is_detected(audit: AuditLog, db_path: Path) -> None:
    fill(audit, 8)
    sql(db_path, "UPDATE audit_entries SET seq = seq + 1000 WHERE seq > 3")
    sql(db_path, "UPDATE audit_entries SET seq = seq - 999 WHERE seq > 1000")
    prev = str(row(db_path, 3)["hash"])
    fake = row(db_path, 3) | {"seq": 4, "target": "forged", "prev_hash": prev, "hash": "c" * 64}
    with pytest.raises(sqlite3.IntegrityError):  # the database refuses a second link to 3
        insert(db_path, fake)
    fake["prev_hash"] = "d" * 64
    insert(db_path, fake)
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 4)


@pytest.mark.parametrize(("first", "second"), [(1, 2), (3, 7), (2, 8)])
def test_swapping_two_entries_is_detected(
    audit: AuditLog, db_path: Path, first: int, second: int
) -> None:
    fill(audit, 8)
    sql(db_path, "UPDATE audit_entries SET seq = -1 WHERE seq = ?", first)
    sql(db_path, "UPDATE audit_entries SET seq = ? WHERE seq = ?", first, second)
    sql(db_path, "UPDATE audit_entries SET seq = ? WHERE seq = -1", second)
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, first)


def test_swapping_contents_but_keeping_hashes_is_detected(audit: AuditLog, db_path: Path) -> None:
    fill(audit, 8)
    a, b = row(db_path, 2), row(db_path, 6)
    columns = ["workspace_id", "actor", "action", "target", "details", "at"]
    assignments = ", ".join(f"{c} = ?" for c in columns)
    sql(db_path, f"UPDATE audit_entries SET {assignments} WHERE seq = 2", *[b[c] for c in columns])
    sql(db_path, f"UPDATE audit_entries SET {assignments} WHERE seq = 6", *[a[c] for c in columns])
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 2)


def test_verification_reads_in_batches(audit: AuditLog, db_path: Path) -> None:
    audit.verify_batch = 3
    fill(audit, 10)
    assert audit.verify().checked == 10
    sql(db_path, "DELETE FROM audit_entries WHERE seq = 7")
    assert audit.verify().first_broken_seq == 7


# -- concurrent writers ----------------------------------------------------------------------


def run_writers(logs: list[AuditLog], threads_per_log: int, each: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(logs) * threads_per_log)

    def write(log: AuditLog, n: int) -> None:
        barrier.wait()
        try:
            for i in range(each):
                log.record("run.cancelled", actor=f"w{n}", workspace_id="acme", target=f"{n}-{i}")
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(log, n))
        for n, log in enumerate(log for log in logs for _ in range(threads_per_log))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def assert_one_chain(db_path: Path, audit: AuditLog, total: int) -> None:
    with sqlite3.connect(db_path) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM audit_entries ORDER BY seq")]
        prevs = [r[0] for r in conn.execute("SELECT prev_hash FROM audit_entries")]
    assert seqs == list(range(1, total + 1))
    assert len(set(prevs)) == total  # no two entries share a predecessor: no fork
    result = audit.verify()
    assert (result.ok, result.checked) == (True, total)


def test_concurrent_writers_on_one_log_keep_one_chain(audit: AuditLog, db_path: Path) -> None:
    assert run_writers([audit], threads_per_log=8, each=25) == []
    assert_one_chain(db_path, audit, 200)


def test_writers_in_separate_engines_keep_one_chain(db_path: Path, engine: Engine) -> None:
    """Separate engines on one file stand in for separate processes: no shared lock."""
    engines = [new_engine(db_path) for _ in range(3)]
    try:
        logs = [AuditLog(sessionmaker(e)) for e in engines]
        assert run_writers(logs, threads_per_log=3, each=15) == []
    finally:
        for e in engines:
            e.dispose()
    assert_one_chain(db_path, AuditLog(sessionmaker(engine)), 135)


def test_verify_names_a_row_edited_into_garbage_instead_of_crashing(
    audit: AuditLog, db_path: Path
) -> None:
    import sqlite3

    fill(audit)
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE audit_entries SET details = 'not json {' WHERE seq = 3")
    result = audit.verify()
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 3, 2)
    assert "unreadable" in result.reason
