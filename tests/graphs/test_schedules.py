"""Scheduled runs: cron per graph, each due time fired once (compare-and-set), once after a
restart however many times were missed, as the person who set it. Real SQLite files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from components.errors import Forbidden, NotFound, UserError
from graphs.headless import Runtime, open_runtime
from graphs.identity import Actor
from graphs.schedules import checked_cron, next_fire
from graphs.tables import GraphSchedule, Run
from tests.conftest import example
from tests.graphs.test_forks import RoleAuthorizer

T0 = datetime(2026, 3, 2, 8, 58, 10, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def runs_of(rt: Runtime, graph_id: str) -> list[Any]:
    with rt.manager.sessions() as session:
        return list(session.scalars(select(Run).where(Run.graph_id == graph_id)))


def triage(rt: Runtime, actor: Actor) -> str:
    return rt.manager.library.create(actor, example("triage_router")).graph_id


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    fake = Clock(T0)
    runtime.manager.schedules.clock = fake
    return fake


@pytest.mark.parametrize(
    ("cron", "zone", "problem"),
    [
        ("* * * *", "UTC", "five fields"),
        ("*/5 * * * * *", "UTC", "five fields"),  # seconds are not offered
        ("61 * * * *", "UTC", "not a valid"),
        ("@reboot", "UTC", "five fields"),
        ("rm -rf /", "UTC", "five fields"),
        ("0 9 * * 1-5", "Mars/Olympus", "time zone"),
        ("0 9 * * 1-5", "../../etc/passwd", "time zone"),
        ("x" * 500, "UTC", "five fields"),
    ],
)
def test_bad_cron_expressions_and_zones_are_refused(cron: str, zone: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        checked_cron(cron, zone)


def test_next_fire_follows_the_time_zone() -> None:
    assert checked_cron("  0   9 * * 1-5 ", "Europe/Berlin") == ("0 9 * * 1-5", "Europe/Berlin")
    # 08:58 UTC is 09:58 in Berlin: 9 o'clock there has passed today, so Tuesday's
    assert next_fire("0 9 * * 1-5", "Europe/Berlin", T0) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert next_fire("0 9 * * 1-5", "UTC", T0) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert next_fire("@hourly", "UTC", T0) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_due_time_fires_once_and_the_schedule_moves_on(
    runtime: Runtime, alice: Actor, clock: Clock
) -> None:
    schedules = runtime.manager.schedules
    graph = triage(runtime, alice)
    view = schedules.set(alice, graph, "*/5 * * * *", input={"ticket": "invoice wrong"})
    assert view.next_fire_at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert schedules.fire_due() == []  # not yet due

    clock.now = datetime(2026, 3, 2, 9, 0, 20, tzinfo=UTC)
    [run_id] = schedules.fire_due()
    assert schedules.fire_due() == []  # the same due time, asked again
    run = runtime.manager.wait(alice, run_id, timeout_s=30)
    assert (run.status, run.started_by, run.input["ticket"]) == (
        "succeeded",
        "alice",
        "invoice wrong",
    )
    after = schedules.get(alice, graph)
    assert after is not None and after.next_fire_at == datetime(2026, 3, 2, 9, 5, tzinfo=UTC)
    assert (after.last_run_id, after.last_error) == (run_id, None)

    clock.now = datetime(2026, 3, 2, 9, 5, 0, tzinfo=UTC)
    assert len(schedules.fire_due()) == 1
    assert len(runs_of(runtime, graph)) == 2


def test_racing_schedulers_fire_a_due_time_once(
    runtime: Runtime, tmp_path: Path, alice: Actor, clock: Clock
) -> None:
    graph = triage(runtime, alice)
    runtime.manager.schedules.set(alice, graph, "* * * * *", input={"ticket": "crash"})
    clock.now = T0 + timedelta(minutes=5)
    # a second process on the same database, and several threads in each
    with open_runtime(tmp_path / "studio.db", resume=False) as other:
        other.manager.schedules.clock = clock
        barrier = threading.Barrier(8)
        fired: list[str] = []

        def race(rt: Runtime) -> None:
            barrier.wait()
            fired.extend(rt.manager.schedules.fire_due())

        threads = [threading.Thread(target=race, args=(rt,)) for rt in [runtime, other] * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(fired) == 1
        assert len(runs_of(runtime, graph)) == 1


def test_a_schedule_missed_while_stopped_fires_once_after_restart_never_twice(
    tmp_path: Path, alice: Actor
) -> None:
    db = tmp_path / "studio.db"
    with open_runtime(db, resume=False) as rt:
        graph = triage(rt, alice)
        rt.manager.schedules.set(alice, graph, "*/5 * * * *", input={"ticket": "crash"})
        with rt.manager.sessions() as session:  # the studio was down for three hours
            session.execute(
                update(GraphSchedule).values(next_fire_at=datetime.now(UTC) - timedelta(hours=3))
            )
            session.commit()
    for _restart in range(3):
        with open_runtime(db, schedule_interval_s=0.05) as rt:
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while not runs_of(rt, graph) and datetime.now(UTC) < deadline:
                threading.Event().wait(0.05)
            threading.Event().wait(0.3)  # more passes of the scheduler
            [run] = runs_of(rt, graph)
            rt.manager.wait(alice, run.run_id, timeout_s=30)
            view = rt.manager.schedules.get(alice, graph)
            assert view is not None and view.next_fire_at is not None
            assert view.next_fire_at > datetime.now(UTC)


# --- authority and scope -------------------------------------------------------------------


@pytest.fixture
def governed(tmp_path: Path) -> Iterator[tuple[Runtime, dict[str, str]]]:
    users = {"ed": "editor", "vi": "viewer", "ru": "runner", "mallory": "editor"}
    with open_runtime(tmp_path / "g.db", authorizer=RoleAuthorizer(users)) as rt:
        rt.manager.schedules.clock = Clock(T0)
        yield rt, users


def test_only_editors_schedule_and_outsiders_find_nothing(
    governed: tuple[Runtime, dict[str, str]],
) -> None:
    rt, _users = governed
    schedules = rt.manager.schedules
    ed, vi, ru = Actor("acme", "ed"), Actor("acme", "vi"), Actor("acme", "ru")
    mallory = Actor("evil", "mallory")
    graph = triage(rt, ed)
    for who in (vi, ru):
        with pytest.raises(Forbidden):
            schedules.set(who, graph, "@daily", input={"ticket": "x"})
    with pytest.raises(NotFound):
        schedules.set(mallory, graph, "@daily", input={"ticket": "x"})
    schedules.set(ed, graph, "@daily", input={"ticket": "x"})
    assert schedules.get(vi, graph) is not None
    for call in (
        lambda: schedules.get(mallory, graph),
        lambda: schedules.delete(mallory, graph),
        lambda: schedules.set(mallory, graph, "@hourly", input={"ticket": "x"}),
    ):
        with pytest.raises(NotFound):
            call()
    assert schedules.list(mallory) == []
    with pytest.raises(Forbidden):
        schedules.delete(vi, graph)
    with pytest.raises(UserError, match="unknown input"):
        schedules.set(ed, graph, "@daily", input={"ticket": "x", "workspace_id": "evil"})
    assert [s.cron for s in schedules.list(ed)] == ["@daily"]
    assert schedules.delete(ed, graph) and schedules.get(ed, graph) is None


def test_a_schedule_runs_with_the_setters_rights_at_each_fire(
    governed: tuple[Runtime, dict[str, str]],
) -> None:
    rt, users = governed
    schedules = rt.manager.schedules
    ed = Actor("acme", "ed")
    graph = triage(rt, ed)
    schedules.set(ed, graph, "*/5 * * * *", input={"ticket": "x"})
    users["ed"] = "viewer"  # demoted after setting it: the schedule fails closed
    schedules.clock = Clock(T0 + timedelta(minutes=3))
    assert schedules.fire_due() == []
    view = schedules.get(ed, graph)
    assert view is not None and "run:start" in (view.last_error or "")
    assert runs_of(rt, graph) == []
