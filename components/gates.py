"""Approval gates: the one way a run pauses for a person.

A gate is pure until the decision: it computes the call's binding (action, canonical
arguments, run, node, tier), pauses with LangGraph `interrupt()`, and on resume reads the
decision back from the approval rows by id. The resume value carries only the approval id, so
nothing a client sends can stand in for a recorded decision.
"""

from __future__ import annotations

__all__ = ["GateRequest", "approval_id_for", "binding_hash", "canonical_json", "gate"]

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.types import interrupt

from components.base import DecisionRecord, RunContext, Tier
from components.errors import RunFailure


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no spaces, UTF-8 kept (the form every hash is taken of)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def binding_hash(
    *, action: str, args: Mapping[str, Any], run_id: str, node_id: str, tier: Tier
) -> str:
    """Hash of exactly what a person approves: any difference needs a new approval."""
    blob = canonical_json(
        {"action": action, "args": args, "run": run_id, "node": node_id, "tier": tier}
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def approval_id_for(run_id: str, node_id: str, call_id: str, args_hash: str) -> str:
    blob = canonical_json([run_id, node_id, call_id, args_hash])
    return "apr_" + hashlib.sha256(blob.encode()).hexdigest()[:28]


@dataclass(frozen=True, slots=True)
class GateRequest:
    """What a gate shows: follows LangChain's human-in-the-loop interrupt payload."""

    node_id: str
    call_id: str
    kind: str  # "tool" | "approval" | "input"
    action: str
    args: Mapping[str, Any]
    tier: Tier
    description: str
    reason: str
    allowed: tuple[str, ...]
    tainted: bool | None = None  # the run had read untrusted content (None: not known)

    def payload(self, run_id: str) -> dict[str, Any]:
        args_hash = binding_hash(
            action=self.action,
            args=self.args,
            run_id=run_id,
            node_id=self.node_id,
            tier=self.tier,
        )
        return {
            "approval_id": approval_id_for(run_id, self.node_id, self.call_id, args_hash),
            "kind": self.kind,
            "node_id": self.node_id,
            "tool_call_id": self.call_id,
            "action_request": {"action": self.action, "args": dict(self.args)},
            "args_hash": args_hash,
            "tier": self.tier,
            "description": self.description,
            "reason": self.reason,
            "allowed_decisions": list(self.allowed),
            "tainted": self.tainted,
        }


def gate(ctx: RunContext, request: GateRequest) -> DecisionRecord:
    """Pause until a person decides; return the recorded, verified decision."""
    payload = request.payload(ctx.run_id)
    answer = interrupt(payload)
    approval_id = payload["approval_id"]
    if not isinstance(answer, Mapping) or answer.get("approval_id") != approval_id:
        raise RunFailure(f"resumed with an answer for another approval than {approval_id!r}")
    record = ctx.approvals.decision_for(approval_id)
    if record is None:
        raise RunFailure(f"approval {approval_id!r} has no recorded decision")
    if record.decision not in request.allowed:
        raise RunFailure(f"decision {record.decision!r} is not allowed for {approval_id!r}")
    if record.tier != request.tier:
        raise RunFailure(f"approval {approval_id!r} was decided for another tier")
    if record.decision == "approve" and record.args_hash != payload["args_hash"]:
        raise RunFailure(f"approval {approval_id!r} was given for different arguments")
    return record
