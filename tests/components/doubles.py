"""Test doubles for a node's RunContext: no secrets, a recording outbox, no approvals."""

from __future__ import annotations

from typing import Any

from components.base import DecisionRecord, ToolOutcome
from components.errors import NotFound


class NoSecrets:
    def __call__(self, name: str) -> str:
        raise NotFound(f"no secret {name!r}")


class EchoOutbox:
    def enqueue_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str:
        return idempotency_key


class NoApprovals:
    def decision_for(self, approval_id: str) -> DecisionRecord | None:
        return None


def no_tool_calls(runtime: Any, **kwargs: Any) -> ToolOutcome:
    raise AssertionError("these nodes never call tools")
