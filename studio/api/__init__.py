"""The studio's REST API and its Server-Sent Events, as one FastAPI application.

`build_api(get_studio)` returns the app; the web shell mounts it at ``/api``, so its schema
is ``/api/openapi.json``. Every request acts as its bearer token's identity in the token's
workspace; every handler calls the same service functions as the UI (which authorize), and
errors become problem documents in one place (`studio.api.errors`).
"""

from __future__ import annotations

__all__ = ["MAX_BODY_BYTES", "SseOptions", "build_api"]

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from studio.api import approvals, graphs, runs, sse
from studio.api.errors import PROBLEM_TYPE, install_error_handlers
from studio.api.limits import BodyLimit
from studio.api.pump import FrameCache, SseOptions
from studio.api.sse import StreamSlots
from studio.context import Studio

MAX_BODY_BYTES = graphs.MAX_IMPORT_BYTES + 65_536  # a graph document and some room


def build_api(
    get_studio: Callable[[], Studio], *, sse_options: SseOptions | None = None
) -> FastAPI:
    """The API app; `get_studio` is called per request (the studio opens at start-up)."""
    app = FastAPI(
        title="Agent Studio API",
        version="1",
        description="Runs, their events (SSE), the approval inbox and graph documents. "
        "Authenticate with an API token: `Authorization: Bearer sk_...`.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        separate_input_output_schemas=False,
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    options = sse_options or SseOptions()
    app.state.get_studio = get_studio
    app.state.sse_options = options
    app.state.sse_slots = StreamSlots(options.max_streams)
    app.state.sse_frames = FrameCache()
    install_error_handlers(app)
    for module in (runs, sse, approvals, graphs):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_media_types(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    separate_input_output_schemas=False,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are `application/problem+json`, as `studio.api.errors` sends them."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in "45" and "application/json" in content:
                    content[PROBLEM_TYPE] = content.pop("application/json")
    return schema
