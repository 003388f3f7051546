"""Governed tool calls: tier from server-side policy, approval gate, effect ledger.

Whether a call runs depends only on the graph's policy, the workspace's floor, what the run
has read (provenance) and the recorded decision — never on anything the model says (I-POL).
"""

from __future__ import annotations

__all__ = ["GovernedToolCaller", "NoOutbox", "effective_tier"]

import logging
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from components.base import RunContext, Tier, Tool, ToolContext, ToolOutcome, max_tier
from components.errors import RunFailure, StudioError, ToolFailure
from components.gates import GateRequest, binding_hash, gate
from components.metering import call_site
from graphs.approvals import TIMEOUT_DECIDER
from graphs.ledger import EffectLedger, call_hash, idempotency_key

log = logging.getLogger(__name__)

TOOL_DECISIONS = ("approve", "edit", "reject")


def effective_tier(
    tool: Tool, declared: Tier | None, floor: Tier, *, tainted: bool, taint_gates: bool
) -> tuple[Tier, str]:
    """The tier a call needs, and why (shown on the approval card)."""
    tier = max_tier(declared or tool.default_tier, floor)
    reason = f"graph policy sets {tool.name!r} to {declared or tool.default_tier!r}"
    if floor != "free" and tier == floor:
        reason = f"workspace policy raises {tool.name!r} to {floor!r}"
    if taint_gates and tainted and tool.side_effect and tier == "free":
        tier, reason = "confirm", "the run has read untrusted content before this side effect"
    return tier, reason


class NoOutbox:
    """The outbox of calls that may not send e-mail (read-only tools, the run itself)."""

    def enqueue_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str:
        raise ToolFailure("this tool is declared without side effects and cannot send e-mail")


class GovernedToolCaller:
    """The `ToolCaller` the compiler hands to nodes."""

    def __init__(
        self,
        tools: Mapping[str, Tool],
        declared_tiers: Mapping[str, Tier | None],
        ledger: EffectLedger,
        *,
        taint_gates: bool = True,
    ) -> None:
        self._tools = tools
        self._declared = declared_tiers
        self._ledger = ledger
        self._taint_gates = taint_gates

    def __call__(
        self,
        runtime: Any,
        *,
        node_id: str,
        tool_name: str,
        call_id: str,
        args: Mapping[str, Any],
        tainted: bool,
    ) -> ToolOutcome:
        ctx: RunContext = runtime.context
        tool = self._tools.get(tool_name)
        if tool is None:
            _record(ctx, node_id, tool_name, 0.0, "unknown_tool")
            return ToolOutcome(False, f"unknown tool {tool_name!r}; the call was not executed")
        try:
            parsed = tool.args_model.model_validate(dict(args))
        except ValidationError as exc:
            _record(ctx, node_id, tool_name, 0.0, "invalid_arguments")
            return ToolOutcome(False, _invalid(tool_name, exc))
        tier, reason = effective_tier(
            tool,
            self._declared.get(tool_name),
            ctx.tier_floor(tool_name),
            tainted=tainted,
            taint_gates=self._taint_gates,
        )
        canonical = parsed.model_dump(mode="json")
        if tier != "free":
            request = GateRequest(
                node_id=node_id,
                call_id=call_id,
                kind="tool",
                action=tool_name,
                args=canonical,
                tier=tier,
                description=tool.description,
                reason=reason,
                allowed=TOOL_DECISIONS,
                tainted=tainted,
            )
            record = gate(ctx, request)
            if record.decision == "reject":
                why = record.feedback or "no reason given"
                said = "A person rejected this call"
                if record.decided_by == TIMEOUT_DECIDER:
                    said = "This call was rejected automatically"
                _record(ctx, node_id, tool_name, 0.0, "rejected")
                return ToolOutcome(False, f"{said}: {why}")
            if record.decision == "edit":
                parsed = tool.args_model.model_validate(dict(record.args))
                canonical = parsed.model_dump(mode="json")
                expected = binding_hash(
                    action=tool_name, args=canonical, run_id=ctx.run_id, node_id=node_id, tier=tier
                )
                if expected != record.args_hash:
                    raise RunFailure(f"edited call {call_id!r} does not match what was approved")
        started = time.perf_counter()
        try:
            outcome = self._execute(ctx, node_id, call_id, tool, parsed, canonical, tier)
        except Exception:
            _record(ctx, node_id, tool_name, (time.perf_counter() - started) * 1000, "raised")
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        _record(ctx, node_id, tool_name, elapsed_ms, None if outcome.ok else "failed")
        return outcome

    def _execute(
        self,
        ctx: RunContext,
        node_id: str,
        call_id: str,
        tool: Tool,
        parsed: Any,
        canonical: dict[str, Any],
        tier: Tier,
    ) -> ToolOutcome:
        def tool_context(key: str, outbox: Any) -> ToolContext:
            return ToolContext(
                workspace_id=ctx.workspace_id,
                run_id=ctx.run_id,
                user_id=ctx.user_id,
                node_id=node_id,
                tool_call_id=call_id,
                idempotency_key=key,
                secrets=ctx.secrets,
                outbox=outbox,
                http=ctx.http,
            )

        if not tool.side_effect:
            key = idempotency_key(ctx.workspace_id, ctx.run_id, node_id, call_id)
            try:
                result = tool.invoke(parsed, tool_context(key, NoOutbox()))
            except ToolFailure as exc:
                return ToolOutcome(False, str(exc), untrusted=tool.untrusted_output)
            return ToolOutcome(True, result, untrusted=tool.untrusted_output)

        from graphs.outbox import SqlOutbox

        try:
            ctx.starter_may_act()
        except StudioError as exc:
            raise RunFailure(
                f"{tool.name!r} was not executed: the run's starter may no longer act here ({exc})"
            ) from None

        outcome = self._ledger.run_once(
            workspace_id=ctx.workspace_id,
            run_id=ctx.run_id,
            node_id=node_id,
            call_id=call_id,
            tool=tool.name,
            user_id=ctx.user_id,
            args_hash=binding_hash(
                action=tool.name, args=canonical, run_id=ctx.run_id, node_id=node_id, tier=tier
            ),
            call_hash=call_hash(tool.name, canonical),
            execute=lambda key, session: tool.invoke(
                parsed,
                tool_context(
                    key, SqlOutbox(session, workspace_id=ctx.workspace_id, run_id=ctx.run_id)
                ),
            ),
        )
        content = outcome.result if outcome.ok else (outcome.result or {}).get("error", "failed")
        return ToolOutcome(outcome.ok, content, untrusted=tool.untrusted_output)


def _record(
    ctx: RunContext, node_id: str, tool: str, latency_ms: float, error_kind: str | None
) -> None:
    """One usage record per tool call: duration and outcome (never fails the call)."""
    try:
        ctx.meter.record_tool(
            call_site(ctx, node_id),
            tool,
            latency_ms=round(latency_ms, 3),
            ok=error_kind is None,
            error_kind=error_kind,
        )
    except Exception:
        log.exception("run %s: could not record the call of tool %r", ctx.run_id, tool)


def _invalid(tool_name: str, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
        for err in exc.errors()[:5]
    )
    return f"invalid arguments for {tool_name!r} ({problems}); the call was not executed"
