"""Human approval and human input: the run pauses until a person decides or answers.

Both are pure gates (see `components.gates`): nothing happens before the pause, and the
decision is read back from the recorded approval row.
"""

from __future__ import annotations

__all__ = ["APPROVAL_SPEC", "INPUT_SPEC", "HumanApprovalConfig", "HumanInputConfig", "register"]

from typing import Any

from langgraph.config import get_config
from langgraph.runtime import Runtime
from pydantic import Field

from components.base import (
    BuildContext,
    BuiltNode,
    NodeSpec,
    RunContext,
    StrictModel,
    TemplateStr,
    Tier,
)
from components.gates import GateRequest, gate
from components.registry import Registry
from components.templates import render

_TIER_HELP = "Who may decide: confirm (the run's starter or an approver) or admin."


def _call_id(node_id: str) -> str:
    return f"{node_id}@{get_config().get('metadata', {}).get('langgraph_step', 0)}"


class HumanApprovalConfig(StrictModel):
    title: TemplateStr = Field(default="Continue?", description="What the person is asked.")
    details: TemplateStr = Field(default="", description="Context shown on the approval card.")
    tier: Tier = Field(default="confirm", description=_TIER_HELP)
    result_field: str = Field(
        default="approved", description="Boolean state field set to the decision."
    )
    feedback_field: str | None = Field(
        default=None, description="State field that receives the person's comment."
    )


def build_approval(node_id: str, config: HumanApprovalConfig, ctx: BuildContext) -> BuiltNode:
    def approval_node(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        request = GateRequest(
            node_id=node_id,
            call_id=_call_id(node_id),
            kind="approval",
            action=render(config.title, state),
            args={"details": render(config.details, state)},
            tier=config.tier,
            description=render(config.details, state),
            reason=f"node {node_id!r} asks for a decision",
            allowed=("approve", "reject"),
        )
        record = gate(runtime.context, request)
        update: dict[str, Any] = {config.result_field: record.decision == "approve"}
        if config.feedback_field:
            update[config.feedback_field] = record.feedback or ""
        return update

    return BuiltNode(fn=approval_node)


class HumanInputConfig(StrictModel):
    question: TemplateStr = Field(description="What the person is asked to answer.")
    tier: Tier = Field(default="confirm", description=_TIER_HELP)
    target_field: str = Field(description="State field that receives the answer.")


def build_input(node_id: str, config: HumanInputConfig, ctx: BuildContext) -> BuiltNode:
    def input_node(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        question = render(config.question, state)
        request = GateRequest(
            node_id=node_id,
            call_id=_call_id(node_id),
            kind="input",
            action="answer",
            args={"question": question},
            tier=config.tier,
            description=question,
            reason=f"node {node_id!r} needs an answer",
            allowed=("respond",),
        )
        record = gate(runtime.context, request)
        return {config.target_field: str(record.args.get("response", ""))}

    return BuiltNode(fn=input_node)


APPROVAL_SPEC = NodeSpec(
    type_name="human_approval",
    title="Human approval",
    group="People",
    description="Pause until a person approves or rejects; the decision goes into the state.",
    config_model=HumanApprovalConfig,
    build=build_approval,
)
INPUT_SPEC = NodeSpec(
    type_name="human_input",
    title="Human input",
    group="People",
    description="Pause until a person answers a question; the answer goes into the state.",
    config_model=HumanInputConfig,
    build=build_input,
)


def register(registry: Registry) -> None:
    registry.add_node(APPROVAL_SPEC)
    registry.add_node(INPUT_SPEC)
