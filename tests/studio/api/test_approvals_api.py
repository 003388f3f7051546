"""`/approvals`: the inbox (newest first, by pages), one approval, and deciding it once.

A second decision — a repeat, a race, a cancelled run — is a 409 that carries the approval as
it stands and changes nothing; a viewer or a read-only token gets a 403 and changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from auth.actions import role_actions
from tests.studio.api.conftest import WAIT_S, ApiWorld, bearer
from tests.studio.api.test_auth_and_errors import assert_problem
from tests.tenancy_fixtures import WS_A, run_to_email, snapshot


def email_approval(api_world: ApiWorld, order: str) -> tuple[str, str]:
    """A fresh run of A's runner waiting on its e-mail (confirm) approval."""
    run_id, email = run_to_email(
        api_world.world, api_world.actor(WS_A, "runner"), api_world.world.ids_a.version_id, order
    )
    return run_id, email.approval_id


def decide(client: TestClient, headers: dict[str, str], approval_id: str, **body: Any) -> Any:
    body.setdefault("decision", "approve")
    return client.post(f"/approvals/{approval_id}/decision", headers=headers, json=body)


def test_the_inbox_is_newest_first_and_pages_without_gaps(
    client: TestClient, api_world: ApiWorld
) -> None:
    fresh = [email_approval(api_world, f"P-{i}")[1] for i in range(4)]
    headers = api_world.auth(WS_A, "viewer")
    seen: list[dict[str, Any]] = []
    url: str | None = "/approvals?limit=2"
    while url:
        page = client.get(url.removeprefix("/api"), headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        url = body["next"]
    ids = [a["approval_id"] for a in seen]
    assert len(ids) == len(set(ids))
    assert {a["status"] for a in seen} == {"pending"}
    assert ids[:4] == fresh[::-1]  # newest first
    untimed = {(a["expires_at"], a["timeout_action"], a["escalated"], a["overdue"]) for a in seen}
    assert untimed == {(None, None, False, False)}  # the support agent has no timeouts
    assert {(a["tier"], a["required_tier"]) for a in seen} <= {("confirm", "confirm"),
                                                               ("admin", "admin")}  # fmt: skip
    assert api_world.world.ids_a.refund_approval_id in ids
    stamps = [a["created_at"] for a in seen]
    assert stamps == sorted(stamps, reverse=True)
    everything = client.get("/approvals", headers=headers, params={"status": "all", "limit": 200})
    all_ids = {a["approval_id"] for a in everything.json()["items"]}
    assert set(ids) < all_ids and api_world.world.ids_a.email_approval_id in all_ids


def test_a_bad_cursor_is_a_422(client: TestClient, api_world: ApiWorld) -> None:
    headers = api_world.auth(WS_A, "viewer")
    for cursor in ("garbage!", "e30", "1.", ".apr_1", "1.a.b", "9" * 19 + ".a"):
        assert_problem(client.get("/approvals", headers=headers, params={"cursor": cursor}), 422)
    assert_problem(client.get("/approvals", headers=headers, params={"status": "maybe"}), 422)


def test_the_runs_starter_confirms_once_and_a_repeat_is_a_409_that_changes_nothing(
    client: TestClient, api_world: ApiWorld
) -> None:
    run_id, approval_id = email_approval(api_world, "D-1")
    runner = api_world.actor(WS_A, "runner")
    # a token decides only with the approval:decide:<tier> scope, even the starter's (see
    # StudioAuthority); the scope is then checked against the owner's role as usual
    assert_problem(decide(client, api_world.auth(WS_A, "runner"), approval_id), 403)
    scoped = api_world.new_token(runner, [*role_actions("runner"), "approval:decide:confirm"])
    headers = bearer(scoped)
    first = decide(client, headers, approval_id, message="looks right")
    assert first.status_code == 200, first.text
    decided = first.json()
    assert decided["status"] == "approved" and decided["decision"] == "approve"
    assert decided["decided_by"] == runner.user_id and decided["feedback"] == "looks right"
    api_world.studio.manager.wait(runner, run_id, timeout_s=WAIT_S)
    before = snapshot(api_world.studio, WS_A)
    for body in ({"decision": "approve"}, {"decision": "reject", "message": "no"}):
        again = decide(client, api_world.auth(WS_A, "approver"), approval_id, **body)
        problem = assert_problem(again, 409)
        assert "already approved" in problem["detail"]
        assert problem["approval"]["decision"] == "approve"
        assert problem["approval"]["decided_at"] == decided["decided_at"]
    assert snapshot(api_world.studio, WS_A) == before
    got = client.get(f"/approvals/{approval_id}", headers=api_world.auth(WS_A, "viewer"))
    assert got.json()["decided_by"] == decided["decided_by"]


@pytest.mark.parametrize("who", ["viewer", "read-only admin token", "runner on admin tier"])
def test_who_may_not_decide_gets_403_and_nothing_changes(
    client: TestClient, api_world: ApiWorld, who: str
) -> None:
    a = api_world.world.ids_a
    approval_id = a.refund_approval_id  # admin tier, started by A's runner
    if who == "viewer":
        headers = api_world.auth(WS_A, "viewer")
    elif who == "read-only admin token":
        token = api_world.new_token(
            api_world.actor(WS_A, "admin"), ["approval:read", "run:read", "graph:read"]
        )
        headers = bearer(token)
    else:
        headers = api_world.auth(WS_A, "runner")
    before = snapshot(api_world.studio, WS_A)
    sent = len(api_world.world.receiver.effects)
    for decision in ("approve", "reject"):
        assert_problem(decide(client, headers, approval_id, decision=decision), 403)
    assert snapshot(api_world.studio, WS_A) == before
    assert len(api_world.world.receiver.effects) == sent
    assert client.get(f"/approvals/{approval_id}", headers=headers).json()["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"decision": "respond", "args": {"response": "yes"}}, "not offered"),
        ({"decision": "maybe"}, "decision"),
        ({"decision": "approve", "tier": "free"}, "Extra inputs"),
        ({"decision": "approve", "decided_by": "someone"}, "Extra inputs"),
        ({"decision": "approve", "workspace_id": "ws-b"}, "Extra inputs"),
        ({"decision": "edit"}, "changed arguments"),
        ({"decision": "edit", "args": {"to": 5}}, "edited arguments"),
    ],
)
def test_a_bad_decision_is_a_422_and_nothing_changes(
    client: TestClient, api_world: ApiWorld, body: dict[str, Any], words: str
) -> None:
    _, approval_id = email_approval(api_world, "E-1")
    before = snapshot(api_world.studio, WS_A)["approvals"]
    problem = assert_problem(
        decide(client, api_world.auth(WS_A, "approver"), approval_id, **body), 422
    )
    assert words in problem["detail"]
    assert snapshot(api_world.studio, WS_A)["approvals"] == before


def test_edit_and_reject_go_through(client: TestClient, api_world: ApiWorld) -> None:
    run_id, approval_id = email_approval(api_world, "E-2")
    edited = decide(
        client,
        api_world.auth(WS_A, "approver"),
        approval_id,
        decision="edit",
        args={"to": "customer-E-2@example.com", "subject": "Sorry", "body": "Refund on its way."},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["decided_args"]["subject"] == "Sorry"
    runner = api_world.actor(WS_A, "runner")
    assert api_world.studio.manager.wait(runner, run_id, timeout_s=WAIT_S).status == (
        "waiting_approval"
    )
    [refund] = api_world.studio.manager.approvals.list(runner, run_id=run_id)
    sent = len(api_world.world.receiver.effects)
    rejected = decide(
        client,
        api_world.auth(WS_A, "approver"),
        refund.approval_id,
        decision="reject",
        message="no refunds today",
    )
    assert rejected.status_code == 200 and rejected.json()["feedback"] == "no refunds today"
    assert api_world.studio.manager.wait(runner, run_id, timeout_s=WAIT_S).status == "succeeded"
    assert len(api_world.world.receiver.effects) == sent  # rejected: no refund went out


def test_a_cancelled_runs_approval_cannot_be_decided(
    client: TestClient, api_world: ApiWorld
) -> None:
    run_id, approval_id = email_approval(api_world, "X-1")
    assert (
        client.post(f"/runs/{run_id}/cancel", headers=api_world.auth(WS_A, "runner")).status_code
        == 200
    )
    problem = assert_problem(decide(client, api_world.auth(WS_A, "approver"), approval_id), 409)
    assert problem["approval"]["status"] == "cancelled"
