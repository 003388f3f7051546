"""The contracts every component implements and every runtime provides.

A *node type*, a *tool type* and a *model provider* each describe themselves with a pydantic
`Config` (``extra="forbid"``; field descriptions are the editor's help text) and a `build()`.
The runtime hands nodes a `RunContext` through LangGraph's `Runtime.context`: the run's
identity and the services a node may use, never the database itself.
"""

from __future__ import annotations

__all__ = [
    "TIERS",
    "ApprovalBook",
    "AttemptOutcome",
    "BudgetAction",
    "BuildContext",
    "BuiltNode",
    "CallSite",
    "DecisionRecord",
    "ExpressionStr",
    "GraphRef",
    "HttpPolicy",
    "Meter",
    "ModelAttempt",
    "ModelFactory",
    "ModelRequest",
    "NoMeter",
    "NodeFn",
    "NodeSpec",
    "Outbox",
    "Permit",
    "ProviderSpec",
    "RefusalOutcome",
    "RunContext",
    "SecretRef",
    "SecretResolver",
    "StrictModel",
    "TemplateStr",
    "Tier",
    "TokenUsage",
    "Tool",
    "ToolCaller",
    "ToolContext",
    "ToolOutcome",
    "ToolRef",
    "ToolTypeSpec",
    "field_kind",
    "max_tier",
]

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

Tier = Literal["free", "confirm", "admin"]
TIERS: tuple[Tier, ...] = ("free", "confirm", "admin")


def max_tier(*tiers: Tier) -> Tier:
    """The strictest of the given tiers (tiers are only ever raised)."""
    return max(tiers, key=TIERS.index)


# Config field markers. Validation and the editor find these in any Config's JSON schema
# (``x-studio`` key): tool names must be declared by the graph, secret names must be listed
# in the graph's ``secrets``, templates and expressions are checked before a run starts.
ToolRef = Annotated[str, Field(json_schema_extra={"x-studio": "tool"})]
SecretRef = Annotated[str, Field(json_schema_extra={"x-studio": "secret"})]
TemplateStr = Annotated[str, Field(max_length=20_000, json_schema_extra={"x-studio": "template"})]
ExpressionStr = Annotated[
    str, Field(max_length=2_000, json_schema_extra={"x-studio": "expression"})
]
GraphRef = Annotated[dict[str, Any], Field(json_schema_extra={"x-studio": "graph"})]


def field_kind(schema: dict[str, Any]) -> str | None:
    """The marker of one property in a JSON schema (None for ordinary fields)."""
    kind = schema.get("x-studio")
    if isinstance(kind, str):
        return kind
    nested = [schema.get("items"), schema.get("additionalProperties"), *schema.get("anyOf", [])]
    for sub in nested:
        if isinstance(sub, dict) and (found := field_kind(sub)):
            return found
    return None


class StrictModel(BaseModel):
    """Base of every component `Config`: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class SecretResolver(Protocol):
    """Returns a secret's value by name at the moment it is needed; raises `NotFound`."""

    def __call__(self, name: str) -> str: ...


class Outbox(Protocol):
    """Durable outgoing messages, written in the caller's effect transaction."""

    def enqueue_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str: ...


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A decided approval as the runtime recorded it (read back from the database)."""

    approval_id: str
    decision: Literal["approve", "edit", "reject", "respond"]
    args: Mapping[str, Any]
    args_hash: str
    tier: Tier
    decided_by: str
    feedback: str | None = None


class ApprovalBook(Protocol):
    """Read side of the approval rows, for gates verifying the decision they resume with."""

    def decision_for(self, approval_id: str) -> DecisionRecord | None: ...


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Outbound HTTP rules: private and loopback addresses are refused unless allowed."""

    allow_hosts: frozenset[str] = frozenset()
    timeout_s: float = 20.0
    max_response_bytes: int = 1_000_000


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool sees when it runs: who, where, and the effect's idempotency key."""

    workspace_id: str
    run_id: str
    user_id: str
    node_id: str
    tool_call_id: str
    idempotency_key: str
    secrets: SecretResolver
    outbox: Outbox
    http: HttpPolicy


@dataclass(frozen=True, slots=True)
class Tool:
    """One usable tool instance, built from a graph's tool declaration."""

    name: str
    description: str
    args_model: type[BaseModel]
    invoke: Callable[[BaseModel, ToolContext], Any]
    side_effect: bool
    default_tier: Tier
    untrusted_output: bool = False

    def json_schema(self) -> dict[str, Any]:
        return self.args_model.model_json_schema()


@dataclass(frozen=True, slots=True)
class ToolTypeSpec:
    """A kind of tool (HTTP request, e-mail, function) that graphs instantiate by name."""

    type_name: str
    title: str
    description: str
    config_model: type[StrictModel]
    build: Callable[[str, Any, ComponentsView], Tool]


class ComponentsView(Protocol):
    """The parts of the registry a builder may look up (functions, providers)."""

    def function(self, name: str) -> Tool: ...


class ModelFactory(Protocol):
    """Builds a chat model for a node (provider name + provider config)."""

    def __call__(self, provider: str, config: Mapping[str, Any]) -> BaseChatModel: ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A model provider: its config and how to build a LangChain chat model from it."""

    name: str
    title: str
    config_model: type[StrictModel]
    build: Callable[[Any, SecretResolver], BaseChatModel]
    reusable: bool = False
    """True when a built model holds no secret and no state, so the runtime may reuse it
    for calls with the same config (building a LangChain model costs ~0.5 ms)."""


# --- metering: the seam through which analytics accounts for and limits calls -----------
BudgetAction = Literal["stop", "fallback", "approve"]
AttemptOutcome = Literal["ok", "error", "retry", "fallback"]
RefusalOutcome = Literal["budget_stopped", "budget_paused", "fallback"]


@dataclass(frozen=True, slots=True)
class CallSite:
    """Where a metered call happens: the identity of its usage record and its budgets."""

    workspace_id: str
    run_id: str
    graph_id: str
    graph_version: int
    user_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens as the provider reported them (`input_tokens` includes `cached_tokens`)."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """A model call about to be made: the model, an estimate, a cache key (None: no cache)."""

    provider: str
    model: str
    estimate: TokenUsage
    api_url: str | None = None
    cache_key: str | None = None
    cache_ttl_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Permit:
    """Before a call: go (estimate reserved), cached answer, or over a budget (described)."""

    verdict: Literal["go", "cached", "over_budget"]
    site: CallSite
    request: ModelRequest
    permit_id: str = ""
    estimate_usd: Decimal | None = None
    budget: str = ""
    action: BudgetAction = "stop"
    cached: Mapping[str, Any] | None = None
    saved_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ModelAttempt:
    """One attempt (HTTP request or in-process call); `usage` None: reported none (missing,
    never zero); `answered`: the provider began an answer, so it may have billed tokens."""

    attempt: int
    outcome: AttemptOutcome
    model: str
    usage: TokenUsage | None
    latency_ms: float
    ttft_ms: float | None = None
    error_kind: str | None = None
    answered: bool = False


class Meter(Protocol):
    """Accounts for model and tool calls, enforces budgets (analytics implements it)."""

    def admit(
        self, site: CallSite, request: ModelRequest, *, attempt: int, force: bool = False
    ) -> Permit: ...

    def settle(
        self, permit: Permit, attempts: Sequence[ModelAttempt], answer: Any = None
    ) -> Decimal | None: ...

    def refuse(self, permit: Permit, *, attempt: int, outcome: RefusalOutcome) -> None: ...

    def record_tool(
        self, site: CallSite, tool: str, *, latency_ms: float, ok: bool, error_kind: str | None
    ) -> None: ...

    def close(self) -> None:
        """Release what the meter holds (its run manager closes it)."""


class NoMeter:
    """Records nothing and limits nothing (headless runs without analytics)."""

    def admit(self, site: CallSite, request: ModelRequest, **_: Any) -> Permit:
        return Permit("go", site, request)

    def settle(self, permit: Permit, attempts: Sequence[ModelAttempt], answer: Any = None) -> None:
        return None

    def refuse(self, permit: Permit, **_: Any) -> None:
        return None

    def record_tool(self, site: CallSite, tool: str, **_: Any) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass(slots=True)
class RunContext:
    """Per-run context passed as LangGraph's runtime context (never checkpointed)."""

    workspace_id: str
    run_id: str
    user_id: str
    secrets: SecretResolver
    outbox: Outbox
    approvals: ApprovalBook
    http: HttpPolicy = field(default_factory=HttpPolicy)
    models: ModelFactory | None = None
    tier_floor: Callable[[str], Tier] = field(default=lambda _tool: "free")
    starter_may_act: Callable[[], None] = field(default=lambda: None)
    """Raises (Forbidden) when the run's starter has lost the right to run graphs here;
    checked right before every side effect, so a paused run fails closed."""
    graph_id: str = ""
    graph_version: int = 0
    node_path: str = ""  # "parent/" inside a sub-graph: usage records name the node path
    meter: Meter = field(default_factory=NoMeter)


NodeFn = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class BuiltNode:
    """What a node type's `build()` returns.

    `tools` names the graph tools the node may call: the compiler then wires the governed
    tool executor and the loop back into this node. `destinations` lists the nodes a
    `Command(goto=...)` from this node may reach, for the compiled graph's edges.
    """

    fn: NodeFn
    tools: tuple[str, ...] = ()
    max_tool_rounds: int = 8


class ToolCaller(Protocol):
    """The runtime's governed way to call a tool: tiers, approval gates, effect ledger."""

    def __call__(
        self,
        runtime: Any,
        *,
        node_id: str,
        tool_name: str,
        call_id: str,
        args: Mapping[str, Any],
        tainted: bool,
    ) -> ToolOutcome: ...


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What came of a governed tool call (`ok` False: rejected, invalid or failed)."""

    ok: bool
    content: Any
    untrusted: bool = False


@dataclass(frozen=True, slots=True)
class BuildContext:
    """Compile-time view for node builders."""

    graph_name: str
    node_ids: frozenset[str]
    tools: Mapping[str, Tool]
    state_fields: Mapping[str, str]
    compile_subgraph: Callable[[Mapping[str, Any]], Any]
    call_tool: ToolCaller
    budget_action: BudgetAction | None = None  # on a budget breach; None: the budget's own


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node type: name, palette grouping, its `Config` and its builder."""

    type_name: str
    title: str
    group: str
    description: str
    config_model: type[StrictModel]
    build: Callable[[str, Any, BuildContext], BuiltNode]
