"""The studio context end to end: RBAC, tokens, vault secrets and audit around real runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.base import HttpPolicy
from components.errors import Forbidden, NotFound
from graphs.identity import Actor
from studio.context import Studio, open_studio
from studio.settings import Settings
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver

ACME = "acme"


@pytest.fixture
def studio(tmp_path: Path, receiver: HttpReceiver, monkeypatch: Any) -> Iterator[Studio]:
    monkeypatch.delenv("STUDIO_SECRET_KEY", raising=False)
    settings = Settings(data_dir=tmp_path)
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
    with open_studio(settings, http=policy, lease_ttl_s=5) as s:
        for user, role in (
            ("alice", "runner"),
            ("bob", "approver"),
            ("vic", "viewer"),
            ("ed", "editor"),
            ("ada", "admin"),
        ):
            USERS[user] = s.accounts.create_user(f"{user}@example.com", None, user).user_id
            s.rbac.assign_role(ACME, USERS[user], role)
        s.accounts.create_workspace("Acme", owner_user_id=USERS["ada"], workspace_id=ACME)
        yield s


USERS: dict[str, str] = {}


def who(name: str) -> Actor:
    return Actor(ACME, USERS[name])


def test_roles_gate_every_step_of_the_support_agent(studio: Studio, receiver: HttpReceiver) -> None:
    m = studio.manager
    alice, bob, vic, ed = (who(u) for u in ("alice", "bob", "vic", "ed"))
    with pytest.raises(Forbidden):
        m.library.create(alice, support_doc(receiver))  # runners do not edit graphs
    version = m.library.create(ed, support_doc(receiver))
    with pytest.raises(Forbidden):
        m.start_run(vic, version_id=version.version_id, input={"order_id": "A-1"})
    run_id = m.start_run(alice, version_id=version.version_id, input={"order_id": "A-1"})
    m.wait(alice, run_id, timeout_s=30)
    [email] = m.approvals.list(vic, run_id=run_id)  # viewers see the inbox...
    with pytest.raises(Forbidden):
        m.decide(vic, email.approval_id, "approve")  # ...but do not decide
    m.decide(alice, email.approval_id, "approve")  # the starter confirms their own call
    m.wait(alice, run_id, timeout_s=30)
    [refund] = m.approvals.list(alice, run_id=run_id)
    with pytest.raises(Forbidden):
        m.decide(alice, refund.approval_id, "approve")
    studio.rbac.revoke_role(ACME, USERS["bob"])
    with pytest.raises(NotFound):
        m.decide(bob, refund.approval_id, "approve")  # revoked a moment ago: no longer
    studio.rbac.assign_role(ACME, USERS["bob"], "approver")
    m.decide(bob, refund.approval_id, "approve")
    assert m.wait(alice, run_id, timeout_s=30).status == "succeeded"
    assert len(receiver.effects) == 1
    actions = [e.action for e in studio.audit.entries(ACME)]
    assert actions.count("approval.decided") == 2 and "graph.created" in actions
    assert studio.audit.verify().ok


def test_a_read_only_token_cannot_decide_or_start(studio: Studio, receiver: HttpReceiver) -> None:
    m = studio.manager
    version = m.library.create(who("ed"), support_doc(receiver))
    run_id = m.start_run(who("ed"), version_id=version.version_id, input={"order_id": "A-2"})
    m.wait(who("ed"), run_id, timeout_s=30)
    value, _ = studio.tokens.create_token(
        who("ada"), name="ro", actions=["run:read", "approval:read"]
    )
    reader = studio.token_actor(value)
    assert reader.workspace_id == ACME and m.get(reader, run_id).status == "waiting_approval"
    [email] = m.approvals.list(reader, run_id=run_id)
    with pytest.raises(Forbidden, match="token"):
        m.decide(reader, email.approval_id, "approve")  # ada is an admin, the token is not
    with pytest.raises(Forbidden, match="token"):
        m.start_run(reader, version_id=version.version_id, input={"order_id": "A-3"})
    assert m.approvals.get(reader, email.approval_id).status == "pending"


def test_vault_secret_reaches_the_tool_and_nowhere_else(
    studio: Studio, receiver: HttpReceiver, tmp_path: Path
) -> None:
    canary = "sk-canary-" + "7f3a9c1e5b2d4068"
    studio.vault.set_secret(who("ada"), "PAY_KEY", canary)
    doc = support_doc(receiver)
    doc["secrets"] = ["PAY_KEY"]
    refund = next(t for t in doc["tools"] if t["name"] == "issue_refund")
    refund["config"]["secret_headers"] = {"X-Api-Key": "PAY_KEY"}
    receiver.route("/refunds", status=201, body={"echo": canary})  # a receiver that echoes it
    m = studio.manager
    ed, bob = who("ed"), who("bob")
    run_id = m.start_run(
        ed, version_id=m.library.create(ed, doc).version_id, input={"order_id": "A-4"}
    )
    for _ in range(2):
        m.wait(ed, run_id, timeout_s=30)
        for approval in m.approvals.list(ed, run_id=run_id):
            m.decide(bob, approval.approval_id, "approve")
    assert m.wait(ed, run_id, timeout_s=30).status == "succeeded"
    assert receiver.requests[-1].headers["x-api-key"] == canary
    m.events.flush()
    assert canary not in repr(m.events.history(ACME, run_id))
    for file in tmp_path.iterdir():
        if file.is_file():
            assert canary.encode() not in file.read_bytes(), file.name
    with pytest.raises(NotFound):
        studio.vault.resolver("evil-corp")("PAY_KEY")


def test_a_paused_run_whose_starter_lost_access_fails_closed_at_the_effect(
    studio: Studio, receiver: HttpReceiver
) -> None:
    m = studio.manager
    version = m.library.create(who("ed"), support_doc(receiver))
    run_id = m.start_run(who("alice"), version_id=version.version_id, input={"order_id": "A-5"})
    m.wait(who("alice"), run_id, timeout_s=30)
    [email] = m.approvals.list(who("bob"), run_id=run_id)
    studio.rbac.revoke_role(ACME, USERS["alice"])  # alice leaves while her run waits
    m.decide(who("bob"), email.approval_id, "approve")  # an approver still says yes
    run = m.wait(who("bob"), run_id, timeout_s=30)
    assert run.status == "failed"
    assert "may no longer act" in (run.error or "")
    from graphs.tables import OutboxMessage

    with studio.sessions() as session:
        assert session.query(OutboxMessage).count() == 0  # the e-mail never went out


def test_login_starts_a_new_session_and_is_audited_either_way(studio: Studio) -> None:
    from auth.accounts import Accounts  # a fast-hash account for this test only

    Accounts(studio.sessions).create_user("pat@example.com", "correct horse battery", "Pat")
    pat = studio.accounts.get_user_by_email("pat@example.com").user_id
    studio.rbac.assign_role(ACME, pat, "viewer")
    with pytest.raises(Forbidden):
        studio.login(
            "pat@example.com", "wrong password!!", workspace_id=ACME, client_ip="192.0.2.1"
        )
    with pytest.raises(Forbidden):  # right password, but not a member of that workspace
        studio.login(
            "pat@example.com",
            "correct horse battery",
            workspace_id="elsewhere",
            client_ip="192.0.2.1",
        )
    first, actor = studio.login(
        "pat@example.com", "correct horse battery", workspace_id=ACME, client_ip="192.0.2.1"
    )
    second, _ = studio.login(
        "pat@example.com",
        "correct horse battery",
        workspace_id=ACME,
        client_ip="192.0.2.1",
        replaces=first,
    )
    assert first != second and actor == Actor(ACME, pat)
    with pytest.raises(NotFound):
        studio.session_actor(first)  # the old session ended at the new login
    assert studio.session_actor(second) == actor
    studio.logout(second)
    with pytest.raises(NotFound):
        studio.session_actor(second)
    system = [e.action for e in studio.audit.system_entries()]
    assert system.count("login_failed") == 2
    assert [e.action for e in studio.audit.entries(ACME) if e.target == pat] == [
        "login",
        "login",
        "logout",
    ]


def test_approval_timeout_warnings_go_to_who_may_decide(studio: Studio) -> None:
    directory = studio.manager.timeouts.approvers
    confirm = directory.emails(ACME, "confirm", USERS["alice"])
    assert set(confirm) == {"bob@example.com", "ada@example.com"}  # not runners, viewers
    assert directory.emails(ACME, "admin", USERS["ada"]) == ["bob@example.com"]  # not ada
    studio.disable_user(USERS["bob"], by=USERS["ada"])
    assert directory.emails(ACME, "admin", USERS["alice"]) == ["ada@example.com"]
    assert directory.emails("elsewhere", "confirm", USERS["alice"]) == []
