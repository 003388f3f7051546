"""The approval inbox page with NiceGUI's `user` fixture: real support-agent runs paused at
their gates (started by a second studio on the same database), decided through the page."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import User
from sqlalchemy import func, select

from auth.audit import AuditEntry
from components.base import HttpPolicy
from components.errors import NotFound
from graphs.approval_timeouts import SweepReport
from graphs.approvals import ApprovalView
from studio import approval_inbox
from studio.context import Studio, open_studio
from studio.pages.approval_card import ApprovalCard, deadline_text
from studio.settings import Settings
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver
from tests.studio.test_pages import notified, sign_in
from tests.studio.web_fixtures import (  # noqa: F401
    Seeded,
    add_pending_approvals,
    seeded,
    seeded_template,
)

pytestmark = pytest.mark.nicegui_main_file("tests/studio/web_main.py")


async def says(user: User, fragment: str) -> None:
    """Wait for a notification with `fragment`, then forget every notification so far (the
    next wait sees only what comes after)."""
    await notified(user, fragment)
    user.notify.messages.clear()


@dataclass
class Runs:
    """A second studio on the seeded database that starts runs and checks outcomes."""

    studio: Studio
    seeded: Seeded
    receiver: HttpReceiver
    versions: dict[str, str]

    def version(self, starter: str, doc: dict[str, Any] | None = None) -> str:
        key = f"{starter}:{id(doc)}"
        if key not in self.versions:
            document = doc or support_doc(self.receiver)
            created = self.studio.manager.library.create(self.seeded.actor(starter), document)
            self.versions[key] = created.version_id
        return self.versions[key]

    def paused(
        self, order_id: str, *, starter: str = "ed", doc: dict[str, Any] | None = None
    ) -> ApprovalView:
        """Start a support run and return its first pending approval (the e-mail)."""
        actor = self.seeded.actor(starter)
        manager = self.studio.manager
        run_id = manager.start_run(
            actor, version_id=self.version(starter, doc), input={"order_id": order_id}
        )
        run = manager.wait(actor, run_id, timeout_s=60)
        assert run.status == "waiting_approval", run.error
        [approval] = manager.approvals.list(actor, run_id=run_id)
        return approval

    def refund(self, order_id: str) -> ApprovalView:
        """A run past its e-mail (confirmed by its starter), waiting for the admin refund."""
        email = self.paused(order_id)
        actor = self.seeded.actor("ed")
        self.studio.manager.decide(actor, email.approval_id, "approve")
        self.studio.manager.wait(actor, email.run_id, timeout_s=60)
        [refund] = self.studio.manager.approvals.list(actor, run_id=email.run_id)
        assert refund.action == "issue_refund"
        return refund

    def get(self, approval: ApprovalView, as_user: str = "ad") -> ApprovalView:
        return self.studio.manager.approvals.get(self.seeded.actor(as_user), approval.approval_id)

    def decisions(self, approval_id: str) -> int:
        with self.studio.sessions() as session:
            query = select(func.count()).where(
                AuditEntry.action == "approval.decided", AuditEntry.target == approval_id
            )
            return int(session.scalar(query) or 0)


@pytest.fixture
def runs(
    seeded: Seeded,  # noqa: F811 (the fixture imported above)
    receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Runs]:
    monkeypatch.setenv("STUDIO_HTTP_ALLOW", receiver.host_port)  # the web app's refunds
    # the page modules are imported afresh for each test's app: patch the one it will use
    monkeypatch.setattr("studio.pages.inbox.POLL_S", 0.2)
    monkeypatch.setattr("studio.pages.inbox.BADGE_POLL_S", 0.2)
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
    settings = Settings(data_dir=seeded.data_dir)
    with open_studio(settings, resume=False, http=policy) as studio:
        yield Runs(studio, seeded, receiver, {})


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def open_inbox(user: User) -> None:
    await user.open("/approvals")
    await user.should_see(marker="inbox-loaded", retries=100)


async def card(user: User, approval: ApprovalView) -> ApprovalCard:
    marker = f"approval-{approval.approval_id}"
    await user.should_see(marker=marker)
    [found] = user.find(marker=marker).elements
    assert isinstance(found, ApprovalCard)
    return found


def page_texts(user: User) -> list[str]:
    texts = []
    for element in user.current_layout.descendants():
        texts.append(str(getattr(element, "text", "") or ""))
        texts.append(str(element.props))
    return texts


async def test_an_approver_sees_the_server_computed_call_and_approves_it(
    runs: Runs, user: User
) -> None:
    email = runs.paused("A-1001")
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see("email_customer")
    await user.should_see("Support agent")  # the graph
    await user.should_see("ed@example.com")  # who started the run
    await user.should_see("graph policy sets 'email_customer' to 'confirm'")  # why
    await user.should_see("customer-A-1001@example.com")  # the exact arguments
    await user.should_see("Run had read untrusted content: no")
    user.find(marker=f"approval-{email.approval_id}").trigger("approve")
    await says(user, "Approved")
    decided = runs.get(email)
    assert (decided.status, decided.decided_by) == ("approved", runs.seeded.users["ap"])
    # the run goes on to its refund, which arrives in the open inbox without a reload
    await user.should_see("issue_refund", retries=200)
    await user.should_not_see(marker=f"approval-{email.approval_id}")


async def test_a_viewer_sees_the_inbox_read_only_and_a_forged_click_is_refused(
    runs: Runs, user: User
) -> None:
    email = runs.paused("A-1002")
    sign_in(user, runs.seeded, "vi")
    await open_inbox(user)
    await user.should_see("email_customer")
    assert not (await card(user, email)).decidable  # the buttons are shown disabled
    await user.should_see("does not allow 'approval:decide:confirm'")
    # a hand-made websocket event for the disabled button reaches the handler anyway
    user.find(marker=f"approval-{email.approval_id}").trigger("approve")
    await says(user, "you may not decide")
    assert runs.get(email).status == "pending"
    assert runs.decisions(email.approval_id) == 0


async def test_a_role_revoked_while_the_inbox_is_open_takes_effect_at_once(
    runs: Runs, user: User
) -> None:
    email = runs.paused("A-1003")
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    assert (await card(user, email)).decidable
    rbac, ap = runs.studio.rbac, runs.seeded.users["ap"]
    rbac.assign_role("acme", ap, "viewer")
    rbac.revoke_role("acme", ap, "approver")
    user.find(marker=f"approval-{email.approval_id}").trigger("approve")
    await says(user, "you may not decide")
    assert runs.get(email).status == "pending"


async def test_a_double_click_makes_one_decision_and_one_refund(runs: Runs, user: User) -> None:
    refund = runs.refund("A-1004")
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see("issue_refund")
    clicks = user.find(marker=f"approval-{refund.approval_id}")
    clicks.trigger("approve").trigger("approve")  # both reach the server before either ends
    clicks.trigger("approve")
    await notified(user, "Approved")
    run = runs.studio.manager.wait(runs.seeded.actor("ed"), refund.run_id, timeout_s=60)
    assert run.status == "succeeded", run.error
    assert runs.decisions(refund.approval_id) == 1
    assert len(runs.receiver.effects) == 1
    messages = [str(m) for m in user.notify.messages]
    assert sum("Approved" in m for m in messages) == 1, messages
    assert not any("Already" in m or "may not" in m for m in messages), messages


async def test_a_decision_made_elsewhere_first_shows_who_made_it(runs: Runs, user: User) -> None:
    email = runs.paused("A-1005")
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see("email_customer")
    runs.studio.manager.decide(runs.seeded.actor("ad"), email.approval_id, "reject")
    user.find(marker=f"approval-{email.approval_id}").trigger("approve")
    await says(user, "Already rejected by ad@example.com")
    assert runs.get(email).decided_by == runs.seeded.users["ad"]
    assert runs.decisions(email.approval_id) == 1


async def test_edited_arguments_are_checked_again_by_the_service(runs: Runs, user: User) -> None:
    refund = runs.refund("A-1006")
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see("issue_refund")

    async def edit(amount: float | None) -> None:
        user.find(marker=f"approval-{refund.approval_id}").trigger("edit")
        await user.should_see("Edit the arguments of issue_refund", retries=100)
        [field] = [
            e
            for e in user.find(ui.number).elements
            if str(e.props.get("label")).lower() == "amount"
        ]
        field.set_value(amount)
        user.find(marker="edit-submit").click()

    await edit(None)  # a required argument removed
    await says(user, "edited arguments for 'issue_refund'")
    assert runs.get(refund).status == "pending"
    await edit(20)
    await says(user, "Approved with your edits")
    decided = runs.get(refund)
    assert (decided.status, decided.decided_args) == (
        "edited",
        {"order_id": "A-1006", "amount": 20.0},
    )
    run = runs.studio.manager.wait(runs.seeded.actor("ed"), refund.run_id, timeout_s=60)
    assert run.status == "succeeded", run.error
    [effect] = runs.receiver.effects
    assert effect.json == {"order_id": "A-1006", "amount": 20.0}


async def test_reject_with_feedback_then_history_shows_who_decided(runs: Runs, user: User) -> None:
    email = runs.paused("A-1007")
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see(marker=f"approval-{email.approval_id}")
    user.find(marker=f"approval-{email.approval_id}").trigger("reject")
    await user.should_see("Reject email_customer")
    user.find(marker="reject-feedback").type("Wrong customer: do not write")
    user.find(marker="reject-submit").click()
    await says(user, "Rejected")
    decided = runs.get(email)
    assert (decided.status, decided.feedback) == ("rejected", "Wrong customer: do not write")
    user.find(marker="tab-history").click()
    await user.should_see(marker=f"approval-{email.approval_id}")
    await user.should_see("Rejected by ap@example.com")
    await user.should_see("Feedback: Wrong customer: do not write")


async def test_the_header_badge_counts_pending_approvals(runs: Runs, user: User) -> None:
    runs.paused("A-1008")
    runs.paused("A-1009")
    sign_in(user, runs.seeded, "vi")
    await user.open("/graphs")
    await user.should_see(marker="approval-badge")
    [badge] = user.find(marker="approval-badge").elements
    await eventually(lambda: badge.text == "2", "the badge to say 2")
    runs.paused("A-1010")
    await eventually(lambda: badge.text == "3", "the badge to follow a new approval")


async def test_markup_in_arguments_names_and_descriptions_is_shown_as_text(
    runs: Runs, user: User
) -> None:
    doc = copy.deepcopy(support_doc(runs.receiver))
    doc["name"] = "<b>Bold</b> graph <script>alert('name')</script>"
    turn = doc["nodes"][0]["config"]["provider_config"]["script"][1]["tool_calls"][0]
    turn["args"]["subject"] = "<img src=x onerror=alert(1)> **not bold** [link](http://evil.test)"
    email_tool = next(t for t in doc["tools"] if t["name"] == "email_customer")
    email_tool["description"] = "<script>alert('description')</script>"
    email = runs.paused("A-1011", doc=doc)
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see("<b>Bold</b> graph <script>alert('name')</script>")
    await user.should_see("<script>alert('description')</script>")
    await user.should_see("<img src=x onerror=alert(1)> **not bold** [link](http://evil.test)")
    kinds = {type(e) for e in user.current_layout.descendants()}
    assert not kinds & {ui.html, ui.markdown, ui.code, ui.mermaid}
    assert runs.get(email).status == "pending"


async def test_foreign_workspace_approvals_are_never_shown_or_decided(
    runs: Runs, user: User
) -> None:
    foreign_doc = {**support_doc(runs.receiver), "name": "Evil support"}
    foreign = runs.paused("E-666", starter="mallory", doc=foreign_doc)
    mine = runs.paused("A-1012")
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see(marker=f"approval-{mine.approval_id}")
    await user.should_not_see("Evil support")
    await user.should_not_see("E-666")
    await user.should_see("1 pending")
    ap = runs.seeded.actor("ap")
    with pytest.raises(NotFound):
        approval_inbox.decide(runs.studio, ap, foreign.approval_id, "approve")
    with pytest.raises(NotFound):
        approval_inbox.edit_schema(runs.studio, ap, foreign.approval_id)
    assert runs.get(foreign, as_user="mallory").status == "pending"


async def test_the_inbox_pages_through_many_approvals_newest_first(runs: Runs, user: User) -> None:
    email = runs.paused("A-1013")
    fakes = add_pending_approvals(
        runs.studio.engine,
        workspace_id="acme",
        run_ids=[email.run_id],
        count=30,
        start=datetime.now(UTC) + timedelta(seconds=1),  # all newer than the real one
    )
    sign_in(user, runs.seeded, "vi")
    await open_inbox(user)
    await user.should_see("31 pending")
    await user.should_see(marker=f"approval-{fakes[-1]}")  # the newest fake
    await user.should_not_see(marker=f"approval-{email.approval_id}")  # the oldest
    user.find(marker="older").click()
    await user.should_see(marker=f"approval-{email.approval_id}")
    await user.should_not_see(marker=f"approval-{fakes[-1]}")
    user.find(marker="newer").click()
    await user.should_see(marker=f"approval-{fakes[-1]}")
    texts = "\n".join(page_texts(user))
    assert "A-00029" in texts and "A-00004" not in texts  # 25 per page, newest first


# --- approval timeouts on the card -------------------------------------------------------


def timed(runs: Runs, **timeout: Any) -> dict[str, Any]:
    """The support agent whose approvals time out as `timeout` says."""
    doc = copy.deepcopy(support_doc(runs.receiver))
    doc["policies"] = {"approval_timeouts": {"agent": timeout}}
    return doc


def time_out(runs: Runs, approval: ApprovalView) -> SweepReport:
    """Sweep the deadlines as if it were `approval`'s deadline now (no one waits for it)."""
    assert approval.expires_at is not None
    sweeper = runs.studio.manager.timeouts
    sweeper.clock = lambda: approval.expires_at or datetime.now(UTC)
    return sweeper.sweep()


def test_the_deadline_reads_as_what_will_happen_and_when(runs: Runs) -> None:
    email = runs.paused("T-1000", doc=timed(runs, after=600, action="reject"))
    assert email.expires_at is not None
    at = email.expires_at
    stamp = f"{at:%Y-%m-%d %H:%M:%S} UTC"
    assert deadline_text(email, at - timedelta(minutes=4, seconds=10)) == (
        f"Rejects automatically in 4 min (at {stamp})"
    )
    assert deadline_text(email, at + timedelta(seconds=3)) == (
        f"Rejects automatically any moment now (at {stamp})"
    )
    for action, words in [("escalate", "Escalates to admins"), ("leave", "Becomes overdue")]:
        other = replace(email, timeout_action=action)
        assert deadline_text(other, at - timedelta(hours=2)) == f"{words} in 2 h (at {stamp})"
    assert deadline_text(replace(email, expires_at=None)) is None
    assert deadline_text(replace(email, status="approved")) is None


async def test_a_card_shows_its_deadline_and_a_timed_out_rejection_in_the_history(
    runs: Runs, user: User
) -> None:
    email = runs.paused("T-1001", doc=timed(runs, after=600, action="reject"))
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see("Rejects automatically in 10 min")
    [shown] = user.find(marker=f"approval-{email.approval_id}").elements
    assert shown.props["card"]["deadline_state"] == "timed"
    assert time_out(runs, email).rejected == [email.approval_id]
    await user.should_not_see(marker=f"approval-{email.approval_id}", retries=200)
    user.find(marker="tab-history").click()
    await user.should_see(marker=f"approval-{email.approval_id}")
    await user.should_see("Rejected automatically (nobody decided in time)")
    await user.should_see("Feedback: timed out after 10 min without a decision")
    assert runs.decisions(email.approval_id) == 1  # audited as a decision, by the timeout


async def test_an_escalated_card_is_read_only_for_the_runs_owner(runs: Runs, user: User) -> None:
    email = runs.paused("T-1002", doc=timed(runs, after=900, action="escalate"))
    sign_in(user, runs.seeded, "ed")  # the editor who started the run
    await open_inbox(user)
    await user.should_see("Escalates to admins in 15 min")
    assert (await card(user, email)).decidable  # confirm tier: the starter may decide
    assert time_out(runs, email).escalated == [email.approval_id]
    await user.should_see("Escalated to admins since", retries=200)  # the inbox reloaded
    shown = await card(user, email)
    assert not shown.decidable and shown.props["card"]["deadline_state"] == "escalated"
    await user.should_see("someone other than the run's starter")
    user.find(marker=f"approval-{email.approval_id}").trigger("approve")  # a forged click
    await says(user, "you may not decide")
    assert runs.get(email).status == "pending"
    runs.studio.manager.decide(runs.seeded.actor("ap"), email.approval_id, "approve")
    assert runs.get(email).decided_by == runs.seeded.users["ap"]


async def test_an_overdue_card_says_so_and_can_still_be_decided(runs: Runs, user: User) -> None:
    email = runs.paused("T-1003", doc=timed(runs, after=300, action="leave"))
    assert time_out(runs, email).overdue == [email.approval_id]
    sign_in(user, runs.seeded, "ap")
    await open_inbox(user)
    await user.should_see("Overdue since")
    shown = await card(user, email)
    assert shown.decidable and shown.props["card"]["deadline_state"] == "overdue"
    user.find(marker=f"approval-{email.approval_id}").trigger("approve")
    await says(user, "Approved")
    assert runs.get(email).status == "approved"
