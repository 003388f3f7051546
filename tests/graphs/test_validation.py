"""Graph document validation: raw input, shape, semantics, structure — and hostile input."""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from components.errors import GraphInvalid, Problem
from components.registry import Registry
from graphs.spec import GraphDocument
from graphs.validation import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_PROBLEMS,
    MAX_SUBGRAPH_DEPTH,
    load_document,
    problems_of,
)
from tests.graphs.fake_components import fake_registry

Doc = dict[str, Any]


@pytest.fixture
def registry() -> Registry:
    return fake_registry()


def graph() -> Doc:
    """A valid graph that uses every marker: tools, secrets, templates, expressions."""
    return copy.deepcopy(
        {
            "schema_version": 1,
            "name": "support",
            "entry": "ask",
            "state": [{"name": "question", "input": True}, {"name": "answer"}],
            "secrets": ["OPENAI_KEY"],
            "tools": [
                {
                    "name": "lookup",
                    "type": "http",
                    "config": {"url": "https://example.invalid", "auth_secret": "OPENAI_KEY"},
                }
            ],
            "nodes": [
                {
                    "id": "ask",
                    "type": "llm",
                    "config": {
                        "prompt": "Answer {{ question }} given {{ messages }}",
                        "tools": ["lookup"],
                        "api_key_secret": "OPENAI_KEY",
                    },
                },
                {
                    "id": "shape",
                    "type": "transform",
                    "config": {"expression": "upper(answer)", "output": "answer"},
                },
                {"id": "done", "type": "output", "config": {"template": "{{ answer }}"}},
            ],
            "edges": [
                {"source": "ask", "target": "shape"},
                {"source": "shape", "target": "done", "condition": "len(answer) > 0"},
                {"source": "shape", "target": "ask"},
                {"source": "done", "target": "__end__"},
            ],
        }
    )


def rejected(raw: str | bytes | Doc, registry: Registry) -> list[Problem]:
    with pytest.raises(GraphInvalid) as info:
        load_document(raw, registry)
    assert info.value.problems, "GraphInvalid must list at least one problem"
    return info.value.problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def find(problems: list[Problem], where: str, fragment: str) -> Problem:
    hits = [p for p in problems if p.where == where and fragment in p.message]
    assert hits, f"no problem at {where!r} mentioning {fragment!r} in {problems}"
    return hits[0]


def with_nodes(first: Doc, *rest: object, edges: list[Doc] | None = None, **extra: Any) -> Doc:
    """A document with these nodes (the first is the entry); `rest` may be malformed."""
    doc = {"schema_version": 1, "name": "g", "entry": first["id"], "nodes": [first, *rest]}
    return {**doc, "edges": edges or [], **extra}


def noop(node_id: str) -> Doc:
    return {"id": node_id, "type": "noop"}


def chain(*ids: str) -> list[Doc]:
    return [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]


# ------------------------------------------------------------------ valid input


@pytest.mark.parametrize("form", [json.dumps, lambda d: json.dumps(d).encode(), dict])
def test_valid_document_loads_from_text_bytes_and_mapping(
    form: Callable[[Doc], Any], registry: Registry
) -> None:
    doc = load_document(form(graph()), registry)
    assert doc == GraphDocument.model_validate(graph())
    assert [n.id for n in doc.nodes] == ["ask", "shape", "done"]
    assert problems_of(doc, registry) == []


def test_utf8_byte_order_mark_is_accepted(registry: Registry) -> None:
    raw = b"\xef\xbb\xbf" + json.dumps(graph()).encode()
    assert load_document(raw, registry).name == "support"


def test_document_of_exactly_the_size_limit_is_parsed(registry: Registry) -> None:
    text = json.dumps(graph())
    padded = text + " " * (MAX_DOCUMENT_BYTES - len(text))
    assert len(padded.encode()) == MAX_DOCUMENT_BYTES
    assert load_document(padded, registry).name == "support"


# ------------------------------------------------------------------ raw input


@pytest.mark.parametrize("as_bytes", [True, False])
def test_oversized_document_is_rejected_before_parsing(
    as_bytes: bool, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("an oversized document must not reach the JSON parser")

    monkeypatch.setattr(json, "loads", refuse)
    text = json.dumps({**graph(), "description": "x" * 100}) + " " * MAX_DOCUMENT_BYTES
    problem = only(rejected(text.encode() if as_bytes else text, registry))
    assert problem.where == "document"
    assert f"larger than {MAX_DOCUMENT_BYTES} bytes" in problem.message


def test_size_limit_counts_utf8_bytes_not_characters(registry: Registry) -> None:
    text = json.dumps(graph(), ensure_ascii=False)
    text = text[:-1] + ', "description": "' + "é" * (MAX_DOCUMENT_BYTES // 2 + 10) + '"}'
    assert len(text) < MAX_DOCUMENT_BYTES < len(text.encode())
    assert "larger than" in only(rejected(text, registry)).message


@pytest.mark.parametrize(
    "text",
    ["", "{", '{"name": }', "{'name': 'x'}", '{"name": "x",}', "nul", '{"a": 1} trailing'],
)
def test_malformed_json_is_one_document_problem_with_a_position(
    text: str, registry: Registry
) -> None:
    problem = only(rejected(text, registry))
    assert problem.where == "document"
    assert problem.message.startswith("not valid JSON")
    assert "line 1 column" in problem.message


@pytest.mark.parametrize(
    ("text", "kind"), [("[]", "array"), ("1", "int"), ('"x"', "str"), ("null", "NoneType")]
)
def test_top_level_must_be_an_object(text: str, kind: str, registry: Registry) -> None:
    problem = only(rejected(text, registry))
    assert "must be a JSON object" in problem.message
    assert kind in problem.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "\xff\xfe"}',
        json.dumps(graph()).encode("utf-16"),
        '{"name": "\ud800"}',  # a lone surrogate cannot be encoded as UTF-8
    ],
    ids=["invalid-bytes", "utf-16", "lone-surrogate"],
)
def test_text_that_is_not_utf8_is_rejected(raw: str | bytes, registry: Registry) -> None:
    assert "not UTF-8" in only(rejected(raw, registry)).message


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        "[" * 100_000,  # unbalanced as well as deep
        json.dumps(graph())[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
    ids=["arrays", "objects", "unbalanced", "inside-a-graph"],
)
def test_deep_nesting_is_rejected_without_recursion(text: str, registry: Registry) -> None:
    problem = only(rejected(text, registry))
    assert problem.message == f"document nests deeper than {MAX_DEPTH} levels"


def _nested_config(levels: int) -> Doc:
    """A document whose deepest object is at `levels` (document=1, nodes=2, node=3, ...)."""
    config: Any = 1
    for _ in range(levels - 3):
        config = {"x": config}
    doc = with_nodes({"id": "a", "type": "noop", "config": {}})
    doc["nodes"][0]["config"] = config
    return doc


@pytest.mark.parametrize("as_text", [True, False])
def test_depth_limit_is_exact(as_text: bool, registry: Registry) -> None:
    def load(doc: Doc) -> list[Problem]:
        return rejected(json.dumps(doc) if as_text else doc, registry)

    at_limit = load(_nested_config(MAX_DEPTH))
    assert not any("nests deeper" in p.message for p in at_limit)
    assert find(at_limit, "node 'a'", "unknown field 'config.x'").node_id == "a"
    assert "nests deeper" in only(load(_nested_config(MAX_DEPTH + 1))).message


def test_brackets_and_escaped_quotes_inside_strings_do_not_count_as_depth(
    registry: Registry,
) -> None:
    doc = graph()
    doc["description"] = '\\"[[[{{' + "[" * 1_500 + '\\"'
    doc["nodes"][0]["description"] = '"' + "{" * 500 + "\\"
    assert load_document(json.dumps(doc), registry).description == doc["description"]


def test_deep_mapping_input_is_rejected_iteratively(registry: Registry) -> None:
    deep: Doc = {}
    cursor = deep
    for _ in range(100_000):
        cursor["a"] = {}
        cursor = cursor["a"]
    assert "nests deeper" in only(rejected({**graph(), "extra": deep}, registry)).message


def test_self_referencing_mapping_input_is_rejected(registry: Registry) -> None:
    doc = graph()
    doc["nodes"][0]["config"]["loop"] = doc
    assert "nests deeper" in only(rejected(doc, registry)).message


def _text(nodes: str, before: str = "") -> str:
    head = "{" + before + '"schema_version": 1, "name": "g", "entry": "ask", "nodes": '
    return head + nodes + "}"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            _text('[{"id": "ask", "type": "noop"}]', before='"name": "a", '),
            "document",
            "the document: repeats key 'name': keep one",
        ),
        (
            _text('[{"id": "ask", "type": "llm", "type": "noop"}]'),
            "node 'ask'",
            "the object: repeats key 'type': keep one",
        ),
        (
            _text('[{"id": "ask", "type": "noop", "config": {"k": 1, "k": 2}}]'),
            "node 'ask'",
            "config: repeats key 'k': keep one",
        ),
        (
            _text('[{"id": "x", "id": "ask", "type": "noop"}]'),
            "node 'ask'",
            "the object: repeats key 'id': keep one",
        ),
    ],
)
def test_duplicate_keys_are_reported_where_they_are(
    text: str, where: str, message: str, registry: Registry
) -> None:
    problem = find(rejected(text, registry), where, message)
    assert problem.message == message


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_one_problem_at_the_node(number: str, registry: Registry) -> None:
    doc = graph()
    doc["nodes"][1]["position"] = {"x": 12345.5, "y": 0}
    text = json.dumps(doc).replace("12345.5", number)
    problem = only(rejected(text, registry))
    assert (problem.where, problem.node_id) == ("node 'shape'", "shape")
    assert problem.message.startswith("position.x: NaN and Infinity are not JSON numbers")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_in_mapping_input_are_rejected(value: float, registry: Registry) -> None:
    doc = graph()
    doc["nodes"][2]["position"] = {"x": 0, "y": value}
    problem = only(rejected(doc, registry))
    assert (problem.node_id, problem.message[:10]) == ("done", "position.y")


def test_integer_with_thousands_of_digits_is_rejected(registry: Registry) -> None:
    text = json.dumps(graph())[:-1] + ', "extra": 1' + "0" * 5_000 + "}"
    assert "too many digits" in only(rejected(text, registry)).message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            _text('[{"id": "ask", "type": "noop"}]', before='"description": "x\\ud800", '),
            "document",
        ),
        (_text('[{"id": "ask", "type": "noop", "label": "\\udfff x"}]'), "node 'ask'"),
        (_text('[{"id": "ask", "type": "llm", "config": {"prompt": "\\udc00"}}]'), "node 'ask'"),
        (_text('[{"id": "ask", "type": "noop", "config": {"\\udc00": 1}}]'), "node 'ask'"),
    ],
)
def test_unpaired_surrogate_escapes_are_rejected_at_their_place(
    text: str, where: str, registry: Registry
) -> None:
    problems = rejected(text, registry)
    assert "unpaired UTF-16 surrogate" in problems[0].message
    assert all(p.where == where and "unpaired UTF-16 surrogate" in p.message for p in problems)


def test_paired_surrogate_escapes_are_fine(registry: Registry) -> None:
    text = json.dumps(graph())[:-1] + ', "description": "smile \\ud83d\\ude00"}'
    assert load_document(text, registry).description == "smile \U0001f600"


# ------------------------------------------------------------------ shape


def test_unknown_top_level_field(registry: Registry) -> None:
    problem = only(rejected({**graph(), "colour": "red"}, registry))
    assert problem.where == "document"
    assert problem.message == ("unknown field 'colour': remove it (unknown fields are not allowed)")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (2, "schema_version must be 1, got 2: this file was written by a newer Agent Studio"),
        ("1", "schema_version must be 1, got '1'"),
        (1.5, "schema_version must be 1, got 1.5"),
    ],
)
def test_schema_version(version: object, expected: str, registry: Registry) -> None:
    doc = graph()
    doc["schema_version"] = version
    doc["nodes"][0]["type"] = "no_such_type"  # not checked against a format we do not know
    assert only(rejected(doc, registry)).message == expected


def test_missing_required_top_level_fields(registry: Registry) -> None:
    problems = rejected({"schema_version": 1}, registry)
    messages = {p.message for p in problems}
    assert messages == {
        f"missing required field '{f}': fill it in" for f in ("name", "entry", "nodes")
    }


@pytest.mark.parametrize(
    ("node", "where", "node_id", "fragment"),
    [
        ({"id": "b", "type": "noop", "colour": 1}, "node 'b'", "b", "unknown field 'colour'"),
        ({"id": "b"}, "node 'b'", "b", "missing required field 'type'"),
        ({"id": "9b", "type": "noop"}, "node #1", None, "id '9b' is not allowed"),
        ({"id": "b" * 65, "type": "noop"}, "node #1", None, "start with an ASCII letter"),
        ({"id": "b", "type": "noop", "position": {"x": "1.5"}}, "node 'b'", "b", "position.x"),
        ({"id": "b", "type": "noop", "config": []}, "node 'b'", "b", "config:"),
        ("not a node", "node #1", None, "valid dictionary"),
    ],
)
def test_node_shape_errors_name_the_node(
    node: object, where: str, node_id: str | None, fragment: str, registry: Registry
) -> None:
    problem = only(rejected(with_nodes(noop("a"), node, edges=chain("a", "b")), registry))
    assert (problem.where, problem.node_id) == (where, node_id)
    assert fragment in problem.message


@pytest.mark.parametrize(
    ("edge", "where", "edge_id"),
    [
        ({"source": "a"}, "edge #0", None),
        ({"source": "a", "target": "b", "weight": 1}, "edge 'a->b'", "a->b"),
        ({"id": "main", "source": "a", "target": "b", "condition": 3}, "edge 'main'", "main"),
        ({"id": "e" * 100_000, "source": "a", "target": "b"}, "edge #0", None),
    ],
    ids=["no-target", "unknown-field", "bad-condition", "huge-id"],
)
def test_edge_shape_errors_name_the_edge(
    edge: Doc, where: str, edge_id: str | None, registry: Registry
) -> None:
    problem = only(rejected(with_nodes(noop("a"), noop("b"), edges=[edge]), registry))
    assert (problem.where, problem.edge_id, problem.node_id) == (where, edge_id, None)


def test_tool_and_policy_shape_errors(registry: Registry) -> None:
    doc = graph()
    doc["tools"][0]["tier"] = "root"
    doc["policies"] = {"max_steps": "5"}
    problems = rejected(doc, registry)
    assert find(problems, "tool 'lookup'", "tier")
    assert find(problems, "document", "policies.max_steps")
    assert len(problems) == 2


def test_shape_errors_do_not_hide_node_level_problems(registry: Registry) -> None:
    doc = graph()
    doc["colour"] = "red"
    doc["nodes"][1]["type"] = "teleport"
    doc["nodes"][0]["config"]["tools"].append("refund")
    problems = rejected(doc, registry)
    assert find(problems, "document", "unknown field 'colour'")
    assert find(problems, "node 'shape'", "unknown node type 'teleport'")
    assert find(problems, "node 'ask'", "tool 'refund' is not allowed")


HOSTILE = ["\u202e", "\u2066", "\x00", "\u200d", "\u200b", "\ufeff", "\u0430", "\uff51"]


@pytest.mark.parametrize(
    ("mutate", "where", "fragment"),
    [
        (lambda d: d.update(name="inv\u202eoice"), "document", "U+202E"),
        (lambda d: d["nodes"][0].update(label="ok\x00"), "node 'ask'", "U+0000"),
        (lambda d: d["nodes"][0].update(description="\u2066x"), "node 'ask'", "U+2066"),
        (lambda d: d["nodes"][1].update(id="sh\u200dape"), "node #1", "'sh\\u200dape'"),
        (lambda d: d["nodes"][1].update(id="sh\u0430pe"), "node #1", "'sh\\u0430pe'"),
        (lambda d: d.update(entry="\u0430sk"), "document", "entry '\\u0430sk'"),
        (lambda d: d["edges"][0].update(source="\u0430sk"), "edge '\\u0430sk->shape'", "source"),
        (lambda d: d["edges"][0].update(id="e\u202e1"), "edge 'e\\u202e1'", "invisible"),
        (
            lambda d: d["edges"][0].update(target="sh\u200bape"),
            "edge 'ask->sh\\u200bape'",
            "not a node",
        ),
        (lambda d: d["edges"][0].update(label="\u202dx"), "edge 'ask->shape'", "U+202D"),
        (lambda d: d["tools"][0].update(name="look\u200dup"), "tool #0", "name"),
        (lambda d: d["state"][0].update(name="\uff51uestion"), "state field #0", "name"),
        (lambda d: d["secrets"].append("KEY\u202e"), "document", "secrets[1]"),
        (lambda d: d["nodes"][0]["config"].update({"\u202ex": 1}), "node 'ask'", '"\\u202ex"'),
    ],
)
def test_hostile_unicode_is_rejected_and_never_echoed(
    mutate: Callable[[Doc], None], where: str, fragment: str, registry: Registry
) -> None:
    doc = graph()
    mutate(doc)
    problems = rejected(json.dumps(doc), registry)
    assert find(problems, where, "")
    assert any(fragment in p.message or fragment in p.where for p in problems), problems
    for problem in problems:
        text = problem.where + problem.message
        assert not any(char in text for char in HOSTILE), problem


def test_ten_thousand_nodes_is_one_document_problem(registry: Registry) -> None:
    doc = with_nodes(*[noop(f"n{i}") for i in range(10_000)])
    problem = only(rejected(json.dumps(doc), registry))
    assert (problem.where, problem.message) == (
        "document",
        "nodes has 10000 items; at most 500 allowed",
    )


def test_a_flood_of_problems_is_bounded(registry: Registry) -> None:
    doc = {**graph(), **{f"junk{i}": i for i in range(3_000)}}
    with pytest.raises(GraphInvalid) as info:
        load_document(json.dumps(doc), registry)
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].message == f"{3_000 - MAX_PROBLEMS} more problems not listed"
    assert len(str(info.value)) < 1_000
    assert f"(+{MAX_PROBLEMS + 1 - 5} more)" in str(info.value)


def test_every_bad_node_is_named(registry: Registry) -> None:
    nodes = [{"id": f"n{i}", "type": f"kind{i}"} for i in range(500)]
    edges = chain(*[f"n{i}" for i in range(500)])
    problems = rejected(with_nodes(*nodes, edges=edges), registry)
    assert [p.node_id for p in problems] == [f"n{i}" for i in range(500)]
    assert all(
        "use one of embed, llm, noop, output, router, subgraph, transform" in p.message
        for p in problems
    )


def test_long_user_values_are_clipped_in_messages(registry: Registry) -> None:
    doc = graph()
    doc["nodes"][1]["config"]["expression"] = "(" * 1_999
    problem = only(rejected(doc, registry))
    assert problem.node_id == "shape"
    assert len(problem.message) <= 400


# ------------------------------------------------------------------ semantics: ids and edges


def test_duplicate_ids_and_names(registry: Registry) -> None:
    doc = graph()
    doc["nodes"].append({"id": "done", "type": "noop"})
    doc["edges"].append({"source": "ask", "target": "shape"})
    doc["tools"].append({"name": "lookup", "type": "email"})
    doc["state"].append({"name": "answer", "type": "number"})
    doc["secrets"].append("OPENAI_KEY")
    problems = rejected(doc, registry)
    assert find(problems, "node 'done'", "duplicate node id 'done'").node_id == "done"
    assert find(problems, "edge 'ask->shape'", "duplicate edge id").edge_id == "ask->shape"
    assert find(problems, "tool 'lookup'", "declared twice")
    assert find(problems, "state field 'answer'", "declared twice")
    assert find(problems, "document", "secret 'OPENAI_KEY' is listed twice")
    assert len(problems) == 5


def test_entry_must_be_a_node(registry: Registry) -> None:
    doc = graph()
    doc["entry"] = "start"
    problem = only(rejected(doc, registry))
    assert problem.where == "document"
    assert problem.message.startswith("entry 'start' is not a node")


def test_dangling_edges_name_the_edge(registry: Registry) -> None:
    doc = graph()
    doc["edges"] += [
        {"id": "from_nowhere", "source": "ghost", "target": "done"},
        {"source": "done", "target": "void"},
    ]
    problems = rejected(doc, registry)
    assert find(problems, "edge 'from_nowhere'", "source 'ghost' is not a node")
    assert find(problems, "edge 'done->void'", "target 'void' is not a node").edge_id == (
        "done->void"
    )
    assert len(problems) == 2


def test_unknown_node_type_lists_the_known_ones(registry: Registry) -> None:
    doc = graph()
    doc["nodes"][2]["type"] = "teleport"
    problem = only(rejected(doc, registry))
    assert (problem.where, problem.node_id) == ("node 'done'", "done")
    assert problem.message == (
        "unknown node type 'teleport': use one of "
        "embed, llm, noop, output, router, subgraph, transform"
    )


def test_unknown_node_type_with_an_empty_registry(registry: Registry) -> None:
    doc = with_nodes(noop("a"))
    assert only(rejected(doc, Registry())).message == (
        "unknown node type 'noop': no node types are registered (are plugins installed?)"
    )


# ------------------------------------------------------------------ semantics: configs


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "missing required field 'config.prompt': fill it in"),
        ({"prompt": "hi", "temperature": "hot"}, "config.temperature: Input should be a valid"),
        ({"prompt": "hi", "temperature": 5}, "config.temperature: Input should be less than"),
        ({"prompt": "hi", "seed": 1}, "unknown field 'config.seed': remove it"),
        ({"prompt": "hi", "tools": "lookup"}, "config.tools: Input should be a valid list"),
    ],
)
def test_node_config_is_validated_against_its_type(
    config: Doc, message: str, registry: Registry
) -> None:
    doc = graph()
    doc["nodes"][0]["config"] = config
    problem = only(rejected(doc, registry))
    assert (problem.where, problem.node_id) == ("node 'ask'", "ask")
    assert problem.message.startswith(message)


def test_every_config_problem_of_a_node_is_listed(registry: Registry) -> None:
    doc = graph()
    doc["nodes"][1]["config"] = {"expression": "answer >", "colour": "red"}
    problems = rejected(doc, registry)
    assert [p.node_id for p in problems] == ["shape"] * 3
    assert find(problems, "node 'shape'", "missing required field 'config.output'")
    assert find(problems, "node 'shape'", "unknown field 'config.colour'")
    assert find(problems, "node 'shape'", "config.expression: expression 'answer >' does not")


@pytest.mark.parametrize(
    ("tool", "fragment"),
    [
        ({"name": "lookup", "type": "ftp"}, "unknown tool type 'ftp': use one of email, http"),
        ({"name": "lookup", "type": "http"}, "missing required field 'config.url'"),
        ({"name": "lookup", "type": "http", "config": {"url": "u", "x": 1}}, "'config.x'"),
        (
            {"name": "lookup", "type": "http", "config": {"url": "u", "auth_secret": "ROOT"}},
            "config.auth_secret: secret 'ROOT' is not listed in secrets",
        ),
    ],
)
def test_tool_declarations_are_validated(tool: Doc, fragment: str, registry: Registry) -> None:
    doc = graph()
    doc["tools"] = [tool]
    problem = only(rejected(doc, registry))
    assert (problem.where, problem.node_id, problem.edge_id) == ("tool 'lookup'", None, None)
    assert fragment in problem.message


def test_tool_references_must_be_declared(registry: Registry) -> None:
    doc = graph()
    doc["nodes"][0]["config"]["tools"] = ["lookup", "refund", "lookup", "wire_money"]
    problems = rejected(doc, registry)
    assert [(p.node_id, p.message) for p in problems] == [
        (
            "ask",
            "config.tools[1]: tool 'refund' is not allowed in this graph: declare it under tools",
        ),
        (
            "ask",
            "config.tools[3]: tool 'wire_money' is not allowed in this graph: "
            "declare it under tools",
        ),
    ]


def test_secret_references_must_be_listed(registry: Registry) -> None:
    doc = graph()
    doc["secrets"] = []
    problems = rejected(doc, registry)
    assert find(problems, "node 'ask'", "config.api_key_secret: secret 'OPENAI_KEY' is not")
    assert find(problems, "tool 'lookup'", "config.auth_secret: secret 'OPENAI_KEY' is not")
    assert len(problems) == 2


def test_an_unset_optional_secret_is_fine(registry: Registry) -> None:
    doc = graph()
    del doc["nodes"][0]["config"]["api_key_secret"]
    assert problems_of(load_document(doc, registry), registry) == []


@pytest.mark.parametrize(
    ("where", "mutate", "fragment"),
    [
        (
            "node 'shape'",
            lambda d: d["nodes"][1]["config"].update(expression="answer ==="),
            "config.expression: expression 'answer ===' does not parse",
        ),
        (
            "node 'route'",
            lambda d: d["nodes"].append(
                {
                    "id": "route",
                    "type": "router",
                    "config": {"routes": [{"when": "True", "to": "a"}, {"when": "", "to": "b"}]},
                }
            ),
            "config.routes[1].when: the expression is empty",
        ),
        (
            "edge 'shape->done'",
            lambda d: d["edges"][1].update(condition="len(answer) >"),
            "condition: expression 'len(answer) >' does not parse",
        ),
        (
            "edge 'shape->done'",
            lambda d: d["edges"][1].update(condition="   "),
            "condition: the expression is empty",
        ),
    ],
)
def test_expressions_are_checked(
    where: str, mutate: Callable[[Doc], None], fragment: str, registry: Registry
) -> None:
    doc = graph()
    mutate(doc)
    assert find(rejected(doc, registry), where, fragment)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ nope }}", "config.template: reads 'nope', not a state field"),
        ("{{ b }} {{ a.x.0 }}", "config.template: reads 'a', 'b', not a state field"),
    ],
)
def test_templates_may_only_read_state_fields(
    template: str, message: str, registry: Registry
) -> None:
    doc = graph()
    doc["nodes"][2]["config"]["template"] = template
    problem = only(rejected(doc, registry))
    assert problem.node_id == "done"
    assert problem.message.startswith(message)


def test_templates_may_read_messages_declared_fields_and_nested_keys(registry: Registry) -> None:
    doc = graph()
    doc["nodes"][2]["config"]["template"] = "{{messages.0}} {{ question }} {{ answer.text }}"
    assert load_document(doc, registry).nodes[2].config["template"].startswith("{{messages")


def test_config_defaults_are_checked_too(registry: Registry) -> None:
    doc = with_nodes({"id": "vectors", "type": "embed"})
    problem = only(rejected(doc, registry))
    assert (problem.node_id, problem.message) == (
        "vectors",
        "config.key_secret: secret 'EMBED_KEY' is not listed in secrets: add its name there",
    )
    assert load_document({**doc, "secrets": ["EMBED_KEY"]}, registry).nodes[0].config == {}


# ------------------------------------------------------------------ semantics: sub-graphs


def _inner(**changes: Any) -> Doc:
    inner = with_nodes(
        {"id": "think", "type": "llm", "config": {"prompt": "{{ messages }}"}},
        noop("finish"),
        edges=chain("think", "finish"),
    )
    return {**inner, **changes}


def _with_subgraph(inner: Doc) -> Doc:
    doc = graph()
    doc["nodes"].append({"id": "sub", "type": "subgraph", "config": {"graph": inner}})
    doc["edges"].append({"source": "done", "target": "sub"})
    return doc


def test_valid_subgraph_passes(registry: Registry) -> None:
    assert load_document(_with_subgraph(_inner()), registry).nodes[3].id == "sub"


def test_subgraph_problems_are_prefixed_by_the_node(registry: Registry) -> None:
    inner = _inner()
    inner["nodes"][0]["config"]["tools"] = ["lookup"]  # declared outside only
    inner["edges"] = []
    problems = rejected(_with_subgraph(inner), registry)
    assert [(p.where, p.node_id) for p in problems] == [("node 'sub'", "sub")] * 2
    assert problems[0].message == (
        "in sub-graph config.graph, node 'think': config.tools[0]: tool 'lookup' is not "
        "allowed in this graph: declare it under tools"
    )
    assert problems[1].message == (
        "in sub-graph config.graph, node 'finish': unreachable node: connect it or delete it"
    )


def test_subgraph_shape_errors_are_prefixed_too(registry: Registry) -> None:
    inner = _inner(colour="red")
    del inner["name"]
    problems = rejected(_with_subgraph(inner), registry)
    assert {p.message for p in problems} == {
        "in sub-graph config.graph, document: missing required field 'name': fill it in",
        "in sub-graph config.graph, document: unknown field 'colour': remove it (unknown "
        "fields are not allowed)",
    }


def _nested_subgraphs(levels: int) -> Doc:
    doc = _inner()
    for _ in range(levels):
        doc = with_nodes({"id": "sub", "type": "subgraph", "config": {"graph": doc}})
    return doc


def test_subgraph_nesting_is_bounded(registry: Registry) -> None:
    assert load_document(_nested_subgraphs(MAX_SUBGRAPH_DEPTH), registry).name == "g"
    problem = only(rejected(_nested_subgraphs(MAX_SUBGRAPH_DEPTH + 1), registry))
    assert problem.node_id == "sub"
    assert f"sub-graphs nest deeper than {MAX_SUBGRAPH_DEPTH} levels" in problem.message
    assert problem.message.count("in sub-graph config.graph") == MAX_SUBGRAPH_DEPTH


# ------------------------------------------------------------------ semantics: structure


def test_unreachable_nodes(registry: Registry) -> None:
    doc = graph()
    doc["nodes"] += [noop("orphan"), noop("island")]
    doc["edges"].append({"source": "island", "target": "done"})
    problems = rejected(doc, registry)
    assert [(p.node_id, p.message) for p in problems] == [
        ("orphan", "unreachable node: connect it or delete it"),
        ("island", "unreachable node: connect it or delete it"),
    ]


@pytest.mark.parametrize(
    ("conditions", "ambiguous"),
    [
        (["x == 1", "x == 2"], False),  # no default: no match ends the run
        (["x == 1", None], False),  # one default
        ([None, None], False),  # fan-out, no conditions at all
        (["x == 1", None, None], True),
        ([None, "x == 1", None, "x == 2"], True),
    ],
)
def test_at_most_one_default_next_to_conditional_edges(
    conditions: list[str | None], ambiguous: bool, registry: Registry
) -> None:
    targets = [f"t{i}" for i in range(len(conditions))]
    edges = [
        {"source": "a", "target": t, "condition": c}
        for t, c in zip(targets, conditions, strict=True)
    ]
    doc = with_nodes(noop("a"), *map(noop, targets), edges=edges)
    if not ambiguous:
        assert len(load_document(doc, registry).edges) == len(conditions)
        return
    problem = only(rejected(doc, registry))
    assert (problem.where, problem.node_id) == ("node 'a'", "a")
    assert problem.message.startswith("ambiguous default: 2 unconditional edges")


@pytest.mark.parametrize(
    ("edges", "policies", "message"),
    [
        (chain("a", "b", "a"), {}, "cycle a → b → a has no exit"),
        ([*chain("a", "b"), {"source": "b", "target": "b"}], {}, "cycle b → b has no exit"),
        (chain("a", "b", "c", "b"), {}, "cycle b → c → b has no exit"),
        (chain("a", "b", "a"), {"max_steps": 50}, None),
        ([*chain("a", "b", "a"), {"source": "b", "target": "__end__", "condition": "x"}], {}, None),
        ([*chain("a", "b", "a"), {"source": "a", "target": "c"}], {}, None),
    ],
)
def test_cycles_need_an_exit_or_a_step_limit(
    edges: list[Doc], policies: Doc, message: str | None, registry: Registry
) -> None:
    doc = with_nodes(noop("a"), noop("b"), noop("c"), edges=edges, policies=policies)
    if "c" not in {e["target"] for e in edges}:
        doc["nodes"].pop()
    if message is None:
        assert load_document(doc, registry).policies.max_steps == policies.get("max_steps")
        return
    problem = only(rejected(doc, registry))
    assert problem.message == (
        f"{message} and no step limit: add a conditional edge out of it or set policies.max_steps"
    )
    assert problem.node_id == message.split()[1]


def test_every_closed_cycle_is_reported(registry: Registry) -> None:
    ids = ["a", "b", "c", "d", "e"]
    edges = [*chain("a", "b", "c", "b"), *chain("a", "d", "e", "d")]
    problems = rejected(with_nodes(*map(noop, ids), edges=edges), registry)
    assert [p.node_id for p in problems] == ["b", "d"]


def test_a_cycle_larger_than_its_shortest_loop_says_how_large(registry: Registry) -> None:
    edges = [*chain("a", "b", "c", "d", "a"), {"source": "c", "target": "a"}]
    problem = only(rejected(with_nodes(*map(noop, "abcd"), edges=edges), registry))
    assert problem.message.startswith("cycle a → b → c → a (the loop spans 4 nodes) has no exit")


def test_a_500_node_ring_is_found_without_recursion(registry: Registry) -> None:
    ids = [f"n{i}" for i in range(500)]
    started = time.perf_counter()
    problem = only(rejected(with_nodes(*map(noop, ids), edges=chain(*ids, "n0")), registry))
    assert time.perf_counter() - started < 2.0
    assert problem.node_id == "n0"
    assert problem.message.startswith("cycle n0 → n1 → ")
    assert "… → n0 has no exit" in problem.message


def test_a_500_node_chain_with_2000_edges_is_valid(registry: Registry) -> None:
    ids = [f"n{i}" for i in range(500)]
    edges = chain(*ids) + [
        {"source": ids[i], "target": ids[j], "condition": f"x == {j}"}
        for i in range(500)
        for j in (i + 2, i + 3, i + 4, i + 5)
        if j < 500
    ]
    doc = with_nodes(*map(noop, ids), edges=edges[:2_000])
    assert len(load_document(json.dumps(doc), registry).edges) == 2_000


# ------------------------------------------------------------------ problems_of


def test_problems_of_is_the_semantic_pass_for_live_validation(registry: Registry) -> None:
    doc = GraphDocument.model_validate(graph())
    assert problems_of(doc, registry) == []
    broken = doc.model_copy(update={"entry": "nowhere"})
    assert problems_of(broken, registry) == [
        Problem("document", "entry 'nowhere' is not a node: set entry to the id of the first node")
    ]


def test_problems_of_lists_every_problem_with_its_node(registry: Registry) -> None:
    raw = graph()
    raw["nodes"][0]["config"]["tools"] = ["refund"]
    raw["nodes"][1]["type"] = "teleport"
    raw["nodes"].append(noop("orphan"))
    problems = problems_of(GraphDocument.model_validate(raw), registry)
    assert [p.node_id for p in problems] == ["ask", "shape", "orphan"]
