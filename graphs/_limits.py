"""Limits and shared types of graph validation."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, TypeAdapter

from graphs.spec import (
    Identifier,
    NodeId,
)

MAX_DOCUMENT_BYTES = 1_048_576
MAX_DEPTH = 64
MAX_SUBGRAPH_DEPTH = 5
MAX_PROBLEMS = 1_000
_MAX_MESSAGE = 400
_BUILTIN_STATE = frozenset({"messages"})

Loc = tuple[int | str, ...]
_M = TypeVar("_M", bound=BaseModel)
_NODE_ID: TypeAdapter[str] = TypeAdapter(NodeId)
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_PATTERN_HELP = {
    _NODE_ID.json_schema()["pattern"]: "start with an ASCII letter, then up to 63 ASCII "
    "letters, digits, '_' or '-'",
    _IDENTIFIER.json_schema()["pattern"]: "start with an ASCII letter, then up to 63 ASCII "
    "letters, digits or '_'",
}
