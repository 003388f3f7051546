"""Pydantic models shared by the API's routes: problem documents and their documentation."""

from __future__ import annotations

__all__ = [
    "ID_PATTERN",
    "FieldError",
    "Problem",
    "ProblemItem",
    "StrictBody",
    "UtcDatetime",
    "problems",
]

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Every id the studio issues (UUIDs, `apr_...`) has this shape."""

_TITLES = {
    400: "The body could not be read (it is not UTF-8 JSON).",
    401: "Missing, malformed, unknown, expired or revoked API token.",
    403: "The token's scopes or its owner's role do not allow this.",
    404: "No such object in the token's workspace (objects of other workspaces included).",
    409: "The object changed state before this request.",
    413: "The request body is larger than the limit.",
    422: "The request is invalid; `errors` or `problems` say where.",
    503: "The server is at a limit; try again later.",
}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""A time in UTC (SQLite hands stored times back without their zone)."""


class StrictBody(BaseModel):
    """Base of request bodies: unknown fields (workspace, owner, role, tier...) are refused."""

    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    loc: list[str] = Field(description="Where in the request: e.g. ['body', 'input'].")
    message: str


class ProblemItem(BaseModel):
    """One problem of a graph document, located at a node, an edge, a tool or the document."""

    where: str
    message: str
    node_id: str | None = None
    edge_id: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(default=None, description="Request field errors.")
    problems: list[ProblemItem] | None = Field(
        default=None, description="Every problem of an invalid graph document."
    )


def problems(*statuses: int, **models: Any) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (a status given as `s409=Model` uses
    that model instead of `Problem`)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model = models.get(f"s{status}", Problem)
        out[status] = {"model": model, "description": _TITLES.get(status, "Error.")}
    return out
