"""The approval inbox's service functions: pages of approvals as a person reads them.

Everything here takes the acting identity and goes through the approval service, which
scopes by workspace (a foreign approval is "not found") and authorizes `approval:read`;
deciding goes through `RunManager.decide`, which authorizes the decision itself. What a
card shows is computed here, on the server: the exact call, its tier and why it was gated,
who started the run (e-mail), whether the run had read untrusted content, its deadline
(when the node has an approval timeout), and — as a hint for the buttons only — why this
person may not decide it (an escalated approval needs an admin who did not start the run).
Known secret values are redacted.
"""

from __future__ import annotations

__all__ = [
    "PAGE_SIZE",
    "Cursor",
    "InboxCard",
    "InboxPage",
    "decide",
    "decided_by",
    "edit_schema",
    "inbox_page",
    "inbox_stamp",
]

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from components.errors import NotFound
from graphs.approvals import ApprovalView, Decision, InboxItem, InboxStamp
from graphs.identity import Actor
from studio.context import Studio

PAGE_SIZE = 25
Cursor = tuple[datetime, str]
"""(created_at — in the history: decided_at —, approval_id) of a page's last card."""


@dataclass(frozen=True, slots=True)
class InboxCard:
    approval: ApprovalView
    graph_id: str
    graph_name: str
    started_by: str  # e-mail (or the user id of a deleted account)
    decided_by: str | None
    refusal: str | None  # why the actor may not decide it (None: they may); pending only


@dataclass(frozen=True, slots=True)
class InboxPage:
    cards: list[InboxCard]
    next_cursor: Cursor | None  # None: this is the last page


def inbox_page(
    studio: Studio,
    actor: Actor,
    *,
    history: bool = False,
    before: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> InboxPage:
    """One page of pending approvals (newest first) or of past decisions (latest first)."""
    approvals = studio.manager.approvals
    items = approvals.inbox(actor, history=history, before=before, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    emails = _Emails(studio)
    refusals: dict[tuple[str, str], str | None] = {}
    cards = [_card(studio, actor, item, emails, refusals, history) for item in items]
    last = items[-1].approval if items else None
    cursor = None
    if more and last is not None:
        stamp = last.decided_at if history else last.created_at
        cursor = (stamp, last.approval_id) if stamp is not None else None
    return InboxPage(cards, cursor)


def inbox_stamp(studio: Studio, actor: Actor) -> InboxStamp:
    """Cheap to poll: changes when an approval arrives or is decided (the badge count too)."""
    return studio.manager.approvals.inbox_stamp(actor)


def edit_schema(studio: Studio, actor: Actor, approval_id: str) -> dict[str, Any] | None:
    """The JSON schema of the arguments of the tool an approval gates (None: not a tool of
    the run's graph version, e.g. a human step; edit as JSON then)."""
    view = studio.manager.approvals.get(actor, approval_id)
    run = studio.manager.get(actor, view.run_id)
    tool = studio.manager.executor.compiled(run.version_id).tools.get(view.action)
    if tool is None:
        return None
    schema: dict[str, Any] = tool.args_model.model_json_schema()
    return schema


def decide(
    studio: Studio,
    actor: Actor,
    approval_id: str,
    decision: Decision,
    *,
    args: Mapping[str, Any] | None = None,
    feedback: str | None = None,
) -> ApprovalView:
    """Record a decision (once: a second one raises `Conflict`) and resume the run. The
    service checks who may decide and re-validates edited arguments."""
    if feedback is not None:
        feedback = feedback.strip()[:4000] or None
    return studio.manager.decide(actor, approval_id, decision, args=args, feedback=feedback)


def decided_by(studio: Studio, actor: Actor, approval_id: str) -> tuple[str, str | None]:
    """(status, who decided — an e-mail) of an approval, e.g. after a conflict."""
    view = studio.manager.approvals.get(actor, approval_id)
    who = _Emails(studio).of(view.decided_by) if view.decided_by else None
    return view.status, who


class _Emails:
    """User id → e-mail, looked up once per page."""

    def __init__(self, studio: Studio) -> None:
        self._studio = studio
        self._known: dict[str, str] = {}

    def of(self, user_id: str) -> str:
        if user_id not in self._known:
            try:
                self._known[user_id] = self._studio.accounts.get_user(user_id).email
            except NotFound:
                self._known[user_id] = user_id
        return self._known[user_id]


def _card(
    studio: Studio,
    actor: Actor,
    item: InboxItem,
    emails: _Emails,
    refusals: dict[tuple[str, str], str | None],
    history: bool,
) -> InboxCard:
    view = _redacted(studio, item.approval)
    refusal = None
    if not history and view.status == "pending":
        # who may decide depends on the tier it needs now (escalated: admin) and on who
        # started the run: ask once per pair
        key = (view.required_tier, view.run_started_by)
        if key not in refusals:
            refusals[key] = studio.manager.approvals.refusal(actor, item.approval)
        refusal = refusals[key]
    return InboxCard(
        approval=view,
        graph_id=item.graph_id,
        graph_name=item.graph_name,
        started_by=emails.of(view.run_started_by),
        decided_by=emails.of(view.decided_by) if view.decided_by else None,
        refusal=refusal,
    )


def _redacted(studio: Studio, view: ApprovalView) -> ApprovalView:
    redact = studio.redactor.redact_value
    return replace(
        view,
        args=redact(view.args),
        decided_args=redact(view.decided_args) if view.decided_args is not None else None,
        feedback=redact(view.feedback) if view.feedback else view.feedback,
        description=redact(view.description),
        reason=redact(view.reason),
    )
