"""The memory node against real LangGraph stores (a SQLite file and the in-memory store)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AnyMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.base import BaseStore, IndexConfig
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore
from pydantic import ValidationError

from components.base import BuildContext, RunContext
from components.errors import RunFailure, UserError
from components.nodes import memory
from tests.components.doubles import EchoOutbox, NoApprovals, NoSecrets, no_tool_calls


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    topic: str
    fact: Any
    found: Any
    results: list[Any]
    studio_tainted: bool


FIELDS = {
    "topic": "string",
    "fact": "object",
    "found": "object",
    "results": "list",
    "studio_tainted": "boolean",
}


def context(workspace_id: str = "ws1", user_id: str = "u1") -> RunContext:
    return RunContext(
        workspace_id=workspace_id,
        run_id="run1",
        user_id=user_id,
        secrets=NoSecrets(),
        outbox=EchoOutbox(),
        approvals=NoApprovals(),
    )


def build_ctx() -> BuildContext:
    return BuildContext(
        graph_name="test",
        node_ids=frozenset({"mem"}),
        tools={},
        state_fields=FIELDS,
        compile_subgraph=lambda doc: None,
        call_tool=no_tool_calls,
    )


def run_memory(
    store: BaseStore | None,
    config: dict[str, Any],
    inputs: dict[str, Any],
    *,
    workspace_id: str = "ws1",
    user_id: str = "u1",
) -> dict[str, Any]:
    built = memory.SPEC.build("mem", memory.Config.model_validate(config), build_ctx())
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("mem", built.fn)
    graph.add_edge(START, "mem")
    graph.add_edge("mem", END)
    app: Any = graph.compile(checkpointer=InMemorySaver(), store=store)
    result: dict[str, Any] = app.invoke(
        inputs, {"configurable": {"thread_id": "t"}}, context=context(workspace_id, user_id)
    )
    return result


def remember(store: BaseStore, key: str, value: Any, **who: str) -> None:
    config = {"mode": "remember", "namespace": "prefs", "key": key, "value_field": "fact"}
    run_memory(store, config, {"fact": value}, **who)


def recall_key(store: BaseStore, key: str, **who: str) -> Any:
    config = {"mode": "recall", "namespace": "prefs", "key": key, "target_field": "found"}
    return run_memory(store, config, {}, **who).get("found")


def recall_query(store: BaseStore, query: str, *, limit: int = 5, **who: str) -> list[Any]:
    config = {
        "mode": "recall",
        "namespace": "prefs",
        "query": query,
        "limit": limit,
        "target_field": "results",
    }
    results: list[Any] = run_memory(store, config, {}, **who)["results"]
    return results


def _sqlite_store(path: Path) -> SqliteStore:
    store = SqliteStore(sqlite3.connect(path, check_same_thread=False, isolation_level=None))
    store.setup()
    return store


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseStore]:
    if request.param == "sqlite":
        sqlite_store = _sqlite_store(tmp_path / "store.sqlite")
        yield sqlite_store
        sqlite_store.conn.close()
    else:
        yield InMemoryStore()


def test_remember_then_recall_by_key_with_a_templated_key(store: BaseStore) -> None:
    config = {"mode": "remember", "namespace": "prefs", "key": "fav_{{ topic }}"}
    run_memory(store, {**config, "value_field": "fact"}, {"topic": "drink", "fact": {"v": 1}})
    assert recall_key(store, "fav_drink") == {"v": 1}
    assert recall_key(store, "fav_food") is None
    other_shelf = {"mode": "recall", "key": "fav_drink", "target_field": "found"}
    assert run_memory(store, other_shelf, {}).get("found") is None

    remember(store, "fav_drink", {"v": 2})
    assert recall_key(store, "fav_drink") == {"v": 2}
    items = store.search(("ws", "ws1", "user", "u1", "prefs"))
    assert [(i.key, i.value) for i in items] == [
        ("fav_drink", {"value": {"v": 2}, "text": '{"v": 2}'})
    ]


def test_memories_never_cross_workspaces_or_users(store: BaseStore) -> None:
    owners = [("ws1", "u1"), ("ws1", "u2"), ("ws2", "u1"), ("ws2", "u2")]
    for workspace_id, user_id in owners:
        remember(
            store,
            "secret",
            f"{workspace_id}/{user_id} likes coffee",
            workspace_id=workspace_id,
            user_id=user_id,
        )

    for workspace_id, user_id in owners:
        who = {"workspace_id": workspace_id, "user_id": user_id}
        assert recall_key(store, "secret", **who) == f"{workspace_id}/{user_id} likes coffee"
        assert recall_query(store, "coffee", limit=50, **who) == [
            f"{workspace_id}/{user_id} likes coffee"
        ]
    assert recall_key(store, "secret", workspace_id="ws3", user_id="u1") is None
    assert recall_query(store, "coffee", workspace_id="ws3", user_id="u1") == []


def test_a_workspace_named_like_a_prefix_sees_nothing_of_the_longer_one(store: BaseStore) -> None:
    remember(store, "k", "mine", workspace_id="ws10", user_id="u1")
    assert recall_query(store, "mine", workspace_id="ws1", user_id="u1") == []
    assert recall_key(store, "k", workspace_id="ws1", user_id="u1") is None


def test_recall_by_search_ranks_by_shared_words_without_an_index(store: BaseStore) -> None:
    remember(store, "drink", "Ada drinks black coffee every morning")
    remember(store, "pet", "Ada has a cat called Turing")
    remember(store, "city", "Ada lives in London")
    remember(store, "coffee_shop", "Her favourite coffee shop is near London Bridge")

    assert recall_query(store, "What coffee does Ada drink in the morning?", limit=1) == [
        "Ada drinks black coffee every morning"
    ]
    best, *rest = recall_query(store, "a coffee shop near London")
    assert best == "Her favourite coffee shop is near London Bridge"
    assert sorted(rest) == ["Ada drinks black coffee every morning", "Ada lives in London"]
    assert sorted(recall_query(store, "COFFEE!")) == [
        "Ada drinks black coffee every morning",
        "Her favourite coffee shop is near London Bridge",
    ]
    assert recall_query(store, "the cat") == ["Ada has a cat called Turing"]
    assert recall_query(store, "giraffes") == []


def _bag_of_words(texts: Sequence[str]) -> list[list[float]]:
    vocabulary = ["coffee", "tea", "cat", "london"]
    return [
        [float(re.findall(r"\w+", t.lower()).count(w)) for w in vocabulary] + [0.1] for t in texts
    ]


def test_recall_by_search_uses_the_store_index_when_there_is_one() -> None:
    index: IndexConfig = {"dims": 5, "embed": _bag_of_words, "fields": ["text"]}
    store = InMemoryStore(index=index)
    remember(store, "a", "tea tea tea")
    remember(store, "b", "coffee please")
    remember(store, "c", "a cat in London")
    remember(store, "b", "coffee please", workspace_id="ws2")

    assert recall_query(store, "coffee", limit=1) == ["coffee please"]
    assert recall_query(store, "cat", limit=2)[0] == "a cat in London"
    assert len(recall_query(store, "tea", limit=10)) == 3


def test_memories_outlive_the_store_object(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    first = _sqlite_store(path)
    remember(first, "lang", "Python")
    first.conn.close()

    second = _sqlite_store(path)
    assert recall_key(second, "lang") == "Python"
    second.conn.close()


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "remember", "value_field": "fact"},
        {"mode": "remember", "key": "k"},
        {"mode": "remember", "key": "k", "value_field": "fact", "query": "q"},
        {"mode": "recall", "target_field": "found"},
        {"mode": "recall", "key": "k", "query": "q", "target_field": "found"},
        {"mode": "recall", "key": "k"},
        {"mode": "recall", "key": "k", "target_field": "found", "namespace": "a.b"},
        {"mode": "recall", "key": "k", "target_field": "found", "limit": 0},
    ],
)
def test_config_refuses_settings_that_do_not_fit_the_mode(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        memory.Config.model_validate(config)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"mode": "remember", "key": "k", "value_field": "nope"}, "'nope' is not a state field"),
        ({"mode": "recall", "key": "k", "target_field": "messages"}, "'messages' is not"),
        ({"mode": "recall", "query": "q", "target_field": "found"}, "must be a list field"),
        (
            {"mode": "recall", "key": "k", "target_field": "studio_tainted"},
            "belongs to the runtime",
        ),
        ({"mode": "recall", "key": "{{ nope }}", "target_field": "found"}, "undeclared"),
    ],
)
def test_build_refuses_fields_it_cannot_use(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(UserError, match=expected) as caught:
        memory.SPEC.build("mem", memory.Config.model_validate(config), build_ctx())
    assert "memory node 'mem'" in str(caught.value)


def test_a_graph_without_a_store_fails_with_a_clear_message() -> None:
    with pytest.raises(RunFailure, match="memory node 'mem' needs a store"):
        recall_key(None, "k")  # type: ignore[arg-type]


@pytest.mark.parametrize(("workspace_id", "user_id"), [("ws.1", "u1"), ("ws1", ""), ("ws1", "a.b")])
def test_ids_that_cannot_scope_a_namespace_are_refused(
    store: BaseStore, workspace_id: str, user_id: str
) -> None:
    with pytest.raises(RunFailure, match=r"id without '\.'"):
        remember(store, "k", "v", workspace_id=workspace_id, user_id=user_id)
    assert store.search(("ws",), limit=10) == []


def test_values_that_are_not_json_and_bad_keys_are_refused(store: BaseStore) -> None:
    with pytest.raises(UserError, match="holds a set, which cannot be stored"):
        remember(store, "k", {1, 2})
    config = {"mode": "remember", "key": "{{ topic }}", "value_field": "fact"}
    with pytest.raises(UserError, match="the key is empty"):
        run_memory(store, config, {"topic": "   ", "fact": 1})
    with pytest.raises(UserError, match="the key is longer than 512"):
        run_memory(store, config, {"topic": "k" * 513, "fact": 1})
    with pytest.raises(UserError, match=r"'topic' is not in the state; set it before this node"):
        run_memory(store, config, {"fact": 1})
    assert store.search(("ws",), limit=10) == []


def test_a_long_query_is_cut_not_refused(store: BaseStore) -> None:
    remember(store, "drink", "coffee")
    config = {
        "mode": "recall",
        "namespace": "prefs",
        "query": "{{ topic }}",
        "target_field": "results",
    }
    long_question = "coffee " + "please " * 1_000
    assert run_memory(store, config, {"topic": long_question})["results"] == ["coffee"]
