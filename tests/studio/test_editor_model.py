"""The editor's document model: edits, undo/redo, ids issued on the server, live marks."""

from __future__ import annotations

import pytest

from components.errors import UserError
from components.registry import default_registry
from graphs.spec import END
from studio.editor_model import BLANK, EditorModel, palette
from tests.conftest import example


@pytest.fixture
def model() -> EditorModel:
    return EditorModel(BLANK, default_registry())


def test_palette_lists_every_registered_node_type_once_grouped() -> None:
    registry = default_registry()
    groups = palette(registry)
    types = [item["type"] for group in groups for item in group["items"]]
    assert sorted(types) == sorted(registry.nodes)
    assert all(item["title"] and item["description"] for g in groups for item in g["items"])


def test_adding_and_connecting_nodes_issues_ids_and_undo_redo_walks_back(
    model: EditorModel,
) -> None:
    first = model.add_node("llm", {"x": 10, "y": 20})
    second = model.add_node("llm", {"x": 200, "y": 20})
    assert (first, second) == ("llm_1", "llm_2")
    edge = model.connect(first, second)
    assert edge == "llm_1->llm_2"
    assert model.undo() and not any(e["source"] == first for e in model.doc["edges"])
    assert model.undo() and [n["id"] for n in model.doc["nodes"]] == ["output", "llm_1"]
    assert model.redo() and model.redo()
    assert {"source": first, "target": second} in model.doc["edges"]
    assert not model.redo()


def test_a_new_edit_clears_the_redo_stack(model: EditorModel) -> None:
    model.add_node("output", {"x": 0, "y": 0})
    model.undo()
    model.add_node("router", {"x": 0, "y": 0})
    assert not model.can_redo


@pytest.mark.parametrize(
    ("source", "target"), [("output", "ghost"), ("ghost", "output"), (END, "output")]
)
def test_connecting_unknown_nodes_is_refused(model: EditorModel, source: str, target: str) -> None:
    with pytest.raises(UserError):
        model.connect(source, target)
    assert not model.can_undo


def test_a_duplicate_edge_is_refused(model: EditorModel) -> None:
    with pytest.raises(UserError, match="already connected"):
        model.connect("output", END)


def test_unknown_node_types_and_bad_positions_are_refused(model: EditorModel) -> None:
    with pytest.raises(UserError, match="unknown node type"):
        model.add_node("rm_rf", {"x": 0, "y": 0})
    with pytest.raises(UserError):
        model.add_node("llm", {"x": "NaN-ish", "y": 0})
    with pytest.raises(UserError, match="out of range"):
        model.add_node("llm", {"x": float("inf"), "y": 0})


def test_removing_a_node_removes_its_edges_and_moves_the_entry(model: EditorModel) -> None:
    llm = model.add_node("llm", {"x": 0, "y": 0})
    model.connect(llm, "output")
    model.update_graph(entry=llm)
    model.remove([llm], [])
    assert model.doc["entry"] == "output"
    assert all(llm not in (e["source"], e["target"]) for e in model.doc["edges"])
    model.remove([END], [])  # the end terminal is not a node: nothing happens
    assert [n["id"] for n in model.doc["nodes"]] == ["output"]


def test_paste_copies_nodes_with_new_ids_and_their_inner_edges() -> None:
    model = EditorModel(example("triage_router"), default_registry())
    ids = [n["id"] for n in model.doc["nodes"]]
    inner = [(e["source"], e["target"]) for e in model.doc["edges"] if e["target"] in ids]
    before = len(model.doc["edges"])
    new_ids = model.paste(ids, {"x": 50, "y": 60})
    assert len(new_ids) == len(ids) and not set(new_ids) & set(ids)
    assert len(model.doc["edges"]) == before + len(inner)


def test_live_problems_are_placed_on_nodes_and_edges(model: EditorModel) -> None:
    llm = model.add_node("router", {"x": 0, "y": 0})
    model.update_node(llm, config={"no_such_field": 1})
    nodes, edges = model.canvas(model.problems())
    marked = {n["id"]: n["error"] for n in nodes}
    assert marked[llm] and "no_such_field" in marked[llm]
    assert marked["output"] is None
    assert all(e["error"] is None for e in edges if e["source"] == "output")


def test_markup_in_labels_is_carried_as_plain_data(model: EditorModel) -> None:
    payload = "<img src=x onerror=alert(1)>"
    model.update_node("output", label=payload)
    nodes, _ = model.canvas([])
    assert nodes[0]["label"] == payload  # the canvas renders it as text, never as HTML


def test_unknown_node_fields_are_refused(model: EditorModel) -> None:
    with pytest.raises(UserError):
        model.update_node("output", type="llm")
    with pytest.raises(UserError):
        model.update_graph(schema_version=2)
