"""The component registry: built-ins register through the same calls a plugin uses.

Plugins are Python packages exposing an entry point in the group
``agent_studio.components`` whose value is a callable taking the `Registry`.
"""

from __future__ import annotations

__all__ = ["Registry", "default_registry"]

import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from pydantic import create_model

from components.base import NodeSpec, ProviderSpec, Tier, Tool, ToolContext, ToolTypeSpec
from components.errors import NotFound

ENTRY_POINT_GROUP = "agent_studio.components"


class Registry:
    """Node types, tool types, model providers and named Python-function tools."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeSpec] = {}
        self.tool_types: dict[str, ToolTypeSpec] = {}
        self.providers: dict[str, ProviderSpec] = {}
        self.functions: dict[str, Tool] = {}

    def add_node(self, spec: NodeSpec) -> None:
        self.nodes[spec.type_name] = spec

    def add_tool_type(self, spec: ToolTypeSpec) -> None:
        self.tool_types[spec.type_name] = spec

    def add_provider(self, spec: ProviderSpec) -> None:
        self.providers[spec.name] = spec

    def add_function(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        side_effect: bool = False,
        tier: Tier = "free",
        untrusted_output: bool = False,
        description: str | None = None,
    ) -> Tool:
        """Register a Python function as a tool; its signature becomes the argument schema.

        The function may take a keyword-only ``context: ToolContext`` parameter; it is
        filled by the runtime, never by the model.
        """
        tool_name = name or fn.__name__
        params = inspect.signature(fn).parameters
        wants_context = "context" in params
        fields: dict[str, Any] = {
            p.name: (
                p.annotation if p.annotation is not inspect.Parameter.empty else Any,
                ... if p.default is inspect.Parameter.empty else p.default,
            )
            for p in params.values()
            if p.name != "context"
        }
        args_model = create_model(f"{tool_name}_args", __config__={"extra": "forbid"}, **fields)

        def invoke(args: Any, ctx: ToolContext) -> Any:
            kwargs = args.model_dump()
            if wants_context:
                kwargs["context"] = ctx
            return fn(**kwargs)

        tool = Tool(
            name=tool_name,
            description=description or inspect.getdoc(fn) or tool_name,
            args_model=args_model,
            invoke=invoke,
            side_effect=side_effect,
            default_tier=tier,
            untrusted_output=untrusted_output,
        )
        self.functions[tool_name] = tool
        return tool

    def function(self, name: str) -> Tool:
        try:
            return self.functions[name]
        except KeyError:
            raise NotFound(
                f"no function tool named {name!r}; register it with Registry.add_function"
            ) from None

    def load_plugins(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()(self)


def default_registry(*, plugins: bool = True) -> Registry:
    """A registry with every built-in component (and installed plugins)."""
    from components import builtins

    registry = Registry()
    builtins.register(registry)
    if plugins:
        registry.load_plugins()
    return registry
