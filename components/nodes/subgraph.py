"""Sub-graph: run another graph document as one step, mapping fields in and out.

The child is compiled by the same compiler and shares the run's checkpointer (its steps are
checkpointed under the parent's thread), so a pause inside it pauses the parent.
"""

from __future__ import annotations

__all__ = ["SPEC", "SubgraphConfig", "register"]

from dataclasses import replace
from typing import Any

from langgraph.runtime import Runtime
from pydantic import Field

from components.base import BuildContext, BuiltNode, GraphRef, NodeSpec, RunContext, StrictModel
from components.registry import Registry


class SubgraphConfig(StrictModel):
    graph: GraphRef = Field(description="The sub-graph's document (same format as a graph).")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Sub-graph field → this graph's field it starts with."
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description="This graph's field → sub-graph field it receives."
    )


def build(node_id: str, config: SubgraphConfig, ctx: BuildContext) -> BuiltNode:
    child = ctx.compile_subgraph(config.graph)

    def subgraph_node(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        child_input = {inner: state.get(outer) for inner, outer in config.inputs.items()}
        child_input["studio_tainted"] = bool(state.get("studio_tainted"))  # provenance carries in
        outer = runtime.context  # usage records inside name the path: "node/child_node"
        context = replace(outer, node_path=f"{outer.node_path}{node_id}/")
        result = child.invoke(child_input, context=context)
        update = {outer: result.get(inner) for outer, inner in config.outputs.items()}
        if result.get("studio_tainted"):
            update["studio_tainted"] = True
        return update

    return BuiltNode(fn=subgraph_node)


SPEC = NodeSpec(
    type_name="subgraph",
    title="Sub-graph",
    group="Flow",
    description="Run another graph as one step of this one.",
    config_model=SubgraphConfig,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_node(SPEC)
