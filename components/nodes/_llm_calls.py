"""The LLM node's model calls through the run's meter: cache, budgets, attempts, fallbacks.

For each model of the node — the configured one, then its fallback models — the meter is
asked before the call (a cached answer, or the estimate reserved against every budget, or
a breach). On a breach the graph's action applies: stop the run as `budget_exceeded`, go on
to the next fallback model, or pause until an admin approves the overspend (an `admin`-tier
approval in the inbox; the node is a pure gate up to the interrupt). After the call the
meter settles every attempt the provider saw — retries included — from the usage the
provider reported. A failed model falls back to the next one too.
"""

from __future__ import annotations

__all__ = ["CallPolicy", "ModelCalls"]

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, message_to_dict, messages_from_dict
from langgraph.errors import GraphBubbleUp

from components.base import (
    BudgetAction,
    CallSite,
    ModelRequest,
    NoMeter,
    Permit,
    RunContext,
    TokenUsage,
)
from components.errors import BudgetExceeded, ModelFailure, StudioError
from components.gates import GateRequest, gate
from components.metering import AttemptProbe, call_site, usage_of

Choice = tuple[str, Mapping[str, Any]]
"""(provider name, rendered provider config) of one model the node may call."""
OVERSPEND_DECISIONS = ("approve", "reject")


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How a node meters its calls (from its config and the graph's policies)."""

    budget_action: BudgetAction | None
    cache_ttl_s: float
    expected_output_tokens: int


def _text_tokens(text: str) -> int:
    return -(-len(text) // 4)  # ceil(len / 4), in integers


def estimate_input_tokens(messages: Sequence[BaseMessage], schemas: Sequence[Any]) -> int:
    """About four characters a token, plus each message's overhead (for budget checks)."""
    total = 3 + _text_tokens(json.dumps(list(schemas), default=str)) if schemas else 3
    for message in messages:
        content = message.content
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        total += 4 - (-len(text) // 4)
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += 3 + _text_tokens(call["name"] + json.dumps(call["args"], default=str))
    return total


def _message_key(message: BaseMessage) -> dict[str, Any]:
    """What of a message reaches the model (no ids, no metadata)."""
    return {
        "type": message.type,
        "content": message.content,
        "name": message.name,
        "tool_calls": [
            [c["name"], c["args"], c["id"]] for c in getattr(message, "tool_calls", None) or []
        ],
        "tool_call_id": getattr(message, "tool_call_id", None),
    }


def request_key(choice: Choice, messages: Sequence[BaseMessage], schemas: Sequence[Any]) -> str:
    """Exact-match key of a call: model, parameters, messages, tools."""
    blob = json.dumps(
        {
            "provider": choice[0],
            "config": choice[1],
            "messages": [_message_key(m) for m in messages],
            "tools": list(schemas),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _model_name(model: Any, choice: Choice) -> str:
    fields = getattr(model, "__dict__", {})  # a field's value, without pydantic's slow miss
    for name in (fields.get("model_name"), fields.get("model")):
        if isinstance(name, str) and name:
            return name
    return str(choice[1].get("model") or choice[0])


def _failure(node_id: str, exc: BaseException) -> StudioError:
    if isinstance(exc, ModelFailure):
        text = str(exc)
        return ModelFailure(text if text.startswith("node ") else f"node {node_id!r}: {text}")
    if isinstance(exc, StudioError):
        return exc
    from components.providers.openai_compat import classify_failure

    return ModelFailure(f"node {node_id!r}: {classify_failure(exc)}")


def _not_a_message(answer: object) -> ModelFailure:
    return ModelFailure(f"the model returned {type(answer).__name__}")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class ModelCalls:
    """One execution of an LLM node's call: its models in order, metered."""

    def __init__(
        self,
        node_id: str,
        ctx: RunContext,
        policy: CallPolicy,
        build: Callable[[str, Mapping[str, Any]], Any],
    ) -> None:
        self.node_id = node_id
        self.ctx = ctx
        self.policy = policy
        self.build = build
        self.unmetered = isinstance(ctx.meter, NoMeter)
        self.attempt = 1
        self.cost: Decimal | None = Decimal(0)
        self._input_estimate: int | None = None

    @cached_property
    def site(self) -> CallSite:
        return call_site(self.ctx, self.node_id)

    def run(
        self, choices: Sequence[Choice], messages: list[BaseMessage], schemas: list[Any]
    ) -> AIMessage:
        failure: StudioError | None = None
        for index, choice in enumerate(choices):
            has_next = index + 1 < len(choices)
            model = self.build(*choice)
            if self.unmetered:
                bound = model.bind_tools(schemas) if schemas else model
                answer, failure = self._unmetered_attempt(bound, messages)
                if answer is not None:
                    return answer
                continue
            request = self._request(choice, model, messages, schemas)
            permit = self.ctx.meter.admit(self.site, request, attempt=self.attempt)
            if permit.verdict == "cached" and permit.cached is not None:
                return self._from_cache(permit)
            if permit.verdict == "over_budget":
                key = request.cache_key or request_key(choice, messages, schemas)
                admitted = self._over_budget(permit, key, has_next)
                if admitted is None:
                    continue
                permit = admitted
            bound = model.bind_tools(schemas) if schemas else model
            answer, failure = self._attempt(permit, bound, messages, has_next)
            if answer is not None:
                return answer
        raise failure or ModelFailure(f"node {self.node_id!r}: no model to call")

    def _request(
        self, choice: Choice, model: Any, messages: list[BaseMessage], schemas: list[Any]
    ) -> ModelRequest:
        max_tokens = choice[1].get("max_tokens")
        output = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
        base_url = choice[1].get("base_url")
        ttl = self.policy.cache_ttl_s
        return ModelRequest(
            provider=choice[0],
            model=_model_name(model, choice),
            estimate=TokenUsage(
                self._estimate(messages, schemas), output or self.policy.expected_output_tokens
            ),
            api_url=base_url if isinstance(base_url, str) else None,
            cache_key=request_key(choice, messages, schemas) if ttl > 0 else None,
            cache_ttl_s=ttl,
        )

    def _estimate(self, messages: list[BaseMessage], schemas: list[Any]) -> int:
        if self._input_estimate is None:
            self._input_estimate = estimate_input_tokens(messages, schemas)
        return self._input_estimate

    def _invoke(
        self, model: Any, messages: list[BaseMessage]
    ) -> tuple[AttemptProbe, AIMessage | None, BaseException | None]:
        """One call of the model, watched: what the probe saw, the answer or the failure."""
        probe = AttemptProbe()
        answer: Any = None
        with probe.watching(model) as config:
            try:
                answer = model.invoke(messages, config=config)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                return probe, None, exc
        if not isinstance(answer, AIMessage):
            return probe, None, _not_a_message(answer)
        return probe, answer, None

    def _attempt(
        self, permit: Permit, model: Any, messages: list[BaseMessage], has_next: bool
    ) -> tuple[AIMessage | None, StudioError | None]:
        probe, message, failure = self._invoke(model, messages)
        reported = message.response_metadata.get("model_name") if message is not None else None
        attempts = probe.attempts(
            first=self.attempt,
            model=str(reported or permit.request.model),
            usage=usage_of(message),
            failure=failure,
            failed_outcome="fallback" if has_next else "error",
        )
        self.attempt += len(attempts)
        keep = (
            message_to_dict(message) if message is not None and permit.request.cache_key else None
        )
        self._add(self.ctx.meter.settle(permit, attempts, keep))
        if failure is not None or message is None:
            return None, _failure(self.node_id, failure or RuntimeError())
        return self._annotated(message, cache_hit=False), None

    def _unmetered_attempt(
        self, model: Any, messages: list[BaseMessage]
    ) -> tuple[AIMessage | None, StudioError | None]:
        """A call in a run nothing meters (`NoMeter`: no budgets, no cache, no records): no
        estimate, permit or attempt records, so no probe either (it costs every call), and
        the answer carries no `studio_usage` (its cost is unknown; the state and every
        checkpoint stay as small as the model's own)."""
        try:
            answer = model.invoke(messages)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            return None, _failure(self.node_id, exc)
        if not isinstance(answer, AIMessage):
            return None, _failure(self.node_id, _not_a_message(answer))
        return answer, None

    def _add(self, cost: Decimal | None) -> None:
        self.cost = None if cost is None or self.cost is None else self.cost + cost

    def _annotated(
        self, message: AIMessage, *, cache_hit: bool, saved: Decimal | None = None
    ) -> AIMessage:
        message.response_metadata["studio_usage"] = {
            "cost_usd": _money(self.cost),
            "attempts": self.attempt - 1,
            "cache_hit": cache_hit,
            **({"saved_usd": _money(saved)} if cache_hit else {}),
        }
        return message

    def _from_cache(self, permit: Permit) -> AIMessage:
        [message] = messages_from_dict([dict(permit.cached or {})])
        if not isinstance(message, AIMessage):
            raise ModelFailure(f"node {self.node_id!r}: a cached answer is not an AI message")
        message.id = None  # a fresh message: the state must not replace an earlier one
        message.usage_metadata = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        return self._annotated(message, cache_hit=True, saved=permit.saved_usd)

    # --- budget breaches ---------------------------------------------------------------
    def _over_budget(self, permit: Permit, key: str, has_next: bool) -> Permit | None:
        """A permit to go on with, None to try the next model; raises `BudgetExceeded`."""
        action = self.policy.budget_action or permit.action
        meter = self.ctx.meter
        if action == "fallback" and has_next:
            meter.refuse(permit, attempt=self.attempt, outcome="fallback")
            self.attempt += 1
            return None
        if action == "approve":
            return self._ask_admin(permit, key)
        meter.refuse(permit, attempt=self.attempt, outcome="budget_stopped")
        raise BudgetExceeded(self._breach(permit, action))

    def _ask_admin(self, permit: Permit, key: str) -> Permit:
        request = permit.request
        estimate = _money(permit.estimate_usd) or "unknown"
        gate_request = GateRequest(
            node_id=self.node_id,
            call_id=f"budget_{key[:40]}",
            kind="budget",
            action="budget_overspend",
            args={"model": request.model, "provider": request.provider, "estimate_usd": estimate},
            tier="admin",
            description=f"A call to {request.model!r} (about ${estimate}) would exceed "
            f"{permit.budget}. Approve to let this one call run anyway.",
            reason=f"{permit.budget} would be exceeded",
            allowed=OVERSPEND_DECISIONS,
        )
        approval_id = str(gate_request.payload(self.ctx.run_id)["approval_id"])
        if self.ctx.approvals.decision_for(approval_id) is None:  # first time: a pause
            self.ctx.meter.refuse(permit, attempt=self.attempt, outcome="budget_paused")
        record = gate(self.ctx, gate_request)
        if record.decision == "approve":
            return self.ctx.meter.admit(self.site, request, attempt=self.attempt, force=True)
        self.ctx.meter.refuse(permit, attempt=self.attempt, outcome="budget_stopped")
        why = f": {record.feedback}" if record.feedback else ""
        raise BudgetExceeded(
            f"node {self.node_id!r}: {record.decided_by!r} refused to exceed {permit.budget}{why}"
        )

    def _breach(self, permit: Permit, action: BudgetAction) -> str:
        tail = (
            "no fallback model fits; list a cheaper one in fallback_models"
            if action == "fallback"
            else "raise the budget, or set policies.budget_action to 'fallback' or 'approve'"
        )
        estimate = _money(permit.estimate_usd) or "unknown"
        return (
            f"node {self.node_id!r}: a call to {permit.request.model!r} (about ${estimate}) "
            f"would exceed {permit.budget}; {tail}"
        )
