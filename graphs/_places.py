"""Where a validation problem is (node, edge, tool, document) and how it reads."""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from components.errors import Problem
from graphs._limits import _IDENTIFIER, _MAX_MESSAGE, _NODE_ID, _PATTERN_HELP, Loc
from graphs.spec import (
    SCHEMA_VERSION,
)

# ---------------------------------------------------------------- places and messages


@dataclass(frozen=True, slots=True)
class _Place:
    where: str
    node_id: str | None = None
    edge_id: str | None = None

    def problem(self, message: str) -> Problem:
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 1] + "…"
        return Problem(self.where, message, self.node_id, self.edge_id)


_DOCUMENT = _Place("document")
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_UNPAIRED = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_UNPAIRED_TEXT = "contains an unpaired UTF-16 surrogate (a broken \\ud8xx escape): remove it"


def _show(value: object) -> str:
    """A user-supplied value, quoted, ASCII-escaped (no bidi tricks, no homoglyphs), short."""
    if not isinstance(value, str):
        return reprlib.repr(value).encode("ascii", "backslashreplace").decode()
    return ascii(value[:60] + "…" if len(value) > 60 else value)


def _valid(adapter: TypeAdapter[str], value: object) -> str | None:
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError:
        return None


def _node_place(node_id: str) -> _Place:
    return _Place(f"node {node_id!r}", node_id=node_id)


def _edge_place(edge_id: str) -> _Place:
    return _Place(f"edge {_show(edge_id)}", edge_id=edge_id)


def _path(loc: Loc, prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _SAFE_KEY.fullmatch(part):
            parts.append(f".{part}" if parts else part)
        else:
            parts.append(f"[{json.dumps(part[:60])}]")  # ASCII-escaped: no bidi, no homoglyph
    return "".join(parts)


def _error_text(err: ErrorDetails, rest: Loc, prefix: str = "") -> str:
    """One pydantic error as a sentence that names the field and says what to do."""
    path, kind, ctx = _path(rest, prefix), err["type"], err.get("ctx") or {}
    value = err.get("input")
    if kind == "extra_forbidden":
        return f"unknown field '{path}': remove it (unknown fields are not allowed)"
    if kind == "missing":
        return f"missing required field '{path}': fill it in"
    if kind == "too_long" and "actual_length" in ctx:
        return f"{path} has {ctx['actual_length']} items; at most {ctx['max_length']} allowed"
    if kind == "literal_error" and path == "schema_version":
        newer = isinstance(value, int) and value > SCHEMA_VERSION
        hint = ": this file was written by a newer Agent Studio" if newer else ""
        return f"schema_version must be {SCHEMA_VERSION}, got {_show(value)}{hint}"
    if kind == "string_pattern_mismatch":
        rule = _PATTERN_HELP.get(ctx.get("pattern", ""), f"match {ctx.get('pattern')}")
        return f"{path} {_show(value)} is not allowed: it must {rule}"
    if kind == "string_unicode":
        return f"{path or 'value'}: {_UNPAIRED_TEXT}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


# ---------------------------------------------------------------- locating raw positions

_COLLECTIONS = {"nodes": "node", "edges": "edge", "tools": "tool", "state": "state field"}


def _raw_item(data: object, key: str, index: int) -> object:
    items = data.get(key) if isinstance(data, Mapping) else None
    if isinstance(items, list) and 0 <= index < len(items):
        return items[index]
    return None


def _raw_edge_id(item: object) -> str | None:
    if not isinstance(item, Mapping):
        return None
    edge_id, source, target = item.get("id"), item.get("source"), item.get("target")
    if not isinstance(edge_id, str) and isinstance(source, str) and isinstance(target, str):
        edge_id = f"{source}->{target}"
    return edge_id if isinstance(edge_id, str) and len(edge_id) <= 200 else None


def _locate(loc: Loc, data: object) -> tuple[_Place, Loc]:
    """The node/edge/tool a raw location is in (by its id when valid, else by index)."""
    timeout = loc[:2] == ("policies", "approval_timeouts") and len(loc) > 3
    if timeout and (node_id := _valid(_NODE_ID, loc[2])):  # a node's timeout: mark the node
        return _node_place(node_id), loc
    if len(loc) < 2 or loc[0] not in _COLLECTIONS or not isinstance(loc[1], int):
        return _DOCUMENT, loc
    key, index, rest = str(loc[0]), loc[1], loc[2:]
    item = _raw_item(data, key, index)
    name = item.get("id" if key == "nodes" else "name") if isinstance(item, Mapping) else None
    if key == "nodes" and (node_id := _valid(_NODE_ID, name)):
        return _node_place(node_id), rest
    if key == "edges" and (edge_id := _raw_edge_id(item)):
        return _edge_place(edge_id), rest
    if key in ("tools", "state") and (ident := _valid(_IDENTIFIER, name)):
        return _Place(f"{_COLLECTIONS[key]} {ident!r}"), rest
    return _Place(f"{_COLLECTIONS[key]} #{index}"), rest


def _shape_problems(exc: ValidationError, data: object, skip: frozenset[Loc]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if any(loc[: len(s)] == s for s in skip):
            continue  # the raw pass already said what is wrong here (NaN, broken unicode)
        place, rest = _locate(loc, data)
        problems.append(place.problem(_error_text(err, rest)))
    return problems
