"""Graphs: list and search, read the newest version, export a document, import one."""

from __future__ import annotations

__all__ = ["MAX_IMPORT_BYTES", "GraphDetail", "GraphList", "router"]

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from graphs.library import VersionView
from graphs.spec import GraphDocument
from graphs.validation import MAX_DOCUMENT_BYTES
from studio.api.deps import ActorDep, StudioDep, api_path, safe
from studio.api.errors import TooLarge
from studio.api.models import ID_PATTERN, UtcDatetime, problems
from studio.context import Studio

router = APIRouter(prefix="/graphs", tags=["graphs"])

MAX_IMPORT_BYTES = MAX_DOCUMENT_BYTES
GraphId = Annotated[str, Path(pattern=ID_PATTERN, description="The graph's id.")]


class GraphLinks(BaseModel):
    graph: str
    export: str
    runs: str


class GraphSummaryOut(BaseModel):
    graph_id: str
    name: str
    latest_version: int = Field(description="The newest version's number (draft or published).")
    published_version: int | None = Field(description="The version new runs start on.")
    created_at: UtcDatetime
    updated_at: UtcDatetime | None
    links: GraphLinks


class GraphList(BaseModel):
    items: list[GraphSummaryOut]


class VersionOut(BaseModel):
    version_id: str
    number: int
    message: str
    created_by: str
    created_at: UtcDatetime
    published: bool


class GraphDetail(BaseModel):
    graph_id: str
    name: str
    version: VersionOut = Field(description="The newest version (the one the document is).")
    versions: list[VersionOut] = Field(description="Every version, newest first.")
    document: GraphDocument
    links: GraphLinks


def _links(request: Request, graph_id: str) -> GraphLinks:
    return GraphLinks(
        graph=api_path(request, "graphs", graph_id),
        export=api_path(request, "graphs", graph_id, "export"),
        runs=api_path(request, "runs") + f"?graph_id={graph_id}",
    )


def _version_out(view: VersionView) -> VersionOut:
    return VersionOut(
        version_id=view.version_id,
        number=view.number,
        message=view.message,
        created_by=view.created_by,
        created_at=view.created_at,
        published=view.published,
    )


def _detail(request: Request, studio: Studio, view: VersionView, actor: Any) -> GraphDetail:
    versions = studio.manager.library.versions(actor, view.graph_id)
    document: Any = safe(studio, view.document.model_dump(mode="json"))
    return GraphDetail(
        graph_id=view.graph_id,
        name=view.document.name,
        version=_version_out(view),
        versions=[VersionOut(**asdict(v)) for v in versions],
        document=document,
        links=_links(request, view.graph_id),
    )


@router.get("", response_model=GraphList, responses=problems(401, 403, 422), summary="List graphs")
def list_graphs(
    request: Request,
    actor: ActorDep,
    studio: StudioDep,
    q: Annotated[str, Query(max_length=200, description="Part of the name, any case.")] = "",
) -> GraphList:
    summaries = studio.manager.library.list(actor, search=q)
    return GraphList(
        items=[GraphSummaryOut(**asdict(s), links=_links(request, s.graph_id)) for s in summaries]
    )


@router.get(
    "/{graph_id}",
    response_model=GraphDetail,
    responses=problems(401, 403, 404, 422),
    summary="Get a graph (its newest version)",
)
def get_graph(
    graph_id: GraphId, request: Request, actor: ActorDep, studio: StudioDep
) -> GraphDetail:
    view = studio.manager.library.head(actor, graph_id)
    return _detail(request, studio, view, actor)


@router.get(
    "/{graph_id}/export",
    response_model=GraphDocument,
    responses=problems(401, 403, 404, 422),
    summary="Export a graph document",
)
def export_graph(
    graph_id: GraphId,
    response: Response,
    actor: ActorDep,
    studio: StudioDep,
    version: Annotated[int, Query(ge=0, description="A version number; 0: the newest.")] = 0,
) -> Any:
    """The document as a file: `schema_version` included, secrets by name only."""
    document = studio.manager.library.export_document(actor, graph_id, version or None)
    response.headers["Content-Disposition"] = f'attachment; filename="graph-{graph_id}.json"'
    return safe(studio, document)


async def _read_limited(request: Request, limit: int) -> bytes:
    too_big = f"a graph document may have at most {limit:,} bytes; split it into sub-graphs"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(too_big)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(too_big)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/import",
    status_code=201,
    response_model=GraphDetail,
    responses=problems(401, 403, 413, 422),
    summary="Import a graph document",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/GraphDocument"}}
            },
        }
    },
)
async def import_graph(
    request: Request, response: Response, actor: ActorDep, studio: StudioDep
) -> GraphDetail:
    """The body is a graph document (as `export` gives it). It becomes a new graph; when it
    is invalid, nothing is stored and the 422 lists every problem at its node or edge."""
    raw = await _read_limited(request, MAX_IMPORT_BYTES)
    library = studio.manager.library
    view = await run_in_threadpool(library.import_document, actor, raw)
    detail = await run_in_threadpool(_detail, request, studio, view, actor)
    response.headers["Location"] = detail.links.graph
    return detail
