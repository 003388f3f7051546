"""The admin pages with NiceGUI's `user` fixture: members and roles, API tokens, secrets,
workspace policy and the audit log — each checked on the server, each scoped to the
signed-in member's workspace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nicegui import ui
from nicegui.testing import User
from sqlalchemy import select

from auth.actions import role_actions
from auth.audit import AuditEntry
from components.errors import NotFound, UserError
from studio import workspace_admin as admin
from studio.context import Studio, open_studio
from studio.settings import Settings
from tests.conftest import example
from tests.studio.test_pages import notified, sign_in
from tests.studio.web_fixtures import ROLES, Seeded, seeded, seeded_template  # noqa: F401

pytestmark = pytest.mark.nicegui_main_file("tests/studio/web_main.py")


async def says(user: User, fragment: str) -> None:
    """Wait for a notification with `fragment`, then forget every notification so far (the
    next wait sees only what comes after)."""
    await notified(user, fragment)
    user.notify.messages.clear()


PAGES = {
    "/admin/members": "member:manage",
    "/admin/tokens": "token:manage",
    "/admin/secrets": "secret:manage",
    "/admin/policy": "policy:manage",
    "/admin/audit": "audit:read",
}


@pytest.fixture
def studio(seeded: Seeded) -> Iterator[Studio]:  # noqa: F811 (the fixture imported above)
    """A second handle on the seeded database, to arrange and to check."""
    with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as opened:
        yield opened


def texts(user: User) -> str:
    """Everything the page holds for the browser: element texts and properties."""
    parts = []
    for element in user.current_layout.descendants():
        parts.append(str(getattr(element, "text", "") or ""))
        parts.append(str(element.props))
        parts.append(str(getattr(element, "value", "") or ""))
    return "\n".join(parts)


def audited(studio: Studio, action: str, workspace_id: str = "acme") -> list[AuditEntry]:
    with studio.sessions() as session:
        query = select(AuditEntry).where(
            AuditEntry.action == action, AuditEntry.workspace_id == workspace_id
        )
        return list(session.scalars(query))


async def open_page(user: User, path: str, marker: str) -> None:
    await user.open(path)
    await user.should_see(marker=marker, retries=100)


@pytest.mark.parametrize("name", ["ed", "vi", "ap"])
async def test_admin_pages_refuse_members_without_the_action(
    seeded: Seeded,  # noqa: F811
    user: User,
    name: str,
) -> None:
    sign_in(user, seeded, name)
    allowed = role_actions(ROLES[name])
    for path, action in PAGES.items():
        await user.open(path)
        if action in allowed:
            await user.should_not_see(marker="no-access")
        else:
            await user.should_see(marker="no-access", retries=100)
            await says(user, f"does not allow {action!r}")
            await user.should_not_see(kind=ui.input)
        shown = {e.props.get("href") for e in user.find(ui.link).elements}
        assert (path in shown) == (action in allowed), path


async def test_admin_adds_changes_and_removes_a_member(
    seeded: Seeded,  # noqa: F811
    studio: Studio,
    user: User,
) -> None:
    newcomer = studio.accounts.create_user("nina@example.com", None, "Nina").user_id
    sign_in(user, seeded, "ad")
    await open_page(user, "/admin/members", "member-email")
    user.find(marker="member-email").type("nina@example.com")
    user.find(marker="member-role").elements.pop().set_value("runner")
    user.find(marker="member-add").click()
    await says(user, "nina@example.com is now runner")
    assert studio.rbac.roles_of("acme", newcomer) == {"runner"}
    await user.should_see(marker="role-nina@example.com", retries=50)
    user.find(marker="role-nina@example.com").elements.pop().set_value("editor")
    await says(user, "nina@example.com is now editor")
    assert studio.rbac.roles_of("acme", newcomer) == {"editor"}
    user.find(marker="remove-nina@example.com").click()
    user.find(marker="remove-confirm").click()
    await says(user, "Removed nina@example.com")
    assert studio.rbac.roles_of("acme", newcomer) == set()
    await user.should_not_see(marker="role-nina@example.com")
    assert [e.details["role"] for e in audited(studio, "member.added")] == ["runner"]
    assert len(audited(studio, "member.role_changed")) == 1
    assert len(audited(studio, "member.removed")) == 1


async def test_the_last_admin_can_be_neither_demoted_nor_removed(
    seeded: Seeded,  # noqa: F811
    studio: Studio,
    user: User,
) -> None:
    sign_in(user, seeded, "ad")
    await open_page(user, "/admin/members", "role-ad@example.com")
    user.find(marker="role-ad@example.com").elements.pop().set_value("viewer")
    await says(user, "last admin")
    user.find(marker="remove-ad@example.com").click()
    user.find(marker="remove-confirm").click()
    await says(user, "last admin")
    assert studio.rbac.roles_of("acme", seeded.users["ad"]) == {"admin"}
    # with a second admin the first may step down
    studio.rbac.assign_role("acme", seeded.users["ap"], "admin")
    studio.rbac.revoke_role("acme", seeded.users["ap"], "approver")
    await user.open("/admin/members")
    await user.should_see(marker="role-ad@example.com", retries=100)
    user.find(marker="role-ad@example.com").elements.pop().set_value("editor")
    await says(user, "ad@example.com is now editor")
    assert studio.rbac.roles_of("acme", seeded.users["ad"]) == {"editor"}


async def test_a_token_value_is_shown_once_and_revoking_stops_it(
    seeded: Seeded,  # noqa: F811
    studio: Studio,
    user: User,
) -> None:
    sign_in(user, seeded, "ed")
    await open_page(user, "/admin/tokens", "token-name")
    user.find(marker="token-name").type("ci pipeline")
    user.find(marker="token-actions").elements.pop().set_value(["run:read", "run:start"])
    user.find(marker="token-create").click()
    await user.should_see(marker="token-value", retries=100)
    [shown] = user.find(marker="token-value").elements
    value = str(shown.value)  # type: ignore[attr-defined]
    assert value.startswith("sk_")
    actor = studio.token_actor(value)
    assert (actor.workspace_id, actor.user_id) == ("acme", seeded.users["ed"])
    assert actor.scopes == frozenset({"run:read", "run:start"})
    user.find(marker="token-done").click()
    await user.should_not_see(marker="token-value")
    assert value not in texts(user)
    await open_page(user, "/admin/tokens", "revoke-ci pipeline")
    assert value not in texts(user)
    await user.should_see(f"sk_{value.split('_')[1]}_…")  # the prefix only
    user.find(marker="revoke-ci pipeline").click()
    await says(user, "Revoked")
    with pytest.raises(NotFound):
        studio.token_actor(value)
    assert len(audited(studio, "token.created")) == len(audited(studio, "token.revoked")) == 1
    with pytest.raises(UserError, match="does not allow member:manage"):
        admin.create_token(studio, seeded.actor("ed"), name="more", actions=["member:manage"])


async def test_a_secret_value_is_never_sent_back_to_the_page(
    seeded: Seeded,  # noqa: F811
    studio: Studio,
    user: User,
) -> None:
    value = "pay-live-7f3a9c1e2b-never-show-me"
    sign_in(user, seeded, "ad")
    await open_page(user, "/admin/secrets", "secret-value")
    [field] = user.find(marker="secret-value").elements
    assert field.props.get("type") == "password"
    user.find(marker="secret-name").type("PAYMENTS_KEY")
    user.find(marker="secret-value").type(value)
    user.find(marker="secret-save").click()
    await says(user, "Secret PAYMENTS_KEY stored")
    await user.should_see(marker="delete-PAYMENTS_KEY", retries=50)
    assert value not in texts(user)
    assert studio.vault.resolver("acme")("PAYMENTS_KEY") == value
    await open_page(user, "/admin/secrets", "delete-PAYMENTS_KEY")
    assert value not in texts(user)
    user.find(marker="replace-PAYMENTS_KEY").click()
    user.find(marker="secret-value").type(value + "-2")
    user.find(marker="secret-save").click()
    await says(user, "Secret PAYMENTS_KEY stored")
    assert value not in texts(user)
    user.find(marker="delete-PAYMENTS_KEY").click()
    user.find(marker="delete-confirm").click()
    await says(user, "Deleted PAYMENTS_KEY")
    assert studio.vault.list_secrets(seeded.actor("ad")) == []
    entries = studio.audit.entries("acme")
    changes = [
        e.action for e in entries if e.action.startswith("secret.") and e.action != "secret.used"
    ]
    assert changes == ["secret.created", "secret.updated", "secret.deleted"]
    assert not any(value in str(e.details) or value in e.target for e in entries)


async def test_policy_only_raises_tiers_above_what_graphs_declare(
    seeded: Seeded,  # noqa: F811
    studio: Studio,
    user: User,
) -> None:
    studio.manager.library.create(seeded.actor("ed"), example("support_agent"))
    sign_in(user, seeded, "ad")
    await open_page(user, "/admin/policy", "raise-lookup_order")
    await user.should_not_see(marker="raise-issue_refund")  # admin already: nothing higher
    [email_tiers] = user.find(marker="tier-email_customer").elements
    assert email_tiers.options == ["admin"]  # type: ignore[attr-defined]
    user.find(marker="tier-lookup_order").elements.pop().set_value("confirm")
    user.find(marker="raise-lookup_order").click()
    await says(user, "lookup_order now needs at least confirm")
    assert studio.rbac.tool_floor("acme", "lookup_order") == "confirm"
    assert studio.rbac.tool_floor("evil", "lookup_order") == "free"
    [entry] = audited(studio, "policy.tier_raised")
    assert (entry.target, entry.details) == ("lookup_order", {"from": "free", "to": "confirm"})


async def test_the_audit_log_filters_and_shows_the_chain_status(
    seeded: Seeded,  # noqa: F811
    studio: Studio,
    user: User,
) -> None:
    sign_in(user, seeded, "ad")
    await open_page(user, "/admin/audit", "audit-filter")
    await user.should_see("hash chain is intact", retries=100)
    await user.should_see("graph.created")
    await user.should_see("ed@example.com")
    page = texts(user)
    assert seeded.foreign_graph not in page  # mallory's graph.created is another workspace's
    user.find(marker="audit-action").elements.pop().set_value("login")
    user.find(marker="audit-filter").click()
    await user.should_see("No entries match.")
    user.find(marker="audit-action").elements.pop().set_value("")
    user.find(marker="audit-actor").type("nobody@example.com")
    user.find(marker="audit-filter").click()
    await user.should_see("No entries match.")
    user.find(marker="audit-actor").elements.pop().set_value("ed@example.com")
    user.find(marker="audit-since").type("2999-01-01")
    user.find(marker="audit-filter").click()
    await user.should_see("No entries match.")
    user.find(marker="audit-since").elements.pop().set_value("")
    user.find(marker="audit-filter").click()
    await user.should_see("graph.created")


async def test_foreign_workspace_objects_are_not_found(
    seeded: Seeded,  # noqa: F811
    studio: Studio,
    user: User,
) -> None:
    mallory = seeded.actor("mallory")
    _, foreign_token = studio.tokens.create_token(mallory, name="evil token", actions=["run:read"])
    studio.vault.set_secret(mallory, "EVIL_KEY", "evil-secret-value")
    ad = seeded.actor("ad")
    with pytest.raises(NotFound):
        admin.revoke_token(studio, ad, foreign_token.token_id)
    with pytest.raises(NotFound):
        admin.remove_member(studio, ad, seeded.users["mallory"])
    with pytest.raises(NotFound):
        admin.delete_secret(studio, ad, "EVIL_KEY")
    with pytest.raises(NotFound):  # an outsider asking about acme
        admin.list_members(studio, mallory.__class__("acme", seeded.users["mallory"]))
    assert studio.vault.resolver("evil")("EVIL_KEY") == "evil-secret-value"
    sign_in(user, seeded, "ad")
    for path, marker in [
        ("/admin/members", "member-email"),
        ("/admin/tokens", "token-name"),
        ("/admin/secrets", "secret-name"),
    ]:
        await open_page(user, path, marker)
        page = texts(user)
        assert "mallory@example.com" not in page and "evil token" not in page, path
        assert "EVIL_KEY" not in page, path
