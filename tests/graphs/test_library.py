"""The graph library: drafts and publishing, edit conflicts, import/export, duplicate,
delete, search and workspace scoping — on a real SQLite file."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.errors import GraphInvalid, NotFound, UserError
from graphs.diff import Change, diff_documents
from graphs.headless import Runtime
from graphs.identity import Actor
from graphs.library import MAX_IMPORT_BYTES, EditConflict, GraphLibrary
from graphs.spec import GraphDocument
from tests.conftest import example


@pytest.fixture
def library(runtime: Runtime) -> GraphLibrary:
    return runtime.manager.library


def _broken(doc: dict[str, Any]) -> dict[str, Any]:
    """Well-formed but not runnable: an edge to a node that does not exist."""
    return {**doc, "edges": [*doc["edges"], {"source": doc["entry"], "target": "nowhere"}]}


def test_a_draft_may_have_problems_but_cannot_be_published_or_run(
    runtime: Runtime, library: GraphLibrary, alice: Actor
) -> None:
    first = library.create(alice, example("triage_router"))
    draft = library.save_version(
        alice, first.graph_id, _broken(example("triage_router")), base=1, publish=False
    )
    assert (draft.number, draft.published) == (2, False)
    assert library.head(alice, first.graph_id).number == 2
    assert library.latest(alice, first.graph_id).number == 1  # runs start on the published one
    with pytest.raises(GraphInvalid) as problems:
        library.publish(alice, first.graph_id, 2)
    assert any("nowhere" in str(p) for p in problems.value.problems)
    assert library.latest(alice, first.graph_id).number == 1
    run_id = runtime.manager.start_run(alice, graph_id=first.graph_id, input={"ticket": "hi"})
    assert runtime.manager.get(alice, run_id).version_id == first.version_id


def test_publishing_a_valid_draft_moves_new_runs_to_it(
    runtime: Runtime, library: GraphLibrary, alice: Actor
) -> None:
    first = library.create(alice, example("triage_router"), publish=False)
    with pytest.raises(UserError, match="no published version"):
        library.latest(alice, first.graph_id)
    published = library.publish(alice, first.graph_id, 1)
    assert published.published
    assert library.latest(alice, first.graph_id).version_id == first.version_id


def test_a_save_from_a_stale_base_is_a_conflict_and_stores_nothing(
    library: GraphLibrary, alice: Actor, bob: Actor
) -> None:
    first = library.create(alice, example("triage_router"))
    theirs = {**example("triage_router"), "description": "bob's change"}
    library.save_version(bob, first.graph_id, theirs, base=1)
    mine = {**example("triage_router"), "description": "alice's change"}
    with pytest.raises(EditConflict) as conflict:
        library.save_version(alice, first.graph_id, mine, base=1)
    assert (conflict.value.base, conflict.value.latest) == (1, 2)
    assert library.head(alice, first.graph_id).document.description == "bob's change"
    forced = library.save_version(alice, first.graph_id, mine, base=1, force=True)
    assert forced.number == 3 and forced.base_number == 1
    assert library.head(alice, first.graph_id).document.description == "alice's change"


def test_import_issues_a_new_id_and_export_round_trips(library: GraphLibrary, alice: Actor) -> None:
    raw = json.dumps(example("support_agent")).encode()
    one = library.import_document(alice, raw)
    two = library.import_document(alice, raw)
    assert one.graph_id != two.graph_id
    exported = library.export_document(alice, one.graph_id)
    assert exported["schema_version"] == 1
    assert GraphDocument.model_validate(exported) == one.document


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{not json", "JSON"),
        (b'{"schema_version": 1, "name": "x", "entry": "a", "nodes": [], "evil": 1}', "evil"),
        (b"[" * 5000 + b"]" * 5000, "deep"),
        (b'{"schema_version": 1, "name": "\\u202ex", "entry": "a", "nodes": []}', "U+202E"),
        (
            json.dumps(
                {
                    "schema_version": 1,
                    "name": "<script>alert(1)</script>",
                    "entry": "a",
                    "nodes": [{"id": "a", "type": "rm_rf"}],
                }
            ).encode(),
            "rm_rf",
        ),
    ],
)
def test_hostile_imports_are_refused_with_a_message_and_store_nothing(
    library: GraphLibrary, alice: Actor, payload: bytes, fragment: str
) -> None:
    with pytest.raises(UserError) as refused:
        library.import_document(alice, payload)
    assert fragment.lower() in str(refused.value).lower()
    assert library.list(alice) == []


def test_an_oversized_import_is_refused_before_parsing(library: GraphLibrary, alice: Actor) -> None:
    with pytest.raises(UserError, match="at most"):
        library.import_document(alice, b" " * (MAX_IMPORT_BYTES + 1))
    assert library.list(alice) == []


def test_duplicate_delete_and_search(library: GraphLibrary, alice: Actor) -> None:
    router = library.create(alice, example("triage_router"))
    library.create(alice, example("support_agent"))
    copy = library.duplicate(alice, router.graph_id)
    assert copy.graph_id != router.graph_id
    assert copy.document.name == f"Copy of {router.document.name}"
    names = [g.name for g in library.list(alice, search="TRIAGE")]
    assert names == [router.document.name, copy.document.name] or sorted(names) == sorted(
        [router.document.name, copy.document.name]
    )
    assert library.list(alice, search="%") == []  # LIKE wildcards are plain text
    library.delete(alice, router.graph_id)
    assert router.graph_id not in {g.graph_id for g in library.list(alice)}
    with pytest.raises(NotFound):
        library.head(alice, router.graph_id)
    assert library.version(alice, router.version_id).number == 1  # pinned runs keep it


def test_every_library_call_on_a_foreign_graph_is_not_found(
    library: GraphLibrary, alice: Actor, mallory: Actor
) -> None:
    graph = library.create(alice, example("triage_router")).graph_id
    doc = example("triage_router")
    calls = [
        lambda: library.head(mallory, graph),
        lambda: library.latest(mallory, graph),
        lambda: library.versions(mallory, graph),
        lambda: library.version_number(mallory, graph, 1),
        lambda: library.save_version(mallory, graph, doc),
        lambda: library.publish(mallory, graph, 1),
        lambda: library.restore(mallory, graph, 1),
        lambda: library.duplicate(mallory, graph),
        lambda: library.delete(mallory, graph),
        lambda: library.export_document(mallory, graph),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    assert library.list(mallory) == []
    assert len(library.versions(alice, graph)) == 1


def test_restore_makes_a_new_draft_with_the_old_document(
    library: GraphLibrary, alice: Actor
) -> None:
    first = library.create(alice, example("triage_router"))
    library.save_version(alice, first.graph_id, {**example("triage_router"), "name": "Renamed"})
    restored = library.restore(alice, first.graph_id, 1)
    assert (restored.number, restored.published) == (3, False)
    assert restored.document == first.document
    assert [v.number for v in library.versions(alice, first.graph_id)] == [3, 2, 1]


def test_diff_names_added_removed_changed_and_moved_items() -> None:
    old = GraphDocument.model_validate(example("triage_router"))
    doc = example("triage_router")
    first, second = doc["nodes"][0], doc["nodes"][1]
    first["config"] = {**first["config"], "extra_marker": 1}
    second["position"] = {"x": 999, "y": 999}
    removed = doc["nodes"].pop()
    doc["edges"] = [e for e in doc["edges"] if removed["id"] not in (e["source"], e["target"])]
    doc["nodes"].append({"id": "added", "type": "output"})
    new = GraphDocument.model_construct(**GraphDocument.model_validate(doc).__dict__)
    changes = diff_documents(old, new)
    assert Change("node", "added", "added") in changes
    assert Change("node", removed["id"], "removed") in changes
    assert Change("node", first["id"], "changed", ("config.extra_marker",)) in changes
    assert Change("node", second["id"], "moved", ("position",)) in changes
    assert any(c.kind == "edge" and c.change == "removed" for c in changes)
