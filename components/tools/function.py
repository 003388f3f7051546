"""Tool type "function": exposes a Python function registered with `Registry.add_function`.

The graph declares a tool name and the registered function it stands for; the built tool
is the registered one under the declared name (schema, tier and flags unchanged).
"""

from __future__ import annotations

__all__ = ["SPEC", "FunctionConfig", "build", "register"]

import dataclasses

from pydantic import Field

from components.base import ComponentsView, StrictModel, Tool, ToolTypeSpec
from components.errors import NotFound, UserError
from components.registry import Registry


class FunctionConfig(StrictModel):
    """Settings of one declared function tool."""

    function: str = Field(
        min_length=1,
        max_length=128,
        description="Name of a Python function registered with the studio (or a plugin).",
    )


def build(tool_name: str, config: FunctionConfig, view: ComponentsView) -> Tool:
    """The registered function's tool, re-labelled with the graph's tool name."""
    try:
        registered = view.function(config.function)
    except (NotFound, KeyError):
        raise UserError(
            f"tool {tool_name!r} refers to function {config.function!r}, which is not "
            "registered; pick a registered function or install the plugin that provides it"
        ) from None
    return dataclasses.replace(registered, name=tool_name)


SPEC = ToolTypeSpec(
    type_name="function",
    title="Function",
    description="A Python function registered by the studio or a plugin, called in-process.",
    config_model=FunctionConfig,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_tool_type(SPEC)
