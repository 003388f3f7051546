"""The approval inbox: list, read, decide (once: a second decision is a 409 and changes
nothing)."""

from __future__ import annotations

__all__ = ["ApprovalOut", "ApprovalPage", "DecisionConflict", "DecisionIn", "router"]

from dataclasses import asdict
from datetime import UTC
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from components.errors import Conflict
from graphs.approvals import ApprovalView
from studio.api.deps import ActorDep, StudioDep, api_path, safe
from studio.api.errors import studio_problem
from studio.api.models import ID_PATTERN, Problem, StrictBody, UtcDatetime, problems
from studio.context import Studio

router = APIRouter(prefix="/approvals", tags=["approvals"])

ApprovalStatus = Literal[
    "pending", "approved", "edited", "rejected", "responded", "cancelled", "all"
]
_CURSOR = r"^[0-9]{1,18}\.[A-Za-z0-9_-]{1,64}$"  # any such cursor is valid: no decode errors
ApprovalId = Annotated[str, Path(pattern=ID_PATTERN, description="The approval's id.")]


class ApprovalLinks(BaseModel):
    approval: str
    decision: str
    run: str


class ApprovalOut(BaseModel):
    approval_id: str
    run_id: str
    node_id: str
    kind: str = Field(description="'approval' (a gated call or step) or 'input' (a question).")
    action: str = Field(description="The tool or step waiting for a decision.")
    args: dict[str, Any] = Field(description="The exact arguments the decision is bound to.")
    tier: str
    reason: str
    description: str
    allowed: list[str] = Field(description="The decisions offered.")
    status: str
    run_started_by: str
    decision: str | None
    decided_args: dict[str, Any] | None
    feedback: str | None
    decided_by: str | None
    decided_at: UtcDatetime | None
    created_at: UtcDatetime
    expires_at: UtcDatetime | None = Field(
        description="When the node's approval timeout acts (null: it waits for a person)."
    )
    timeout_action: Literal["reject", "escalate", "leave"] | None = Field(
        description="What happens at `expires_at`."
    )
    escalated: bool = Field(description="The timeout escalated it: admins decide it now.")
    overdue: bool = Field(description="The timeout passed; it stays pending.")
    required_tier: str = Field(description="The tier a decider needs now (`admin` once escalated).")
    links: ApprovalLinks


class ApprovalPage(BaseModel):
    items: list[ApprovalOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")
    next: str | None = Field(description="The next page's path, when there is one.")


class DecisionIn(StrictBody):
    decision: Literal["approve", "edit", "reject", "respond"]
    args: dict[str, Any] | None = Field(
        default=None,
        description="`edit`: the changed arguments (validated and re-checked); "
        "`respond`: {'response': '...'}.",
    )
    message: str | None = Field(
        default=None, max_length=4000, description="Feedback (with `reject`: the model sees it)."
    )


class DecisionConflict(Problem):
    approval: ApprovalOut = Field(description="The approval as it is now: the decision stands.")


def approval_out(request: Request, studio: Studio, view: ApprovalView) -> ApprovalOut:
    fields: Any = safe(studio, asdict(view))
    links = ApprovalLinks(
        approval=api_path(request, "approvals", view.approval_id),
        decision=api_path(request, "approvals", view.approval_id, "decision"),
        run=api_path(request, "runs", view.run_id),
    )
    timeout = {"escalated": view.escalated, "overdue": view.overdue,
               "required_tier": view.required_tier}  # fmt: skip
    return ApprovalOut(**fields, **timeout, links=links)


def _key(view: ApprovalView) -> tuple[int, str]:
    created = view.created_at if view.created_at.tzinfo else view.created_at.replace(tzinfo=UTC)
    return round(created.timestamp() * 1_000_000), view.approval_id


def _cursor(key: tuple[int, str]) -> str:
    return f"{key[0]}.{key[1]}"


def _after(cursor: str) -> tuple[int, str]:
    micros, _, approval_id = cursor.partition(".")
    return int(micros), approval_id


@router.get(
    "",
    response_model=ApprovalPage,
    responses=problems(401, 403, 422),
    summary="List approvals (the inbox)",
)
def list_approvals(
    request: Request,
    actor: ActorDep,
    studio: StudioDep,
    status: ApprovalStatus = "pending",
    run_id: Annotated[str, Query(max_length=64, description="Only this run's.")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str,
        Query(
            pattern=_CURSOR,
            description="`next_cursor` of the previous page: items older than it follow.",
        ),
    ] = "",
) -> ApprovalPage:
    """The workspace's approvals, newest first, `limit` per page (pending ones by default)."""
    views = studio.manager.approvals.list(
        actor, status=None if status == "all" else status, run_id=run_id or None
    )
    views.sort(key=_key, reverse=True)
    if cursor:
        after = _after(cursor)
        views = [v for v in views if _key(v) < after]
    page, more = views[:limit], len(views) > limit
    next_cursor = _cursor(_key(page[-1])) if more else None
    next_link = None
    if next_cursor:
        query = f"status={status}&limit={limit}&cursor={next_cursor}"
        if run_id:
            query += f"&run_id={run_id}"
        next_link = api_path(request, "approvals") + "?" + query
    return ApprovalPage(
        items=[approval_out(request, studio, v) for v in page],
        next_cursor=next_cursor,
        next=next_link,
    )


@router.get(
    "/{approval_id}",
    response_model=ApprovalOut,
    responses=problems(401, 403, 404, 422),
    summary="Get an approval",
)
def get_approval(
    approval_id: ApprovalId, request: Request, actor: ActorDep, studio: StudioDep
) -> ApprovalOut:
    return approval_out(request, studio, studio.manager.approvals.get(actor, approval_id))


@router.post(
    "/{approval_id}/decision",
    response_model=ApprovalOut,
    responses=problems(400, 401, 403, 404, 409, 413, 422, s409=DecisionConflict),
    summary="Decide an approval",
)
def decide(
    approval_id: ApprovalId,
    body: DecisionIn,
    request: Request,
    actor: ActorDep,
    studio: StudioDep,
) -> ApprovalOut | JSONResponse:
    """Decide once; the run resumes where it stopped. A second decision (a repeat, a race,
    a cancelled run) is a 409 carrying the approval as it is: nothing changes."""
    m = studio.manager
    try:
        view = m.decide(actor, approval_id, body.decision, args=body.args, feedback=body.message)
    except Conflict as exc:
        current = approval_out(request, studio, m.approvals.get(actor, approval_id))
        return studio_problem(request, exc, approval=current.model_dump(mode="json"))
    return approval_out(request, studio, view)
