"""The "router" node: a named branching point.

A router changes nothing in the state. The graph branches on the conditions of the router's
outgoing edges (`graphs.spec.EdgeDoc.condition`): the first true condition wins and an edge
without a condition is the default. The node only makes the branching visible on the canvas
and gives it a place for a note.
"""

from __future__ import annotations

__all__ = ["SPEC", "Config", "build", "register"]

from typing import Any

from langgraph.runtime import Runtime
from pydantic import Field

from components.base import BuildContext, BuiltNode, NodeSpec, RunContext, StrictModel
from components.registry import Registry


class Config(StrictModel):
    note: str = Field(
        default="",
        max_length=2_000,
        description="Why the graph branches here, for the people reading the graph. "
        "The branches themselves are the conditions on this node's outgoing edges.",
    )


def build(node_id: str, config: Config, ctx: BuildContext) -> BuiltNode:
    """A node that returns no update; the edges' conditions choose the next node."""

    def route(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        return {}

    return BuiltNode(fn=route)


SPEC = NodeSpec(
    type_name="router",
    title="Router",
    group="Flow",
    description="Branches the run: each outgoing edge has a condition over the state, "
    "the first true one is taken, and an edge without a condition is the default.",
    config_model=Config,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_node(SPEC)
