"""LLM call: a chat model over a prompt template; with tools it is an agent loop.

The compiler wires the loop: when the model asks for tools, each call goes through the
runtime's governed tool executor (tiers, approvals, effect ledger) and the results come
back to this node, at most `max_tool_rounds` times.
"""

from __future__ import annotations

__all__ = ["SPEC", "LlmConfig", "register"]

import logging
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.errors import GraphBubbleUp
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
from components.errors import ModelFailure, RunFailure, StudioError, UserError
from components.registry import Registry
from components.templates import render

log = logging.getLogger(__name__)


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
        model = _model(node_id, config, state, runtime.context)
        if schemas:
            model = model.bind_tools(schemas)
        messages = history + new
        if config.system_prompt:
            messages = [SystemMessage(render(config.system_prompt, state)), *messages]
        answer = _call(node_id, model, messages)
        update: dict[str, Any] = {"messages": [*new, answer]}
        if config.output_field and not (answer.tool_calls or answer.invalid_tool_calls):
            update[config.output_field] = answer.content
        return update

    return BuiltNode(fn=llm_node, tools=tuple(config.tools), max_tool_rounds=config.max_tool_rounds)


def _model(node_id: str, config: LlmConfig, state: dict[str, Any], ctx: RunContext) -> Any:
    if ctx.models is None:
        raise RunFailure(f"node {node_id!r} needs a model factory in the run context")
    try:
        return ctx.models(config.provider, _render_config(config.provider_config, state))
    except StudioError:
        raise
    except Exception as exc:
        raise UserError(f"node {node_id!r}: cannot build model: {exc}") from None


def _call(node_id: str, model: Any, messages: list[BaseMessage]) -> AIMessage:
    try:
        answer = model.invoke(messages)
    except GraphBubbleUp:
        raise
    except ModelFailure as exc:
        text = str(exc)
        raise ModelFailure(
            text if text.startswith("node ") else f"node {node_id!r}: {text}"
        ) from None
    except StudioError:
        raise
    except Exception as exc:
        from components.providers.openai_compat import classify_failure

        raise ModelFailure(f"node {node_id!r}: {classify_failure(exc)}") from None
    if not isinstance(answer, AIMessage):
        raise ModelFailure(f"node {node_id!r}: the model returned {type(answer).__name__}")
    return answer


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
