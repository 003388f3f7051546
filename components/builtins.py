"""Registers every built-in component, through the same calls a plugin uses."""

from __future__ import annotations

__all__ = ["BUILTIN_MODULES", "register"]

from importlib import import_module

from components.registry import Registry

BUILTIN_MODULES = (
    "components.nodes.llm",
    "components.nodes.tool_call",
    "components.nodes.router",
    "components.nodes.human",
    "components.nodes.subgraph",
    "components.nodes.memory",
    "components.nodes.compress",
    "components.nodes.transform",
    "components.nodes.output",
    "components.tools.http",
    "components.tools.email",
    "components.tools.function",
    "components.tools.demo",
    "components.providers.scripted",
    "components.providers.openai_compat",
)


def register(registry: Registry) -> None:
    """Each built-in module exposes `register(registry)`."""
    for name in BUILTIN_MODULES:
        import_module(name).register(registry)
