"""A small registry of test node and tool types whose Configs use every field marker.

Validation tests use this instead of the real components, so they do not depend on node
types that are still being written.
"""

from __future__ import annotations

__all__ = ["fake_registry"]

from typing import Any

from pydantic import Field

from components.base import (
    BuiltNode,
    ExpressionStr,
    GraphRef,
    NodeSpec,
    SecretRef,
    StrictModel,
    TemplateStr,
    Tool,
    ToolRef,
    ToolTypeSpec,
)
from components.registry import Registry


class LlmConfig(StrictModel):
    prompt: TemplateStr = Field(description="What the model is asked.")
    tools: list[ToolRef] = Field(default_factory=list)
    api_key_secret: SecretRef | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


class TransformConfig(StrictModel):
    expression: ExpressionStr
    output: str


class Route(StrictModel):
    when: ExpressionStr
    to: str


class RouterConfig(StrictModel):
    routes: list[Route] = Field(default_factory=list)


class SubgraphConfig(StrictModel):
    graph: GraphRef


class OutputConfig(StrictModel):
    template: TemplateStr = "{{ messages }}"


class EmbedConfig(StrictModel):
    key_secret: SecretRef = "EMBED_KEY"
    text: TemplateStr = "{{ messages }}"


class NoopConfig(StrictModel):
    pass


class HttpConfig(StrictModel):
    url: str
    auth_secret: SecretRef | None = None


class EmailConfig(StrictModel):
    sender: str = "studio@example.invalid"


def _build_node(_node_id: str, _config: Any, _ctx: Any) -> BuiltNode:
    return BuiltNode(fn=lambda state: state)


def _build_tool(_name: str, _config: Any, _view: Any) -> Tool:
    raise NotImplementedError("validation tests never build tools")


_NODES: dict[str, type[StrictModel]] = {
    "llm": LlmConfig,
    "transform": TransformConfig,
    "router": RouterConfig,
    "subgraph": SubgraphConfig,
    "output": OutputConfig,
    "embed": EmbedConfig,
    "noop": NoopConfig,
}
_TOOLS: dict[str, type[StrictModel]] = {"http": HttpConfig, "email": EmailConfig}


def fake_registry() -> Registry:
    """A fresh registry with the test node types and tool types above."""
    registry = Registry()
    for name, config in _NODES.items():
        registry.add_node(
            NodeSpec(name, name.title(), "test", f"test {name} node", config, _build_node)
        )
    for name, config in _TOOLS.items():
        registry.add_tool_type(
            ToolTypeSpec(name, name.title(), f"test {name}", config, _build_tool)
        )
    return registry
