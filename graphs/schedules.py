"""Scheduled runs: a cron expression per graph, fired by the run manager's scheduler.

A graph has at most one schedule, in the graph's workspace; setting or removing it needs
`graph:edit`. Its runs start as the person who set it, with that person's rights at each
fire: a schedule of someone who may no longer start runs is refused and the error kept on
the schedule (it fails closed).

The scheduler moves `next_fire_at` forward by compare-and-set *before* it starts a run, so
a due time fires at most once, whichever process or thread sees it first. A schedule that
came due while the studio was stopped fires once after the restart (not once per missed
time) and then follows its cron from now. Should the process die between the
compare-and-set and the start, that one time is skipped: never run twice.
"""

from __future__ import annotations

__all__ = ["ScheduleView", "Schedules", "checked_cron", "next_fire"]

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from components.errors import NotFound, StudioError, UserError
from graphs._periodic import Periodic
from graphs.db import affected
from graphs.identity import Actor
from graphs.tables import Graph, GraphSchedule

if TYPE_CHECKING:
    from graphs.runs import RunManager

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class ScheduleView:
    graph_id: str
    cron: str
    timezone: str
    input: dict[str, Any]
    enabled: bool
    run_as: str
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_run_id: str | None
    last_error: str | None


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _view(row: GraphSchedule) -> ScheduleView:
    return ScheduleView(
        graph_id=row.graph_id,
        cron=row.cron,
        timezone=row.timezone,
        input=dict(row.input or {}),
        enabled=row.enabled,
        run_as=row.run_as,
        next_fire_at=_utc(row.next_fire_at),
        last_fire_at=_utc(row.last_fire_at),
        last_run_id=row.last_run_id,
        last_error=row.last_error,
    )


def checked_cron(cron: str, timezone: str = "UTC") -> tuple[str, str]:
    """A five-field cron expression (minute hour day month weekday) or a nickname such as
    '@daily', and an IANA time zone; a `UserError` that says what is wrong otherwise."""
    expression = " ".join(str(cron).split())
    fields = expression.split(" ")
    nickname = expression.startswith("@") and expression != "@reboot"
    if len(expression) > 120 or not (nickname or len(fields) == 5):
        raise UserError(
            f"{expression[:60]!r} is not a cron expression: give five fields (minute hour "
            "day-of-month month day-of-week), e.g. '0 9 * * 1-5', or '@hourly' / '@daily'"
        )
    if not croniter.is_valid(expression):
        raise UserError(f"{expression!r} is not a valid cron expression")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown time zone {timezone[:60]!r}; use e.g. 'UTC' or 'Europe/Berlin'"
        ) from None
    return expression, timezone


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time after `after` the cron expression names (in UTC)."""
    local = after.astimezone(ZoneInfo(timezone))
    following: datetime = croniter(cron, local).get_next(datetime)
    return following.astimezone(UTC)


class Schedules:
    """The schedules service (every call takes the acting identity) and the scheduler."""

    def __init__(self, manager: RunManager, *, interval_s: float = 10.0) -> None:
        self._m = manager
        self._periodic = Periodic("run-scheduler", interval_s, self.fire_due)
        self.clock: Clock = lambda: datetime.now(UTC)

    # --- service functions -------------------------------------------------------------
    def get(self, actor: Actor, graph_id: str) -> ScheduleView | None:
        with self._m.sessions() as session:
            self._graph(session, actor, graph_id)
            self._m.authz.require(actor, "graph:read")
            row = session.get(GraphSchedule, graph_id)
            return _view(row) if row is not None else None

    def set(
        self,
        actor: Actor,
        graph_id: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: Mapping[str, Any] | None = None,
        enabled: bool = True,
    ) -> ScheduleView:
        """Create or replace the graph's schedule; its runs start as `actor`."""
        from graphs.runs import checked_input

        with self._m.sessions() as session:
            self._graph(session, actor, graph_id)
        self._m.authz.require(actor, "graph:edit")
        expression, zone = checked_cron(cron, timezone)
        version = self._m.library.latest(actor, graph_id)  # runs start on the published one
        values = checked_input(version.document, dict(input or {}))
        now = self.clock()
        with self._m.sessions() as session:
            row = session.get(GraphSchedule, graph_id) or GraphSchedule(graph_id=graph_id)
            row.workspace_id = actor.workspace_id
            row.cron, row.timezone, row.input, row.enabled = expression, zone, values, enabled
            row.run_as = actor.user_id
            row.next_fire_at = next_fire(expression, zone, now) if enabled else None
            row.last_error = None
            row.updated_at = now
            session.add(row)
            session.commit()
            view = _view(row)
        details = {"cron": expression, "timezone": zone, "enabled": enabled}
        self._m.audit(actor, "schedule.set", graph_id, details)
        return view

    def delete(self, actor: Actor, graph_id: str) -> bool:
        with self._m.sessions() as session:
            self._graph(session, actor, graph_id)
            self._m.authz.require(actor, "graph:edit")
            row = session.get(GraphSchedule, graph_id)
            if row is None:
                return False
            session.delete(row)
            session.commit()
        self._m.audit(actor, "schedule.deleted", graph_id, {})
        return True

    # --- the scheduler -----------------------------------------------------------------
    def fire_due(self) -> list[str]:
        """Start a run for every schedule that is due now (each due time once); returns
        the ids of the runs started."""
        now = self.clock()
        with self._m.sessions() as session:
            due = list(
                session.scalars(
                    select(GraphSchedule)
                    .where(GraphSchedule.enabled.is_(True), GraphSchedule.next_fire_at <= now)
                    .order_by(GraphSchedule.next_fire_at)
                    .limit(200)
                )
            )
        fired = [self._fire(row, now) for row in due]
        return [run_id for run_id in fired if run_id is not None]

    def _fire(self, row: GraphSchedule, now: datetime) -> str | None:
        try:
            following: datetime | None = next_fire(row.cron, row.timezone, now)
        except Exception:  # a row edited into garbage: stop it rather than fire forever
            log.exception("schedule of graph %s: bad cron %r; disabled", row.graph_id, row.cron)
            following = None
        with self._m.sessions() as session:
            won = affected(  # compare-and-set: only one process fires this due time
                session,
                update(GraphSchedule)
                .where(
                    GraphSchedule.graph_id == row.graph_id,
                    GraphSchedule.next_fire_at == row.next_fire_at,
                    GraphSchedule.enabled.is_(True),
                )
                .values(next_fire_at=following, last_fire_at=now, enabled=following is not None),
            )
            session.commit()
        if not won:
            return None
        run_id, error = None, None
        try:
            run_id = self._m.start_run(
                Actor(row.workspace_id, row.run_as), graph_id=row.graph_id, input=row.input
            )
        except StudioError as exc:
            error = str(exc)
            log.warning("schedule of graph %s: the run was not started: %s", row.graph_id, exc)
        with self._m.sessions() as session:
            session.execute(
                update(GraphSchedule)
                .where(GraphSchedule.graph_id == row.graph_id)
                .values(last_run_id=run_id, last_error=error)
            )
            session.commit()
        return run_id

    def start(self) -> None:
        """Check for due schedules now and then every `interval_s` (0: never)."""
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()

    # --- internals -----------------------------------------------------------------------
    def _graph(self, session: Session, actor: Actor, graph_id: str) -> Graph:
        graph = session.get(Graph, graph_id)
        if graph is None or graph.workspace_id != actor.workspace_id or graph.deleted_at:
            raise NotFound(f"graph {graph_id!r} not found")
        return graph

    def list(self, actor: Actor) -> list[ScheduleView]:  # last: the name shadows `list`
        """The workspace's schedules, the next one first."""
        self._m.authz.require(actor, "graph:read")
        with self._m.sessions() as session:
            rows = session.scalars(
                select(GraphSchedule)
                .where(GraphSchedule.workspace_id == actor.workspace_id)
                .order_by(GraphSchedule.next_fire_at)
            )
            return [_view(row) for row in rows]
