"""Graph document → LangGraph `StateGraph`, compiled with a checkpointer.

Every node comes from the component registry. A node that declares tools gets a governed
tool executor (`<node>.tools`) fed by `Send` — one task per call, so parallel gated calls
pause and resume independently — and the executor loops back to the node.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_STEPS", "CompiledGraph", "compile_document", "state_schema"]

import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END as LG_END
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Send

from components.base import BuildContext, RunContext, Tool
from components.errors import UserError
from components.expressions import PARSE_LOCK, evaluate
from components.registry import Registry
from graphs.governance import GovernedToolCaller
from graphs.ledger import EffectLedger
from graphs.spec import END, EdgeDoc, GraphDocument

DEFAULT_MAX_STEPS = 200
OUTPUT_KEY = "studio_output"
TAINT_KEY = "studio_tainted"
MAX_SUBGRAPH_DEPTH = 5


@dataclass(frozen=True, slots=True)
class CompiledGraph:
    document: GraphDocument
    graph: CompiledStateGraph[Any, Any, Any, Any]
    tools: Mapping[str, Tool]
    recursion_limit: int


def _keep(_old: Any, new: Any) -> Any:
    return new


def state_schema(doc: GraphDocument) -> type:
    """A TypedDict for the document's state, plus the studio's reserved fields."""
    fields: dict[str, Any] = {
        "messages": Annotated[list[Any], add_messages],
        OUTPUT_KEY: dict[str, Any] | None,
        TAINT_KEY: Annotated[bool, operator.or_],
    }
    for field in doc.state:
        if field.type == "messages":
            fields[field.name] = Annotated[list[Any], add_messages]
        elif field.reducer == "append":
            fields[field.name] = Annotated[list[Any], operator.add]
        else:
            fields[field.name] = Annotated[Any, _keep]
    schema: type = TypedDict("GraphState", fields, total=False)  # type: ignore[misc]
    return schema


def _build_tools(doc: GraphDocument, registry: Registry) -> dict[str, Tool]:
    tools = {}
    for decl in doc.tools:
        spec = registry.tool_types[decl.type]
        config = spec.config_model.model_validate(decl.config)
        tool = spec.build(decl.name, config, registry)
        if decl.description:
            tool = type(tool)(**{**_fields(tool), "description": decl.description})
        tools[decl.name] = tool
    return tools


def _fields(tool: Tool) -> dict[str, Any]:
    return {name: getattr(tool, name) for name in Tool.__dataclass_fields__}


def compile_document(
    doc: GraphDocument,
    registry: Registry,
    ledger: EffectLedger,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: BaseStore | None = None,
    depth: int = 0,
) -> CompiledGraph:
    """Compile a validated document (see `graphs.validation.load_document`).

    Under PARSE_LOCK: LangGraph parses while it builds a graph (`inspect.signature` of the
    reducers, which are builtins, and the source of every node function)."""
    with PARSE_LOCK:
        return _compile(doc, registry, ledger, checkpointer=checkpointer, store=store, depth=depth)


def _compile(
    doc: GraphDocument,
    registry: Registry,
    ledger: EffectLedger,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    store: BaseStore | None,
    depth: int,
) -> CompiledGraph:
    if depth > MAX_SUBGRAPH_DEPTH:
        raise UserError(f"sub-graphs nest deeper than {MAX_SUBGRAPH_DEPTH} levels")
    tools = _build_tools(doc, registry)
    caller = GovernedToolCaller(
        tools,
        {t.name: t.tier for t in doc.tools},
        ledger,
        taint_gates=doc.policies.untrusted_content_gates_effects,
    )

    action = doc.policies.budget_action

    def compile_child(raw: Mapping[str, Any]) -> Any:
        from graphs.validation import load_document

        child = load_document(raw, registry)
        if child.policies.budget_action is None:  # a sub-graph follows its parent's action
            policies = child.policies.model_copy(update={"budget_action": action})
            child = child.model_copy(update={"policies": policies})
        return compile_document(child, registry, ledger, depth=depth + 1).graph

    ctx = BuildContext(
        graph_name=doc.name,
        node_ids=frozenset(n.id for n in doc.nodes),
        tools=tools,
        state_fields={f.name: f.type for f in doc.state},
        compile_subgraph=compile_child,
        call_tool=caller,
        budget_action=action,
    )
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(
        state_schema(doc), context_schema=RunContext
    )
    builder.add_edge(START, doc.entry)
    for node in doc.nodes:
        spec = registry.nodes[node.type]
        built = spec.build(node.id, spec.config_model.model_validate(node.config), ctx)
        builder.add_node(node.id, built.fn)
        out_edges = [e for e in doc.edges if e.source == node.id]
        if built.tools:
            executor = f"{node.id}.tools"
            builder.add_node(executor, _executor(node.id, caller))
            builder.add_edge(executor, node.id)
            _wire(builder, node.id, out_edges, tools_node=executor)
        else:
            _wire(builder, node.id, out_edges, tools_node=None)
    graph = builder.compile(checkpointer=checkpointer, store=store, name=doc.name)
    return CompiledGraph(doc, graph, tools, doc.policies.max_steps or DEFAULT_MAX_STEPS)


def _target(name: str) -> str:
    return LG_END if name == END else name


def _wire(
    builder: StateGraph[Any, Any, Any, Any],
    node_id: str,
    edges: list[EdgeDoc],
    *,
    tools_node: str | None,
) -> None:
    conditional = [e for e in edges if e.condition]
    if not conditional and tools_node is None:
        for edge in edges or [EdgeDoc(source=node_id, target=END)]:
            builder.add_edge(node_id, _target(edge.target))
        return
    route = _router(node_id, edges, tools_node)
    destinations = [_target(e.target) for e in edges] + [LG_END]
    if tools_node:
        destinations.append(tools_node)
    path_map = list(dict.fromkeys(destinations))
    builder.add_conditional_edges(node_id, route, path_map)


def _router(
    node_id: str, edges: list[EdgeDoc], tools_node: str | None
) -> Callable[[dict[str, Any]], Any]:
    conditional = [e for e in edges if e.condition]
    plain = [_target(e.target) for e in edges if not e.condition]

    def route(state: dict[str, Any]) -> Any:
        if tools_node and (sends := _tool_sends(node_id, tools_node, state)):
            return sends
        for edge in conditional:
            try:
                taken = bool(evaluate(edge.condition or "", state))
            except UserError as exc:
                raise UserError(f"edge {edge.edge_id!r}: {exc}") from None
            if taken:
                return _target(edge.target)
        if conditional:
            return plain[0] if plain else LG_END
        return plain or LG_END

    return route


def _tool_sends(node_id: str, tools_node: str, state: dict[str, Any]) -> list[Send]:
    messages = state.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, AIMessage):
        return []
    tainted = bool(state.get(TAINT_KEY))
    # The effect key uses an id the server derives (the checkpointed message's id and the
    # call's position), never the provider's call id: some servers reuse ids across turns.
    sends = [
        Send(tools_node, {"call": dict(call), "effect_id": f"{last.id}#{i}", "tainted": tainted})
        for i, call in enumerate(last.tool_calls)
    ]
    for bad in last.invalid_tool_calls:
        call = {"id": bad.get("id") or "invalid", "name": bad.get("name") or "", "args": {}}
        sends.append(Send(tools_node, {"call": call, "invalid": bad.get("error") or "malformed"}))
    return sends


def _executor(node_id: str, caller: GovernedToolCaller) -> Callable[..., dict[str, Any]]:
    def execute_tool(payload: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        call = payload["call"]
        if payload.get("invalid"):
            text = (
                f"malformed call to {call['name'] or 'a tool'!r} ({payload['invalid']}); "
                "it was not executed — send valid JSON arguments"
            )
            return {"messages": [ToolMessage(text, tool_call_id=call["id"], status="error")]}
        outcome = caller(
            runtime,
            node_id=node_id,
            tool_name=call["name"],
            call_id=payload["effect_id"],
            args=call.get("args") or {},
            tainted=payload["tainted"],
        )
        content = outcome.content
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        message = ToolMessage(
            text,
            tool_call_id=call["id"],
            name=call["name"],
            status="success" if outcome.ok else "error",
        )
        update: dict[str, Any] = {"messages": [message]}
        if outcome.untrusted:
            update[TAINT_KEY] = True
        return update

    return execute_tool
