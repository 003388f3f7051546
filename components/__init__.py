"""Node types, tools and model providers: each self-describing (pydantic Config + build())."""

from components.base import (
    BuildContext,
    BuiltNode,
    NodeSpec,
    ProviderSpec,
    RunContext,
    Tier,
    Tool,
    ToolContext,
    ToolTypeSpec,
)
from components.errors import (
    Conflict,
    Forbidden,
    GraphInvalid,
    NotFound,
    Problem,
    RunFailure,
    StudioError,
    UserError,
)
from components.registry import Registry, default_registry

__all__ = [
    "BuildContext",
    "BuiltNode",
    "Conflict",
    "Forbidden",
    "GraphInvalid",
    "NodeSpec",
    "NotFound",
    "Problem",
    "ProviderSpec",
    "Registry",
    "RunContext",
    "RunFailure",
    "StudioError",
    "Tier",
    "Tool",
    "ToolContext",
    "ToolTypeSpec",
    "UserError",
    "default_registry",
]
