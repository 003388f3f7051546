"""The "memory" node: remembers state values and recalls them in later runs.

Memories live in the LangGraph store the run is compiled with (`runtime.store`). The
namespace is always ``("ws", workspace_id, "user", user_id, <Config.namespace>)``: the first
four labels come from the run's context, never from the state or the node's settings, so a
workspace or a user can only ever reach its own memories.

Each memory is stored as ``{"value": <the state value>, "text": <its text>}``. A store set up
with a vector index should index the ``text`` field; then recall by search is semantic. A
store without an index returns no scores, and the node ranks the namespace's most recent
memories (up to `SCAN_LIMIT`) by the words they share with the query instead (words of three
or more letters, minus a few very common English ones): crude, but useful offline.
"""

from __future__ import annotations

__all__ = ["SCAN_LIMIT", "SPEC", "Config", "build", "namespace_for", "register"]

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore, SearchItem
from pydantic import Field, model_validator

from components.base import (
    BuildContext,
    BuiltNode,
    NodeFn,
    NodeSpec,
    RunContext,
    StrictModel,
    TemplateStr,
)
from components.errors import RunFailure, UserError
from components.registry import Registry
from components.templates import render, template_fields

SCAN_LIMIT = 500
MAX_VALUE_CHARS = 1_000_000
MAX_KEY_CHARS = 512
MAX_QUERY_CHARS = 2_000  # a longer query text is cut to this length
_WORD = re.compile(r"[^\W_]{3,}")  # words of three letters or more
_COMMON = {"the", "and", "for", "are", "was", "what", "who", "how", "does", "with", "that", "this"}


class Config(StrictModel):
    mode: Literal["remember", "recall"] = Field(
        default="recall",
        description="'remember' stores a state field under a key; 'recall' reads memories "
        "back into a state field, by exact key or by searching.",
    )
    namespace: str = Field(
        default="default",
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="A name for a shelf of memories (for example: preferences, facts). "
        "It is always inside the current workspace and user.",
    )
    key: TemplateStr | None = Field(
        default=None,
        description="The memory's key, with {{ field }} placeholders (for example: "
        "'favourite_{{ topic }}'). Needed to remember; to recall, give a key or a query.",
    )
    value_field: str | None = Field(
        default=None, description="Remember: the state field whose value is stored."
    )
    query: TemplateStr | None = Field(
        default=None,
        description="Recall: search text with {{ field }} placeholders; the best matching "
        "memories are returned as a list.",
    )
    limit: int = Field(default=5, ge=1, le=50, description="Recall: at most this many results.")
    target_field: str | None = Field(
        default=None,
        description="Recall: the state field that receives the memory (by key) or the list "
        "of memories (by query).",
    )

    @model_validator(mode="after")
    def _fits_mode(self) -> Config:
        if self.mode == "remember":
            if not self.key or not self.value_field:
                raise ValueError("to remember, set both 'key' and 'value_field'")
            if self.query is not None or self.target_field is not None:
                raise ValueError("'query' and 'target_field' are for recall; clear them")
        else:
            if (self.key is None) == (self.query is None):
                raise ValueError("to recall, set exactly one of 'key' or 'query'")
            if not self.target_field or self.value_field is not None:
                raise ValueError("to recall, set 'target_field' (and leave 'value_field' empty)")
        return self


def namespace_for(context: RunContext, namespace: str) -> tuple[str, ...]:
    """The store namespace of one workspace + user + shelf; refuses unusable ids."""
    for label, value in (("workspace", context.workspace_id), ("user", context.user_id)):
        if not value or "." in value or "\x00" in value:
            raise RunFailure(
                f"memory needs a {label} id without '.' to scope memories, got {value!r}; "
                "start the run through the run manager, which sets it"
            )
    return ("ws", context.workspace_id, "user", context.user_id, namespace)


def _store(node_id: str, runtime: Runtime[RunContext]) -> BaseStore:
    if runtime.store is None:
        raise RunFailure(
            f"memory node {node_id!r} needs a store, but the graph was compiled without "
            "one; compile it with a store (the run manager always passes one)"
        )
    return runtime.store


def _check(node_id: str, config: Config, state_fields: Mapping[str, str]) -> None:
    where = f"memory node {node_id!r}"
    if config.target_field and config.target_field.startswith("studio_"):
        raise UserError(
            f"{where}: {config.target_field!r} belongs to the runtime; recall into another field"
        )
    for name in (config.value_field, config.target_field):
        if name is not None and (name not in state_fields or state_fields[name] == "messages"):
            raise UserError(f"{where}: {name!r} is not a state field it can use; declare it")
    if config.query is not None and state_fields[config.target_field or ""] != "list":
        raise UserError(
            f"{where}: search results are a list, so {config.target_field!r} must be a list field"
        )
    for template in (config.key, config.query):
        unknown = sorted(template_fields(template or "") - set(state_fields))
        if unknown:
            raise UserError(f"{where}: the template reads undeclared fields {unknown}")


def _render(node_id: str, template: str, state: Mapping[str, Any], what: str) -> str:
    """The template filled from the state; keys must be short, long queries are cut."""
    try:
        text = render(template, state).strip()
    except UserError as exc:
        raise UserError(f"memory node {node_id!r}: {exc}; set it before this node") from None
    if not text:
        raise UserError(
            f"memory node {node_id!r}: the {what} is empty; check its template and the "
            "fields it reads"
        )
    if what == "query":
        return text[:MAX_QUERY_CHARS]
    if len(text) > MAX_KEY_CHARS:
        raise UserError(
            f"memory node {node_id!r}: the key is longer than {MAX_KEY_CHARS} characters; "
            "use a shorter key template"
        )
    return text


def _record(node_id: str, field: str, value: Any) -> dict[str, Any]:
    """The stored form of a value; it must be JSON (text, numbers, lists, objects)."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        raise UserError(
            f"memory node {node_id!r}: field {field!r} holds a {type(value).__name__}, "
            "which cannot be stored; store text, numbers, lists or objects"
        ) from None
    if len(text) > MAX_VALUE_CHARS:
        raise UserError(
            f"memory node {node_id!r}: field {field!r} is larger than {MAX_VALUE_CHARS} "
            "characters; store a shorter value"
        )
    return {"value": copy.deepcopy(value), "text": text}


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _COMMON


def _by_words(items: Sequence[SearchItem], query: str) -> list[SearchItem]:
    """Items sharing words with the query: most shared words first, then most recent
    (stores may keep whole seconds only), then by key so ties always come out the same."""
    wanted = _words(query)
    scored = [(len(wanted & _words(f"{i.key} {i.value.get('text', '')}")), i) for i in items]
    ranked = sorted((p for p in scored if p[0]), key=lambda p: p[1].key)
    ranked.sort(key=lambda p: (p[0], p[1].updated_at), reverse=True)
    return [item for _, item in ranked]


def _search(store: BaseStore, namespace: tuple[str, ...], query: str, limit: int) -> list[Any]:
    """Scored search when the store has an index, else word overlap over recent memories."""
    items = store.search(namespace, query=query, limit=limit)
    if items and all(item.score is None for item in items):
        items = _by_words(store.search(namespace, limit=SCAN_LIMIT), query)
    own = [item for item in items if tuple(item.namespace) == namespace]
    return [copy.deepcopy(item.value.get("value")) for item in own[:limit]]


def _remember(node_id: str, config: Config) -> NodeFn:
    key_template, field = config.key or "", config.value_field or ""

    def remember(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        store = _store(node_id, runtime)
        namespace = namespace_for(runtime.context, config.namespace)
        key = _render(node_id, key_template, state, "key")
        store.put(namespace, key, _record(node_id, field, state.get(field)))
        return {}

    return remember


def _recall(node_id: str, config: Config) -> NodeFn:
    target = config.target_field or ""

    def recall(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        store = _store(node_id, runtime)
        namespace = namespace_for(runtime.context, config.namespace)
        if config.query is not None:
            query = _render(node_id, config.query, state, "query")
            return {target: _search(store, namespace, query, config.limit)}
        item = store.get(namespace, _render(node_id, config.key or "", state, "key"))
        return {target: None if item is None else copy.deepcopy(item.value.get("value"))}

    return recall


def build(node_id: str, config: Config, ctx: BuildContext) -> BuiltNode:
    """Check the fields now; read or write the store (scoped by the run's context) later."""
    _check(node_id, config, ctx.state_fields)
    make = _remember if config.mode == "remember" else _recall
    return BuiltNode(fn=make(node_id, config))


SPEC = NodeSpec(
    type_name="memory",
    title="Memory",
    group="Memory",
    description="Remembers a state value for later runs, or recalls memories by key or by "
    "search. Memories belong to the workspace and the user who runs the graph.",
    config_model=Config,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_node(SPEC)
