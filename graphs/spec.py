"""The graph document: a versioned JSON format defined by pydantic models.

Shape checks live here (types, sizes, identifiers, ``extra="forbid"``); checks that need the
whole graph or the component registry live in `graphs.validation`.
"""

from __future__ import annotations

__all__ = [
    "END",
    "MAX_TIMEOUT_S",
    "MIN_TIMEOUT_S",
    "SCHEMA_VERSION",
    "ApprovalTimeout",
    "EdgeDoc",
    "GraphDocument",
    "NodeDoc",
    "Policies",
    "Position",
    "StateField",
    "ToolDecl",
    "json_schema",
]

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from components.base import Tier
from components.errors import NotFound

SCHEMA_VERSION = 1
END = "__end__"

_FORBIDDEN_CHARS = {chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)}
_FORBIDDEN_CHARS |= {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e"}  # bidi embeddings
_FORBIDDEN_CHARS |= {"\u2066", "\u2067", "\u2068", "\u2069", "\ufeff"}  # isolates, BOM


def _clean_text(value: str) -> str:
    bad = sorted({f"U+{ord(c):04X}" for c in value if c in _FORBIDDEN_CHARS})
    if bad:
        raise ValueError(f"contains control or bidi-override characters ({', '.join(bad)})")
    return unicodedata.normalize("NFC", value)


Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=2_000), AfterValidator(_clean_text)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_clean_text)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Position(_Doc):
    x: float = 0.0
    y: float = 0.0


class NodeDoc(_Doc):
    id: NodeId = Field(description="Unique node id (letters, digits, '_' and '-').")
    type: Identifier = Field(description="Node type from the component registry.")
    label: Annotated[str, StringConstraints(max_length=200), AfterValidator(_clean_text)] = ""
    description: Text = ""
    config: dict[str, Any] = Field(default_factory=dict, description="The node type's Config.")
    position: Position = Field(default_factory=Position)


class EdgeDoc(_Doc):
    id: Annotated[str, StringConstraints(max_length=140)] | None = Field(
        default=None, description="Edge id; defaults to 'source->target'."
    )
    source: NodeId
    target: str = Field(description=f"A node id, or {END!r} to finish the run.")
    condition: Annotated[str, StringConstraints(max_length=2_000)] | None = Field(
        default=None,
        description="Safe expression over the state; the edge is taken when it is true. "
        "Among a node's conditional edges the first true one wins; an edge without a "
        "condition next to conditional ones is the default.",
    )
    label: Annotated[str, StringConstraints(max_length=200), AfterValidator(_clean_text)] = ""

    @property
    def edge_id(self) -> str:
        return self.id or f"{self.source}->{self.target}"


def _not_reserved(name: str) -> str:
    if name == "messages" or name.startswith("studio_"):
        raise ValueError(f"{name!r} is reserved by the studio; choose another field name")
    return name


class StateField(_Doc):
    name: Annotated[Identifier, AfterValidator(_not_reserved)]
    type: Literal["string", "number", "integer", "boolean", "object", "list", "messages"] = "string"
    reducer: Literal["replace", "append"] = Field(
        default="replace", description="'append' concatenates lists written by several nodes."
    )
    default: Any = None
    description: Text = ""
    input: bool = Field(default=False, description="Asked for when a run starts.")


class ToolDecl(_Doc):
    name: Identifier = Field(description="The name the model and nodes call the tool by.")
    type: Identifier = Field(description="Tool type from the registry (http, email, function).")
    description: Text = ""
    tier: Tier | None = Field(
        default=None,
        description="Approval tier: free, confirm (starter or approver) or admin (an approver "
        "who did not start the run). Workspace policy may raise it, never lower it.",
    )
    config: dict[str, Any] = Field(default_factory=dict)


MIN_TIMEOUT_S = 60
MAX_TIMEOUT_S = 30 * 24 * 3600


class ApprovalTimeout(_Doc):
    """What happens to a node's approval nobody decides in time."""

    after: int = Field(
        ge=MIN_TIMEOUT_S,
        le=MAX_TIMEOUT_S,
        description="Seconds a pending approval waits before `action` is taken "
        "(1 minute to 30 days).",
    )
    action: Literal["reject", "escalate", "leave"] = Field(
        description="'reject': decide it as rejected (the model sees that it timed out) and "
        "resume the run; 'escalate': only an admin or approver who did not start the run may "
        "decide it from then on, and they are notified; 'leave': keep it pending, marked "
        "overdue.",
    )
    warn_before: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_S,
        description="Seconds before the timeout that approvers are warned (e-mail, and the "
        "run's webhook); less than `after`. Empty: no warning.",
    )


class Policies(_Doc):
    max_steps: int | None = Field(
        default=None, ge=1, le=10_000, description="Step limit for the whole run."
    )
    untrusted_content_gates_effects: bool = Field(
        default=True,
        description="Once a run has read untrusted content (web pages, HTTP responses), "
        "every side-effecting tool call needs at least 'confirm'.",
    )
    budget_action: Literal["stop", "fallback", "approve"] | None = Field(
        default=None,
        description="When a model call would exceed a budget: 'stop' the run as "
        "budget_exceeded, 'fallback' to the next of the node's fallback_models that fits, or "
        "'approve': pause until an admin allows the overspend. Empty: the budget's own action.",
    )
    approval_timeouts: dict[str, ApprovalTimeout] = Field(
        default_factory=dict,
        max_length=500,
        description="Per node id: how long the node's approvals may wait for a decision and "
        "what happens then (nodes not listed wait forever).",
    )


class GraphDocument(_Doc):
    """A graph: nodes, edges, state fields, tools, policies, secret names (never values)."""

    schema_version: Literal[1] = Field(description="Version of this document format.")
    name: Name
    description: Text = ""
    entry: NodeId = Field(description="The node a run starts at.")
    nodes: list[NodeDoc] = Field(max_length=500)
    edges: list[EdgeDoc] = Field(default_factory=list, max_length=2_000)
    state: list[StateField] = Field(default_factory=list, max_length=200)
    tools: list[ToolDecl] = Field(default_factory=list, max_length=100)
    secrets: list[Identifier] = Field(
        default_factory=list, max_length=100, description="Names of secrets the graph uses."
    )
    policies: Policies = Field(default_factory=Policies)

    def node(self, node_id: str) -> NodeDoc:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise NotFound(f"graph {self.name!r} has no node {node_id!r}")

    def input_fields(self) -> list[StateField]:
        return [f for f in self.state if f.input]


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the graph document."""
    schema = GraphDocument.model_json_schema()
    schema["$id"] = f"https://agent-studio.dev/schema/graph-v{SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
