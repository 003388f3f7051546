"""LLM call: a chat model over a prompt template; with tools it is an agent loop.

The compiler wires the loop: when the model asks for tools, each call goes through the
runtime's governed tool executor (tiers, approvals, effect ledger) and the results come
back to this node, at most `max_tool_rounds` times.

Every model call goes through the run's meter (see `_llm_calls`): the response cache, the
budgets, one usage record per attempt, and the fallback models.
"""

from __future__ import annotations

__all__ = ["SPEC", "FallbackModel", "LlmConfig", "register"]

import logging
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.runtime import Runtime
from pydantic import Field

from components.base import (
    BuildContext,
    BuiltNode,
    NodeSpec,
    RunContext,
    StrictModel,
    TemplateStr,
    Tool,
    ToolRef,
)
from components.errors import RunFailure, StudioError, UserError
from components.nodes._llm_calls import CallPolicy, ModelCalls
from components.registry import Registry
from components.templates import render

log = logging.getLogger(__name__)


class FallbackModel(StrictModel):
    provider: str = Field(default="scripted", description="Model provider of this fallback.")
    provider_config: dict[str, Any] = Field(
        default_factory=dict,
        description="The provider's settings, as for the node's own model.",
    )


class LlmConfig(StrictModel):
    provider: str = Field(
        default="scripted", description="Model provider: 'scripted' (offline) or 'openai'."
    )
    provider_config: dict[str, Any] = Field(
        default_factory=dict,
        description="The provider's settings (model, base URL, secret name of the API key, "
        "or the scripted model's turns). Strings may use {{ field }} templates.",
    )
    system_prompt: TemplateStr = Field(
        default="", description="Instructions sent first on every call (not stored)."
    )
    prompt: TemplateStr = Field(
        default="",
        description="A user message added when the node starts, e.g. 'Summarize {{ text }}'.",
    )
    tools: list[ToolRef] = Field(
        default_factory=list, description="Tools of this graph the model may call."
    )
    max_tool_rounds: int = Field(
        default=8, ge=1, le=50, description="How many times the model may call tools."
    )
    output_field: str | None = Field(
        default=None, description="State field that receives the model's final answer."
    )
    fallback_models: list[FallbackModel] = Field(
        default_factory=list,
        max_length=5,
        description="Models tried in order when the one before fails after its retries or, "
        "with the budget action 'fallback', would exceed a budget. List cheaper ones.",
    )
    expected_output_tokens: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="Output tokens assumed when a budget is checked before a call (the "
        "provider's max_tokens is used instead when set).",
    )
    cache_ttl_s: int = Field(
        default=0,
        ge=0,
        le=30 * 86_400,
        description="Reuse an identical earlier answer (same model, settings, messages and "
        "tools) from this workspace for this many seconds; 0: never.",
    )
    cache_with_side_effects: bool = Field(
        default=False,
        description="Also reuse answers when a tool of this node has side effects (the "
        "reused answer's tool calls then go through approvals and the effect ledger again).",
    )


def _templated(value: Any) -> bool:
    """Whether a provider config has a ``{{ }}`` placeholder anywhere (else it is used as is)."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    return False


def _render_config(value: Any, state: dict[str, Any]) -> Any:
    if isinstance(value, str) and "{{" in value:
        return render(value, state)
    if isinstance(value, dict):
        return {k: _render_config(v, state) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_config(v, state) for v in value]
    return value


def tool_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.json_schema(),
        },
    }


def _rounds_since_prompt(messages: list[BaseMessage]) -> int:
    rounds = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
            rounds += 1
    return rounds


def build(node_id: str, config: LlmConfig, ctx: BuildContext) -> BuiltNode:
    tools = [ctx.tools[name] for name in config.tools]
    schemas = [tool_schema(t) for t in tools]
    cacheable = config.cache_with_side_effects or not any(t.side_effect for t in tools)
    policy = CallPolicy(
        budget_action=ctx.budget_action,
        cache_ttl_s=config.cache_ttl_s if cacheable else 0,
        expected_output_tokens=config.expected_output_tokens,
    )
    models = [
        (provider, cfg, _templated(cfg))
        for provider, cfg in [(config.provider, config.provider_config)]
        + [(f.provider, f.provider_config) for f in config.fallback_models]
    ]

    def llm_node(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        history: list[BaseMessage] = list(state.get("messages") or [])
        returning = bool(history) and isinstance(history[-1], ToolMessage)
        new: list[BaseMessage] = []
        if config.prompt and not returning:
            new.append(HumanMessage(render(config.prompt, state)))
        if returning and _rounds_since_prompt(history) >= config.max_tool_rounds:
            raise RunFailure(
                f"node {node_id!r} reached its limit of {config.max_tool_rounds} tool rounds; "
                "raise max_tool_rounds or change the prompt"
            )
        messages = history + new
        if config.system_prompt:
            messages = [SystemMessage(render(config.system_prompt, state)), *messages]
        ctx = runtime.context
        calls = ModelCalls(node_id, ctx, policy, lambda p, c: _model(node_id, p, c, ctx))
        choices = [
            (provider, _render_config(cfg, state) if templated else cfg)
            for provider, cfg, templated in models
        ]
        answer = calls.run(choices, messages, schemas)
        update: dict[str, Any] = {"messages": [*new, answer]}
        if config.output_field and not (answer.tool_calls or answer.invalid_tool_calls):
            update[config.output_field] = answer.content
        return update

    return BuiltNode(fn=llm_node, tools=tuple(config.tools), max_tool_rounds=config.max_tool_rounds)


def _model(node_id: str, provider: str, config: Mapping[str, Any], ctx: RunContext) -> Any:
    if ctx.models is None:
        raise RunFailure(f"node {node_id!r} needs a model factory in the run context")
    try:
        return ctx.models(provider, config)
    except StudioError:
        raise
    except Exception as exc:
        raise UserError(f"node {node_id!r}: cannot build model: {exc}") from None


SPEC = NodeSpec(
    type_name="llm",
    title="LLM call",
    group="AI",
    description="Ask a chat model; with tools, the model may call them in a loop.",
    config_model=LlmConfig,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_node(SPEC)
