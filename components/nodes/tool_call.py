"""Tool call: call one of the graph's tools with arguments computed from the state.

The call goes through the same governed executor as an agent's calls (tiers, approvals,
effect ledger). Its call id is the node id plus the LangGraph step, so a re-run after a
crash has the same id, and a second visit in a loop has another.
"""

from __future__ import annotations

__all__ = ["SPEC", "ToolCallConfig", "register"]

from typing import Any

from langgraph.config import get_config
from langgraph.runtime import Runtime
from pydantic import Field

from components.base import (
    BuildContext,
    BuiltNode,
    ExpressionStr,
    NodeSpec,
    RunContext,
    StrictModel,
    ToolRef,
)
from components.errors import ToolFailure
from components.expressions import evaluate
from components.registry import Registry


class ToolCallConfig(StrictModel):
    tool: ToolRef = Field(description="The tool to call (declared under the graph's tools).")
    args: dict[str, ExpressionStr] = Field(
        default_factory=dict,
        description="Argument name → expression over the state, e.g. order_id: order['id'].",
    )
    result_field: str | None = Field(
        default=None, description="State field that receives the tool's result."
    )
    fail_on_error: bool = Field(
        default=True, description="End the run as failed when the call fails or is rejected."
    )


def build(node_id: str, config: ToolCallConfig, ctx: BuildContext) -> BuiltNode:
    def tool_call_node(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        args = {name: evaluate(expr, state) for name, expr in config.args.items()}
        step = get_config().get("metadata", {}).get("langgraph_step", 0)
        outcome = ctx.call_tool(
            runtime,
            node_id=node_id,
            tool_name=config.tool,
            call_id=f"{node_id}@{step}",
            args=args,
            tainted=bool(state.get("studio_tainted")),
        )
        if not outcome.ok and config.fail_on_error:
            raise ToolFailure(f"node {node_id!r}: {outcome.content}")
        update: dict[str, Any] = {}
        if config.result_field:
            update[config.result_field] = outcome.content
        if outcome.untrusted:
            update["studio_tainted"] = True
        return update

    return BuiltNode(fn=tool_call_node)


SPEC = NodeSpec(
    type_name="tool_call",
    title="Tool call",
    group="Tools",
    description="Call a tool with arguments from the state; gated by its approval tier.",
    config_model=ToolCallConfig,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_node(SPEC)
