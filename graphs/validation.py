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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from components.errors import GraphInvalid, Problem
from components.expressions import check_expression
from components.registry import Registry
from components.templates import template_fields
from graphs._limits import (
    _BUILTIN_STATE,
    _M,
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_PROBLEMS,
    MAX_SUBGRAPH_DEPTH,
    Loc,
)
from graphs._places import (
    _DOCUMENT,
    _edge_place,
    _error_text,
    _node_place,
    _path,
    _Place,
    _shape_problems,
    _show,
)
from graphs._policy_checks import _timeout_problems
from graphs._rawjson import _decode, _parse, _Parser, _raw_marks
from graphs._structure import _graph_problems
from graphs.spec import (
    END,
    SCHEMA_VERSION,
    GraphDocument,
    NodeDoc,
    ToolDecl,
)

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
    problems.extend(_timeout_problems(doc, depth))
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
