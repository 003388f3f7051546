"""Finding runs: the run console's filters (graph, status, who started, time range).

Every query is scoped to the actor's workspace and needs `run:read`; filters are values
compared by the database, never expressions.
"""

from __future__ import annotations

__all__ = ["RunFilter", "run_starters", "search_runs"]

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from graphs.identity import Actor
from graphs.runs import RunView
from graphs.tables import Run

if TYPE_CHECKING:
    from graphs.runs import RunManager

MAX_RESULTS = 500


@dataclass(frozen=True, slots=True)
class RunFilter:
    graph_id: str | None = None
    status: str | None = None
    started_by: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    limit: int = 100


def search_runs(manager: RunManager, actor: Actor, where: RunFilter) -> list[RunView]:
    """The workspace's runs that match every given filter, newest first."""
    manager.authz.require(actor, "run:read")
    query = select(Run).where(Run.workspace_id == actor.workspace_id)
    if where.graph_id:
        query = query.where(Run.graph_id == where.graph_id)
    if where.status:
        query = query.where(Run.status == where.status)
    if where.started_by:
        query = query.where(Run.started_by == where.started_by)
    if where.since is not None:
        query = query.where(Run.created_at >= where.since)
    if where.until is not None:
        query = query.where(Run.created_at < where.until)
    query = query.order_by(Run.created_at.desc()).limit(max(1, min(where.limit, MAX_RESULTS)))
    with manager.sessions() as session:
        return [
            RunView(
                run_id=r.run_id,
                graph_id=r.graph_id,
                version_id=r.version_id,
                status=r.status,
                started_by=r.started_by,
                input=r.input,
                output=r.output,
                error=r.error,
                created_at=r.created_at,
                finished_at=r.finished_at,
            )
            for r in session.scalars(query)
        ]


def run_starters(manager: RunManager, actor: Actor) -> list[str]:
    """Ids of everyone who started a run in the workspace (for the 'started by' filter)."""
    manager.authz.require(actor, "run:read")
    query = (
        select(Run.started_by)
        .distinct()
        .where(Run.workspace_id == actor.workspace_id)
        .order_by(Run.started_by)
        .limit(MAX_RESULTS)
    )
    with manager.sessions() as session:
        return [str(user) for user in session.scalars(query)]
