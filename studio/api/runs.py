"""Runs: start one (202, it runs in the background), read, list, cancel."""

from __future__ import annotations

__all__ = ["RunAccepted", "RunLinks", "RunList", "RunOut", "StartRun", "router", "run_out"]

from dataclasses import asdict
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from components.errors import NotFound
from graphs.runs import RunView
from studio.api.deps import ActorDep, StudioDep, api_path, safe
from studio.api.models import ID_PATTERN, StrictBody, UtcDatetime, problems
from studio.context import Studio

router = APIRouter(prefix="/runs", tags=["runs"])

RunStatus = Literal[
    "queued",
    "running",
    "waiting_approval",
    "succeeded",
    "failed",
    "cancelled",
    "budget_exceeded",
]
RunId = Annotated[str, Path(pattern=ID_PATTERN, description="The run's id.")]
_LIST_SCAN = 1000  # the newest runs a graph_id filter looks through


class Notify(StrictBody):
    webhook: str | None = Field(
        default=None, max_length=2048, description="URL POSTed (signed) when the run ends."
    )
    email: str | None = Field(
        default=None, max_length=254, description="Address told when the run ends."
    )


class StartRun(StrictBody):
    """Start a run of a graph's latest version, or of `version_id` (one of that graph's)."""

    graph_id: str = Field(min_length=1, max_length=64)
    version_id: str | None = Field(default=None, min_length=1, max_length=64)
    input: dict[str, Any] = Field(default_factory=dict, description="The graph's input fields.")
    notify: Notify | None = None


class RunLinks(BaseModel):
    run: str
    events: str = Field(description="Server-Sent Events of the run (resumable).")
    cancel: str
    approvals: str


class RunAccepted(BaseModel):
    run_id: str
    status: str
    links: RunLinks


class RunOut(BaseModel):
    run_id: str
    graph_id: str
    version_id: str
    status: str = Field(description=f"One of {', '.join(get_args(RunStatus))}.")
    started_by: str
    input: dict[str, Any]
    output: dict[str, Any] | None
    error: str | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    links: RunLinks


class RunList(BaseModel):
    items: list[RunOut]


def _links(request: Request, run_id: str) -> RunLinks:
    return RunLinks(
        run=api_path(request, "runs", run_id),
        events=api_path(request, "runs", run_id, "events"),
        cancel=api_path(request, "runs", run_id, "cancel"),
        approvals=api_path(request, "approvals") + f"?run_id={run_id}&status=all",
    )


def run_out(request: Request, studio: Studio, view: RunView) -> RunOut:
    fields: Any = safe(studio, asdict(view))
    return RunOut(**fields, links=_links(request, view.run_id))


@router.post(
    "",
    status_code=202,
    response_model=RunAccepted,
    responses=problems(400, 401, 403, 404, 413, 422),
    summary="Start a run",
)
def start_run(
    body: StartRun, request: Request, response: Response, actor: ActorDep, studio: StudioDep
) -> RunAccepted:
    m = studio.manager
    if body.version_id is not None:
        version = m.library.version(actor, body.version_id)
        if version.graph_id != body.graph_id:
            raise NotFound(f"graph {body.graph_id!r} has no version {body.version_id!r}")
    notify = body.notify.model_dump(exclude_none=True) if body.notify else None
    run_id = m.start_run(
        actor,
        graph_id=body.graph_id,
        version_id=body.version_id,
        input=body.input,
        notify=notify,
    )
    view = m.get(actor, run_id)
    links = _links(request, run_id)
    response.headers["Location"] = links.run
    return RunAccepted(run_id=run_id, status=view.status, links=links)


@router.get("", response_model=RunList, responses=problems(401, 403, 422), summary="List runs")
def list_runs(
    request: Request,
    actor: ActorDep,
    studio: StudioDep,
    status: RunStatus | Literal["all"] = "all",
    graph_id: Annotated[str, Query(max_length=64, description="Only this graph's runs.")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RunList:
    """The workspace's runs, newest first. `graph_id` looks through the newest 1000."""
    m = studio.manager
    only = None if status == "all" else status
    views = m.list(actor, status=only, limit=_LIST_SCAN if graph_id else limit)
    if graph_id:
        views = [v for v in views if v.graph_id == graph_id][:limit]
    return RunList(items=[run_out(request, studio, v) for v in views])


@router.get(
    "/{run_id}", response_model=RunOut, responses=problems(401, 403, 404, 422), summary="Get a run"
)
def get_run(run_id: RunId, request: Request, actor: ActorDep, studio: StudioDep) -> RunOut:
    return run_out(request, studio, studio.manager.get(actor, run_id))


@router.post(
    "/{run_id}/cancel",
    response_model=RunOut,
    responses=problems(401, 403, 404, 409, 422),
    summary="Cancel a run",
)
def cancel_run(run_id: RunId, request: Request, actor: ActorDep, studio: StudioDep) -> RunOut:
    """Cancel a queued, running or waiting run (409 when it has already ended)."""
    return run_out(request, studio, studio.manager.cancel(actor, run_id))
