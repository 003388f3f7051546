"""One approval as the inbox shows it: the server-computed call and the decision buttons.

The card is one element (`approval_card.js`): a page of 25 cards then costs 25 elements to
build instead of hundreds, which is most of what keeps the inbox page fast. Every string a
user, a graph author or a model controls (tool name, arguments, description, reason,
feedback, graph name, e-mails) reaches the browser as data that the component renders as
text, never as HTML or Markdown. A click only reports which decision; the inbox sends it
through the approval service, which decides whether this person may make it.
"""

from __future__ import annotations

__all__ = [
    "ApprovalCard",
    "args_text",
    "context_text",
    "deadline_state",
    "deadline_text",
    "outcome_text",
    "when",
]

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nicegui import ui

from graphs.approval_timeouts import format_duration
from graphs.approvals import TIMEOUT_DECIDER, ApprovalView
from studio.approval_inbox import InboxCard

STATUS_WORDS = {
    "approved": "Approved",
    "edited": "Approved with edits",
    "rejected": "Rejected",
    "responded": "Answered",
    "cancelled": "Cancelled (the run ended)",
    "superseded": "Superseded",
}
DECISIONS = ("approve", "edit", "reject", "respond")
WILL = {  # what a timeout will do, as the card says it
    "reject": "Rejects automatically",
    "escalate": "Escalates to admins",
    "leave": "Becomes overdue",
}
OnDecision = Callable[[InboxCard, str], Awaitable[None]]


def when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC" if at is not None else ""


def args_text(args: Any) -> str:
    return json.dumps(args, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def context_text(card: InboxCard) -> str:
    """Where the call comes from and why it waits, as plain text lines."""
    view = card.approval
    untrusted = {True: "yes", False: "no", None: "not recorded"}[view.tainted]
    lines = [
        f"Graph: {card.graph_name} · run {view.run_id[:8]} · started by {card.started_by}",
        f"Waiting since {when(view.created_at)} · {view.kind} · node {view.node_id}",
        f"Why it waits: {view.reason or '—'}",
        f"Run had read untrusted content: {untrusted}",
    ]
    if view.description:
        lines.append(view.description)
    return "\n".join(lines)


def deadline_state(view: ApprovalView) -> str | None:
    """'escalated', 'overdue', 'timed' (a deadline ahead) or None (no deadline)."""
    if view.status != "pending" or view.expires_at is None:
        return None
    if view.escalated:
        return "escalated"
    if view.overdue:
        return "overdue"
    return "timed"


def deadline_text(view: ApprovalView, now: datetime | None = None) -> str | None:
    """'Rejects automatically in 4 min (at …)', 'Escalated to admins since …', …"""
    state = deadline_state(view)
    if state is None or view.expires_at is None:
        return None
    if state == "escalated":
        return (
            f"Escalated to admins since {when(view.timed_out_at)}: only an admin or approver "
            "who did not start the run may decide it"
        )
    if state == "overdue":
        return f"Overdue since {when(view.timed_out_at)}: no decision in time"
    left = (view.expires_at - (now or datetime.now(UTC))).total_seconds()
    soon = f"in {format_duration(left)}" if left >= 1 else "any moment now"
    return f"{WILL.get(view.timeout_action or '', 'Times out')} {soon} (at {when(view.expires_at)})"


def outcome_text(card: InboxCard) -> str:
    view = card.approval
    word = STATUS_WORDS.get(view.status, view.status)
    who = f" by {card.decided_by}" if card.decided_by else ""
    if view.decided_by == TIMEOUT_DECIDER:
        word, who = "Rejected automatically", " (nobody decided in time)"
    lines = [f"{word}{who} · {when(view.decided_at)}"]
    if view.status == "edited" and view.decided_args is not None:
        lines.append("Approved arguments: " + args_text(view.decided_args))
    if view.status == "responded" and view.decided_args is not None:
        lines.append(f"Answer: {view.decided_args.get('response', '')}")
    if view.feedback:
        lines.append(f"Feedback: {view.feedback}")
    return "\n".join(lines)


class ApprovalCard(ui.element, component="approval_card.js"):
    """A pending card (with `on_decision`) or a decided one (history: `on_decision` None).

    Events `approve`, `edit`, `reject`, `respond` call `on_decision(card, decision)` even
    when the buttons are shown disabled: a hand-made event must meet the service's refusal,
    not a silent drop that would hide it."""

    def __init__(self, card: InboxCard, on_decision: OnDecision | None) -> None:
        super().__init__()
        view = card.approval
        self.card = card
        self._props["card"] = {
            "approval_id": view.approval_id,
            "action": view.action,
            "tier": view.tier,
            "run_url": f"/runs/{view.run_id}",
            "context": context_text(card),
            "tainted": bool(view.tainted),
            "args": args_text(view.args),
            "outcome": outcome_text(card) if on_decision is None else None,
            "allowed": list(view.allowed) if on_decision is not None else [],
            "refusal": card.refusal,
            "deadline": deadline_text(view),
            "deadline_state": deadline_state(view),
            "busy": False,
        }
        if on_decision is not None:
            for decision in DECISIONS:
                self.on(decision, lambda _e, d=decision: on_decision(card, d))
        self.mark(f"approval-{view.approval_id}")

    @property
    def decidable(self) -> bool:
        """Whether the buttons are offered (a hint: the service checks again)."""
        return self._props["card"]["refusal"] is None and bool(self._props["card"]["allowed"])

    def set_busy(self, busy: bool) -> None:
        """Lock the buttons while a decision is on its way."""
        self._props["card"]["busy"] = busy
        self.update()

    def _displayed_contents(self, *, only_visible: bool) -> list[Any]:
        card = self._props["card"]
        shown = [card["action"], card["tier"], card["context"], card["args"], card["outcome"]]
        if card["deadline"]:
            shown.append(card["deadline"])
        if card["tainted"]:
            shown.append("The run had read untrusted content")
        if card["refusal"]:
            shown.append(f"You cannot decide this: {card['refusal']}")
        return shown
