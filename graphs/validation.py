"""Whole-document validation: raw text → shape (pydantic) → semantics (registry, graph).

`load_document` never stops at the first mistake: it collects every problem it can find, each
located at a node, an edge, a tool or the document, so the editor can mark each bad node.
`problems_of` is the semantic pass alone, for live validation of an already parsed document.
"""

from __future__ import annotations

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_PROBLEMS",
    "MAX_SUBGRAPH_DEPTH",
    "load_document",
    "problems_of",
]

import json
import math
import re
import reprlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import accumulate
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, PydanticSerializationError

from components.errors import GraphInvalid, Problem
from components.expressions import check_expression
from components.registry import Registry
from components.templates import template_fields
from graphs.spec import (
    END,
    SCHEMA_VERSION,
    EdgeDoc,
    GraphDocument,
    Identifier,
    NodeDoc,
    NodeId,
    ToolDecl,
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


# ---------------------------------------------------------------- raw text


class _NonFinite:
    """Stands in for NaN/Infinity while parsing, so the raw pass can say where it was."""


_NON_FINITE = _NonFinite()
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep(text: str) -> bool:
    """Whether arrays/objects nest deeper than MAX_DEPTH: no recursion, no Python-level loop."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def _decode(raw: str | bytes) -> str | Problem:
    too_big = f"document is larger than {MAX_DOCUMENT_BYTES} bytes: split it into sub-graphs"
    if len(raw) > MAX_DOCUMENT_BYTES:
        return _DOCUMENT.problem(too_big)
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        return _DOCUMENT.problem(f"document is not UTF-8 text ({exc.reason} at {exc.start})")
    if size > MAX_DOCUMENT_BYTES:
        return _DOCUMENT.problem(too_big)
    if _too_deep(text):
        return _DOCUMENT.problem(f"document nests deeper than {MAX_DEPTH} levels")
    return text.removeprefix("\ufeff")


class _Parser:
    """`json.loads` hooks that record duplicate keys and non-finite numbers."""

    def __init__(self) -> None:
        self.duplicates: dict[int, list[str]] = {}
        self.marked = False
        self.surrogates = False

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        repeated: list[str] = []
        for key, value in pairs:
            if key in obj and key not in repeated:
                repeated.append(key)
            obj[key] = value
        if repeated:
            self.duplicates[id(obj)] = repeated
            self.marked = True
        return obj

    def number(self, text: str) -> float | _NonFinite:
        value = float(text)
        return value if math.isfinite(value) else self.constant(text)

    def constant(self, _text: str) -> _NonFinite:
        self.marked = True
        return _NON_FINITE


def _parse(text: str) -> tuple[dict[str, Any] | None, _Parser, list[Problem]]:
    parser = _Parser()
    parser.surrogates = parser.marked = bool(_SURROGATE_ESCAPE.search(text))
    try:
        data = json.loads(
            text,
            object_pairs_hook=parser.pairs,
            parse_float=parser.number,
            parse_constant=parser.constant,
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        return None, parser, [_DOCUMENT.problem(f"not valid JSON: {exc.msg} at {where}")]
    except (ValueError, RecursionError):  # int() over its digit limit; depth is pre-checked
        return None, parser, [_DOCUMENT.problem("not valid JSON: a number has too many digits")]
    if not isinstance(data, dict):
        kind = "an array" if isinstance(data, list) else type(data).__name__
        return None, parser, [_DOCUMENT.problem(f"the document must be a JSON object, not {kind}")]
    return data, parser, []


def _children(value: object) -> Iterator[tuple[int | str, object]]:
    if isinstance(value, Mapping):
        yield from value.items()
    elif isinstance(value, list | tuple):
        yield from enumerate(value)


def _raw_marks(data: Mapping[str, Any], parser: _Parser | None) -> tuple[list[Problem], set[Loc]]:
    """One iterative walk over the parsed tree: depth, repeated keys, NaN, broken unicode."""
    problems: list[Problem] = []
    reported: set[Loc] = set()
    check_text = parser is None or parser.surrogates
    stack: list[tuple[object, Loc]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, Mapping | list | tuple) and len(loc) >= MAX_DEPTH:
            too_deep = _DOCUMENT.problem(f"document nests deeper than {MAX_DEPTH} levels")
            raise GraphInvalid([too_deep])
        for repeated in parser.duplicates.get(id(value), []) if parser else []:
            problems.append(_raw_problem(loc, data, f"repeats key {_show(repeated)}: keep one"))
        for key, child in _children(value):
            if text := _bad_scalar(key, child, check_text):
                problems.append(_raw_problem((*loc, key), data, text))
                reported.add((*loc, key))
            if child is _NON_FINITE:  # only in our own parse tree: safe to replace
                value[key] = None  # type: ignore[index]
            stack.append((child, (*loc, key)))
    return problems, reported


def _bad_scalar(key: int | str, value: object, check_text: bool) -> str | None:
    if value is _NON_FINITE or (isinstance(value, float) and not math.isfinite(value)):
        return "NaN and Infinity are not JSON numbers; use a finite number"
    texts = (key, value) if check_text else ()
    if any(isinstance(t, str) and _UNPAIRED.search(t) for t in texts):
        return _UNPAIRED_TEXT
    return None


def _raw_problem(loc: Loc, data: Mapping[str, Any], text: str) -> Problem:
    place, rest = _locate(loc, data)
    subject = _path(rest) or ("the document" if not loc else "the object")
    return place.problem(f"{subject}: {text}")


# ---------------------------------------------------------------- entry points


def load_document(raw: str | bytes | Mapping[str, Any], registry: Registry) -> GraphDocument:
    """A valid graph document, or `GraphInvalid` listing every problem found."""
    parser: _Parser | None = None
    if isinstance(raw, Mapping):
        data: dict[str, Any] | None = dict(raw)
        problems: list[Problem] = []
    else:
        text = _decode(raw)
        if isinstance(text, Problem):
            raise GraphInvalid([text])
        data, parser, problems = _parse(text)
    if data is None:
        raise GraphInvalid(problems)
    reported: set[Loc] = set()
    if parser is None or parser.marked:
        problems, reported = _raw_marks(data, parser)  # raises when nested too deep
    doc, more = _document_problems(data, registry, 0, frozenset(reported))
    problems.extend(more)
    if problems or doc is None:
        raise GraphInvalid(_bounded(problems))
    return doc


def problems_of(doc: GraphDocument, registry: Registry) -> list[Problem]:
    """Every semantic problem of a parsed document (empty when it can be compiled)."""
    return _bounded(_semantic_problems(doc, registry, 0))


def _bounded(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    if len(unique) <= MAX_PROBLEMS:
        return unique
    hidden = len(unique) - MAX_PROBLEMS
    return [*unique[:MAX_PROBLEMS], _DOCUMENT.problem(f"{hidden} more problems not listed")]


def _document_problems(
    data: Mapping[str, Any], registry: Registry, depth: int, skip: frozenset[Loc] = frozenset()
) -> tuple[GraphDocument | None, list[Problem]]:
    try:
        doc = GraphDocument.model_validate(data, strict=True)
    except ValidationError as exc:
        problems = _shape_problems(exc, data, skip)
        if data.get("schema_version") == SCHEMA_VERSION:
            problems.extend(_salvage(data, registry, depth))
        return None, problems
    return doc, _semantic_problems(doc, registry, depth)


def _salvage(data: Mapping[str, Any], registry: Registry, depth: int) -> list[Problem]:
    """Node and tool checks for the items that are well-formed in a malformed document."""
    scope = _Scope(
        registry,
        _raw_names(data.get("tools")),
        frozenset(s for s in _raw_items(data, "secrets") if isinstance(s, str)),
        _BUILTIN_STATE | _raw_names(data.get("state")),
        depth,
    )
    problems: list[Problem] = []
    for item in _raw_items(data, "nodes"):
        if node := _parsed(NodeDoc, item):
            problems.extend(_node_problems(node, scope))
    for item in _raw_items(data, "tools"):
        if tool := _parsed(ToolDecl, item):
            problems.extend(_tool_problems(tool, scope))
    return problems


def _raw_items(data: Mapping[str, Any], key: str) -> list[object]:
    items = data.get(key)
    return items[:500] if isinstance(items, list) else []


def _parsed(model: type[_M], item: object) -> _M | None:
    try:
        return model.model_validate(item, strict=True)
    except ValidationError:
        return None


def _raw_names(items: object) -> frozenset[str]:
    if not isinstance(items, list):
        return frozenset()
    return frozenset(
        i["name"] for i in items if isinstance(i, Mapping) and isinstance(i.get("name"), str)
    )


# ---------------------------------------------------------------- semantics


@dataclass(frozen=True, slots=True)
class _Scope:
    registry: Registry
    tools: frozenset[str]
    secrets: frozenset[str]
    state: frozenset[str]
    depth: int


def _semantic_problems(doc: GraphDocument, registry: Registry, depth: int) -> list[Problem]:
    scope = _Scope(
        registry,
        frozenset(t.name for t in doc.tools),
        frozenset(doc.secrets),
        _BUILTIN_STATE | {f.name for f in doc.state},
        depth,
    )
    problems = _duplicate_problems(doc)
    for node in doc.nodes:
        problems.extend(_node_problems(node, scope))
    problems.extend(_edge_problems(doc))
    for tool in doc.tools:
        problems.extend(_tool_problems(tool, scope))
    problems.extend(_graph_problems(doc))
    return problems


def _duplicates(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for name in names:
        if name in seen:
            repeated[name] = None
        seen.add(name)
    return list(repeated)


def _duplicate_problems(doc: GraphDocument) -> list[Problem]:
    problems = [
        _node_place(n).problem(f"duplicate node id {n!r}: rename one of the nodes")
        for n in _duplicates([n.id for n in doc.nodes])
    ]
    problems += [
        _edge_place(e).problem(f"duplicate edge id {_show(e)}: give each edge its own id")
        for e in _duplicates([e.edge_id for e in doc.edges])
    ]
    problems += [
        _Place(f"tool {t!r}").problem(f"tool {t!r} is declared twice: keep one declaration")
        for t in _duplicates([t.name for t in doc.tools])
    ]
    problems += [
        _Place(f"state field {f!r}").problem(f"state field {f!r} is declared twice")
        for f in _duplicates([f.name for f in doc.state])
    ]
    problems += [
        _DOCUMENT.problem(f"secret {s!r} is listed twice in secrets: keep one")
        for s in _duplicates(doc.secrets)
    ]
    if doc.entry not in {n.id for n in doc.nodes}:
        text = f"entry {doc.entry!r} is not a node: set entry to the id of the first node"
        problems.append(_DOCUMENT.problem(text))
    return problems


def _expression_problem(expression: str) -> str | None:
    if not expression.strip():
        return "the expression is empty: write one or remove it"
    try:
        return check_expression(expression)
    except Exception as exc:  # simpleeval raises more than SyntaxError on odd input
        return f"expression {_show(expression)} cannot be used: {_show(str(exc))}"


def _edge_problems(doc: GraphDocument) -> list[Problem]:
    node_ids = {n.id for n in doc.nodes}
    problems: list[Problem] = []
    for edge in doc.edges:
        place = _edge_place(edge.edge_id)
        if not edge.edge_id.isprintable():
            problems.append(place.problem("edge id has control or invisible characters"))
        if edge.source not in node_ids:
            text = f"source {edge.source!r} is not a node: connect the edge or delete it"
            problems.append(place.problem(text))
        if edge.target not in node_ids and edge.target != END:
            text = f"target {_show(edge.target)} is not a node: connect it to a node or {END!r}"
            problems.append(place.problem(text))
        if edge.condition is not None and (bad := _expression_problem(edge.condition)):
            problems.append(place.problem(f"condition: {bad}"))
    return problems


def _config_problems(
    model: type[BaseModel], config: dict[str, Any], place: _Place, scope: _Scope
) -> list[Problem]:
    """Validate a config, then check every marked field (tools, secrets, templates, ...)."""
    values: object = config  # when invalid, still check the marked fields the user wrote
    problems: list[Problem] = []
    try:
        values = model.model_validate(config).model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        problems = [place.problem(_error_text(e, tuple(e["loc"]), "config")) for e in exc.errors()]
    except PydanticSerializationError:
        pass  # a Config that does not dump to JSON: check what the user wrote
    for kind, loc, value in _marked_values(_schema_of(model), values):
        problems.extend(_marked_problems(kind, _path(loc, "config"), value, place, scope))
    return problems


@lru_cache(maxsize=512)
def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """A Config's JSON schema (generating it costs milliseconds; 500 nodes share a few)."""
    return model.model_json_schema()


def _node_problems(node: NodeDoc, scope: _Scope) -> list[Problem]:
    place = _node_place(node.id)
    spec = scope.registry.nodes.get(node.type)
    if spec is None:
        return [place.problem(_unknown("node type", node.type, scope.registry.nodes))]
    return _config_problems(spec.config_model, node.config, place, scope)


def _unknown(kind: str, name: str, known: Mapping[str, object]) -> str:
    if not known:
        return f"unknown {kind} {name!r}: no {kind}s are registered (are plugins installed?)"
    return f"unknown {kind} {name!r}: use one of {', '.join(sorted(known))}"


def _tool_problems(tool: ToolDecl, scope: _Scope) -> list[Problem]:
    place = _Place(f"tool {tool.name!r}")
    spec = scope.registry.tool_types.get(tool.type)
    if spec is None:
        return [place.problem(_unknown("tool type", tool.type, scope.registry.tool_types))]
    call_scope = replace(scope, state=frozenset({"args"}))  # tool templates read the call
    return _config_problems(spec.config_model, tool.config, place, call_scope)


# ---------------------------------------------------------------- marked config fields


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return schema
    target = defs.get(ref.removeprefix("#/$defs/"), {})
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def _sub_schemas(schema: Mapping[str, Any], value: object) -> Iterator[tuple[Loc, object]]:
    """(relative location, sub-schema) pairs that describe `value`'s parts."""
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield (), sub
    if isinstance(value, list):
        prefix, items = schema.get("prefixItems", []), schema.get("items")
        for index in range(len(value)):
            yield (index,), prefix[index] if index < len(prefix) else items
    elif isinstance(value, Mapping):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key in value:
            yield (key,), props.get(key, extra)


def _child(value: object, rel: Loc) -> object:
    if not rel:
        return value
    return value[rel[0]]  # type: ignore[index]


def _marked_values(schema: Mapping[str, Any], values: object) -> list[tuple[str, Loc, object]]:
    """Every value in `values` whose schema carries an ``x-studio`` marker, with its path."""
    defs = schema.get("$defs", {})
    found: dict[Loc, tuple[str, object]] = {}
    stack: list[tuple[Mapping[str, Any], object, Loc, int]] = [(schema, values, (), 0)]
    while stack:
        current, value, loc, hops = stack.pop()
        if hops > 4 * MAX_DEPTH:
            continue  # a recursive schema or a cyclic value: nothing sensible below here
        current = _resolve(current, defs)
        kind = current.get("x-studio")
        if isinstance(kind, str):
            fits = isinstance(value, dict) if kind == "graph" else isinstance(value, str)
            if fits:
                found.setdefault(loc, (kind, value))
            continue
        for rel, sub in reversed(list(_sub_schemas(current, value))):  # document order
            if isinstance(sub, Mapping):
                stack.append((sub, _child(value, rel), (*loc, *rel), hops + 1))
    return [(kind, loc, value) for loc, (kind, value) in found.items()]


def _marked_problems(
    kind: str, path: str, value: object, place: _Place, scope: _Scope
) -> list[Problem]:
    if kind == "graph" and isinstance(value, dict):
        return _subgraph_problems(value, path, place, scope)
    if not isinstance(value, str):
        return []
    text: str | None = None
    if kind == "tool" and value not in scope.tools:
        text = f"tool {_show(value)} is not allowed in this graph: declare it under tools"
    elif kind == "secret" and value not in scope.secrets:
        text = f"secret {_show(value)} is not listed in secrets: add its name there"
    elif kind == "expression":
        text = _expression_problem(value)
    elif kind == "template" and (missing := sorted(template_fields(value) - scope.state)):
        names = ", ".join(repr(m) for m in missing)
        text = f"reads {names}, not a state field: add it under state or fix the template"
    return [place.problem(f"{path}: {text}")] if text else []


def _subgraph_problems(
    value: dict[str, Any], path: str, place: _Place, scope: _Scope
) -> list[Problem]:
    if scope.depth >= MAX_SUBGRAPH_DEPTH:
        limit = f"sub-graphs nest deeper than {MAX_SUBGRAPH_DEPTH} levels: flatten them"
        return [place.problem(f"{path}: {limit}")]
    _, inner = _document_problems(value, scope.registry, scope.depth + 1)
    return [place.problem(f"in sub-graph {path}, {p.where}: {p.message}") for p in inner]


# ---------------------------------------------------------------- graph structure


def _graph_problems(doc: GraphDocument) -> list[Problem]:
    adjacency: dict[str, list[str]] = {node.id: [] for node in doc.nodes}
    for edge in doc.edges:
        if edge.source in adjacency and edge.target in adjacency:
            adjacency[edge.source].append(edge.target)
    return [
        *_unreachable(doc, adjacency),
        *_ambiguous_defaults(doc),
        *_closed_cycles(doc, adjacency),
    ]


def _unreachable(doc: GraphDocument, adjacency: Mapping[str, list[str]]) -> list[Problem]:
    if doc.entry not in adjacency:
        return []  # already reported; every node would look unreachable
    seen, queue = {doc.entry}, deque([doc.entry])
    while queue:
        for target in adjacency[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return [
        _node_place(node_id).problem("unreachable node: connect it or delete it")
        for node_id in adjacency
        if node_id not in seen
    ]


def _ambiguous_defaults(doc: GraphDocument) -> list[Problem]:
    outgoing: dict[str, list[EdgeDoc]] = {}
    for edge in doc.edges:
        outgoing.setdefault(edge.source, []).append(edge)
    problems = []
    for source, out in outgoing.items():
        defaults = [e.edge_id for e in out if e.condition is None]
        if len(defaults) > 1 and len(defaults) < len(out):
            names = ", ".join(_show(d) for d in defaults)
            text = (
                f"ambiguous default: {len(defaults)} unconditional edges ({names}) next to "
                "conditional ones; keep one default and give the others a condition"
            )
            problems.append(_node_place(source).problem(text))
    return problems


def _closed_cycles(doc: GraphDocument, adjacency: Mapping[str, list[str]]) -> list[Problem]:
    if doc.policies.max_steps is not None:
        return []
    components = _components(adjacency)
    component_of = {node: i for i, members in enumerate(components) for node in members}
    left = {
        component_of[e.source]
        for e in doc.edges
        if e.source in component_of and component_of.get(e.target) != component_of[e.source]
    }
    problems = []
    for number, members in enumerate(components):
        start, inside = members[0], set(members)
        if number in left or (len(members) == 1 and start not in adjacency[start]):
            continue
        path = _cycle_through(start, inside, adjacency)
        shown = " → ".join(path if len(path) <= 12 else [*path[:11], "…", start])
        spans = f" (the loop spans {len(members)} nodes)" if len(members) > len(path) - 1 else ""
        text = (
            f"cycle {shown}{spans} has no exit and no step limit: add a conditional edge "
            "out of it or set policies.max_steps"
        )
        problems.append(_node_place(start).problem(text))
    return problems


def _components(adjacency: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (iterative Tarjan), members in document order."""
    order = {node: i for i, node in enumerate(adjacency)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in adjacency:
        if root in index:
            continue
        work = [(root, 0)]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edge_no = work[-1]
            if edge_no < len(adjacency[node]):
                work[-1] = (node, edge_no + 1)
                target = adjacency[node][edge_no]
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members: list[str] = []
                while not members or members[-1] != node:
                    members.append(stack.pop())
                    on_stack.discard(members[-1])
                found.append(sorted(members, key=order.__getitem__))
    return found


def _cycle_through(start: str, inside: set[str], adjacency: Mapping[str, list[str]]) -> list[str]:
    """A shortest cycle start → … → start inside one strongly connected component."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in adjacency[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if target in inside and target not in parents:
                parents[target] = node
                queue.append(target)
    return [start, start]
