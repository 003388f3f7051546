"""The published JSON Schema (`graphs.spec.json_schema`) agrees with the pydantic models.

jsonschema is used when it is importable (it is not a declared dependency); a small evaluator
for the keywords pydantic emits checks every case as well, so nothing here is ever skipped.
Validation is compared with pydantic in strict mode, which is how `load_document` parses.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from graphs.spec import SCHEMA_VERSION, GraphDocument, json_schema

Doc = dict[str, Any]
HAVE_JSONSCHEMA = importlib.util.find_spec("jsonschema") is not None

_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_KNOWN_KEYWORDS = {
    "$defs", "$id", "$ref", "$schema", "additionalProperties", "anyOf", "const", "default",
    "description", "enum", "items", "maxItems", "maxLength", "maxProperties", "maximum",
    "minItems",
    "minLength", "minimum", "pattern", "properties", "required", "title", "type",
}  # fmt: skip


def _same(a: object, b: object) -> bool:
    """JSON Schema equality: 1 == 1.0, but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _valid(schema: Doc, value: object, root: Doc) -> bool:
    """A small JSON Schema evaluator for the keywords pydantic emits (ECMA-like `$`)."""
    if "$ref" in schema:
        schema = {**root["$defs"][schema["$ref"].rsplit("/", 1)[1]], **schema}
        del schema["$ref"]
    if "anyOf" in schema and not any(_valid(s, value, root) for s in schema["anyOf"]):
        return False
    if "type" in schema and not _TYPES[schema["type"]](value):
        return False
    if "const" in schema and not _same(schema["const"], value):
        return False
    if "enum" in schema and not any(_same(e, value) for e in schema["enum"]):
        return False
    if isinstance(value, str):
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern.replace("$", r"\Z"), value):
            return False
        return bool(schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return bool(schema.get("minimum", value) <= value <= schema.get("maximum", value))
    if isinstance(value, list):
        items = schema.get("items", {})
        return len(value) <= schema.get("maxItems", len(value)) and all(
            _valid(items, v, root) for v in value
        )
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        if any(key not in value for key in schema.get("required", [])):
            return False
        if len(value) > schema.get("maxProperties", len(value)):
            return False
        for key, item in value.items():
            sub = props.get(key, extra)
            if sub is False or (isinstance(sub, dict) and not _valid(sub, item, root)):
                return False
    return True


def _walk(schema: Doc) -> Iterator[Doc]:
    """Every (sub)schema: properties, items, anyOf branches, definitions."""
    stack = [schema]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.get("properties", {}).values())
        stack.extend(current.get("$defs", {}).values())
        stack.extend(current.get("anyOf", []))
        stack.extend(
            s
            for s in (current.get("items"), current.get("additionalProperties"))
            if isinstance(s, dict)
        )


def _pydantic_accepts(doc: object) -> bool:
    try:
        GraphDocument.model_validate(doc, strict=True)
    except ValidationError:
        return False
    return True


@cache
def _schema() -> Doc:
    return json_schema()


@cache
def _jsonschema_check() -> Callable[[object], bool] | None:
    if not HAVE_JSONSCHEMA:
        return None
    import jsonschema

    return jsonschema.Draft202012Validator(_schema()).is_valid  # type: ignore[no-any-return]


def _verdicts(doc: object) -> set[bool]:
    verdicts = {_pydantic_accepts(doc), _valid(_schema(), doc, _schema())}
    if check := _jsonschema_check():
        verdicts.add(check(doc))
    return verdicts


# ------------------------------------------------------------------ the schema itself


def test_schema_declares_its_dialect_and_versioned_id() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/graph-v{SCHEMA_VERSION}.json")
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert set(schema["required"]) == {"schema_version", "name", "entry", "nodes"}


def test_schema_is_valid_json_schema() -> None:
    schema = json_schema()
    for sub in _walk(schema):
        if "type" in sub:
            assert sub["type"] in _TYPES, sub
        if "pattern" in sub:
            re.compile(sub["pattern"])
    if HAVE_JSONSCHEMA:
        import jsonschema

        jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_uses_only_keywords_the_evaluator_knows() -> None:
    schema = json_schema()
    for sub in _walk(schema):
        assert set(sub) <= _KNOWN_KEYWORDS, sub


def test_every_ref_resolves() -> None:
    schema = json_schema()
    refs = {sub["$ref"] for sub in _walk(schema) if "$ref" in sub}
    assert refs, "the document refers to its node, edge and policy definitions"
    for ref in refs:
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schema["$defs"]


def test_every_model_forbids_unknown_fields() -> None:
    schema = json_schema()
    models = {"GraphDocument": schema, **schema["$defs"]}
    assert set(models) >= {"GraphDocument", "NodeDoc", "EdgeDoc", "StateField", "ToolDecl"}
    for name, model in models.items():
        assert model["additionalProperties"] is False, name


def test_published_limits_match_the_models() -> None:
    schema = json_schema()
    props, node = schema["properties"], schema["$defs"]["NodeDoc"]["properties"]
    assert (props["nodes"]["maxItems"], props["edges"]["maxItems"]) == (500, 2_000)
    assert re.fullmatch(node["id"]["pattern"].strip("^$"), "lookup-2_b")
    assert not re.fullmatch(node["id"]["pattern"].strip("^$"), "\u0430")  # Cyrillic a


# ------------------------------------------------------------------ documents


def full_document() -> Doc:
    return copy.deepcopy(
        {
            "schema_version": 1,
            "name": "Refund desk ✓ 退款",
            "description": "Answers refund questions.",
            "entry": "ask",
            "nodes": [
                {
                    "id": "ask",
                    "type": "llm",
                    "label": "Ask the model 🙂",
                    "description": "",
                    "config": {"prompt": "{{ question }}", "tools": ["refund"]},
                    "position": {"x": 10, "y": -2.5},
                },
                {"id": "gate-1", "type": "human_approval"},
            ],
            "edges": [
                {"source": "ask", "target": "gate-1", "condition": "amount > 100"},
                {"id": "finish", "source": "ask", "target": "__end__", "label": "small"},
                {"source": "gate-1", "target": "__end__"},
            ],
            "state": [
                {"name": "question", "type": "string", "input": True, "description": "?"},
                {"name": "amount", "type": "number", "default": 0},
                {"name": "log", "type": "list", "reducer": "append", "default": []},
            ],
            "tools": [{"name": "refund", "type": "http", "tier": "admin", "config": {}}],
            "secrets": ["PAYMENTS_KEY"],
            "policies": {
                "max_steps": 40,
                "untrusted_content_gates_effects": False,
                "approval_timeouts": {"gate-1": {"after": 900, "action": "reject"}},
            },
        }
    )


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parents:
            target = target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return mutate


_DELETE = object()


def _keep_only(doc: Doc, *keys: str) -> None:
    for key in set(doc) - set(keys):
        del doc[key]


CASES: list[tuple[str, Callable[[Doc], None], bool]] = [
    ("full document", lambda d: None, True),
    ("minimal document", lambda d: _keep_only(d, "schema_version", "name", "entry", "nodes"), True),
    ("null max_steps", _set("policies.max_steps", None), True),
    ("null edge id", _set("edges.0.id", None), True),
    ("integer coordinates", _set("nodes.0.position", {"x": 1, "y": 2}), True),
    ("missing name", _set("name", _DELETE), False),
    ("missing nodes", _set("nodes", _DELETE), False),
    ("unknown top-level field", _set("colour", "red"), False),
    ("unknown node field", _set("nodes.0.colour", "red"), False),
    ("unknown position field", _set("nodes.0.position.z", 1), False),
    ("schema_version 2", _set("schema_version", 2), False),
    ("schema_version string", _set("schema_version", "1"), False),
    ("node id starts with digit", _set("nodes.0.id", "1ask"), False),
    ("node id with space", _set("nodes.0.id", "a sk"), False),
    ("node id homoglyph", _set("nodes.0.id", "\u0430sk"), False),
    ("node id too long", _set("nodes.0.id", "a" * 65), False),
    ("node type with dash", _set("nodes.0.type", "human-approval"), False),
    ("edge without target", _set("edges.0.target", _DELETE), False),
    ("edge source not an id", _set("edges.0.source", "__end__"), False),
    ("condition too long", _set("edges.0.condition", "x" * 2_001), False),
    ("label too long", _set("nodes.0.label", "x" * 201), False),
    ("description too long", _set("description", "x" * 2_001), False),
    ("empty name", _set("name", ""), False),
    ("max_steps 0", _set("policies.max_steps", 0), False),
    ("max_steps too large", _set("policies.max_steps", 10_001), False),
    ("max_steps as text", _set("policies.max_steps", "5"), False),
    ("coordinate as text", _set("nodes.0.position.x", "1.5"), False),
    ("input flag as number", _set("state.0.input", 1), False),
    ("unknown state type", _set("state.0.type", "float"), False),
    ("unknown reducer", _set("state.2.reducer", "merge"), False),
    ("unknown tier", _set("tools.0.tier", "root"), False),
    ("secret name with dot", _set("secrets.0", "payments.key"), False),
    ("config as a list", _set("nodes.0.config", []), False),
    ("nodes as an object", _set("nodes", {"ask": {}}), False),
    ("501 nodes", _set("nodes", [{"id": f"n{i}", "type": "t"} for i in range(501)]), False),
    ("timeout with warning", _set("policies.approval_timeouts.gate-1.warn_before", 60), True),
    ("timeout escalates", _set("policies.approval_timeouts.gate-1.action", "escalate"), True),
    ("no timeouts", _set("policies.approval_timeouts", {}), True),
    ("timeout action unknown", _set("policies.approval_timeouts.gate-1.action", "approve"), False),
    ("timeout after too short", _set("policies.approval_timeouts.gate-1.after", 59), False),
    ("timeout after too long", _set("policies.approval_timeouts.gate-1.after", 2_592_001), False),
    ("timeout after as text", _set("policies.approval_timeouts.gate-1.after", "900"), False),
    ("timeout without action", _set("policies.approval_timeouts.gate-1.action", _DELETE), False),
    ("timeout unknown field", _set("policies.approval_timeouts.gate-1.colour", "red"), False),
    ("warn_before 0", _set("policies.approval_timeouts.gate-1.warn_before", 0), False),
    ("timeouts as a list", _set("policies.approval_timeouts", []), False),
    (
        "501 timeouts",
        _set(
            "policies.approval_timeouts",
            {f"n{i}": {"after": 60, "action": "leave"} for i in range(501)},
        ),
        False,
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_schema_and_models_agree(mutate: Callable[[Doc], None], expected: bool) -> None:
    doc = full_document()
    mutate(doc)
    assert _verdicts(doc) == {expected}


def test_shipped_example_graphs_validate_against_schema_and_models() -> None:
    examples = sorted((Path(__file__).parents[2] / "graphs" / "examples").glob("*.json"))
    assert examples, "graphs/examples/ ships example graphs"
    for path in examples:
        assert _verdicts(json.loads(path.read_text(encoding="utf-8"))) == {True}, path.name


_POOL: list[object] = [None, False, 0, -1, 1.5, "", "x", "a" * 300, [], {}, [1], {"k": 1}]


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _mutated(rng: random.Random) -> Doc:
    doc = full_document()
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(_paths(doc)))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.3 and isinstance(parent, dict):
            parent[f"extra_{rng.randint(0, 9)}"] = 1
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(_POOL))
    return doc


@pytest.mark.parametrize("seed", range(8))
def test_randomly_broken_documents_get_the_same_verdict(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = []
    for _ in range(60):
        doc = _mutated(rng)
        verdicts = _verdicts(doc)
        assert len(verdicts) == 1, doc
        outcomes.append(verdicts.pop())
    assert False in outcomes  # the mutations do break documents
