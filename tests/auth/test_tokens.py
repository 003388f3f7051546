"""API tokens: shown once, stored hashed, scoped to one workspace; bad values rejected alike."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from auth.tables import ApiToken
from auth.tokens import MAX_TOKEN_LENGTH, REJECTED, TokenPrincipal
from components.errors import NotFound, UserError
from graphs.identity import Actor
from tests.auth.identity_stack import Stack, make_stack

SHAPE = re.compile(r"sk_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


@pytest.fixture
def alice(stack: Stack) -> Actor:
    """alice works in acme and in globex."""
    user = stack.user("alice@example.org")
    stack.workspace("acme", user)
    stack.workspace("globex", user)
    return Actor("acme", user.user_id)


@pytest.fixture
def bob(stack: Stack, alice: Actor) -> Actor:
    return Actor("acme", stack.user("bob@example.org").user_id)


@pytest.fixture
def mallory(stack: Stack) -> Actor:
    user = stack.user("mallory@evil.example")
    return Actor(stack.workspace("evil-corp", user), user.user_id)


def _rejected(stack: Stack, value: str) -> None:
    with pytest.raises(NotFound) as caught:
        stack.tokens.verify_token(value)
    assert str(caught.value) == REJECTED  # one message: never says why


def test_value_shape_and_principal(stack: Stack, alice: Actor) -> None:
    value, view = stack.tokens.create_token(
        alice, name=" ci ", actions=["run:start", "graph:read", "run:start"]
    )
    match = SHAPE.fullmatch(value)
    assert match and match.group(1) == view.prefix
    assert view.name == "ci" and view.actions == ("graph:read", "run:start")
    assert view.expires_at is None and view.revoked_at is None
    principal = stack.tokens.verify_token(value)
    assert principal == TokenPrincipal(
        view.token_id, "acme", alice.user_id, frozenset({"graph:read", "run:start"})
    )
    assert principal.allows("run:start") and not principal.allows("approval:decide:admin")


def test_value_is_shown_once_and_only_its_hash_is_stored(stack: Stack, alice: Actor) -> None:
    value, view = stack.tokens.create_token(alice, name="canary-token", actions=["graph:read"])
    secret = value.split("_", 2)[2]
    stack.tokens.verify_token(value)
    data = stack.stored_bytes()
    assert secret.encode() not in data and value.encode() not in data
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in data
    assert b"canary-token" in data  # the search does look at the right bytes
    for listed in stack.tokens.list_tokens(alice):
        fields = {f.name for f in dataclasses.fields(listed)}
        assert not fields & {"secret", "secret_hash", "value"}
        assert secret not in repr(listed)
    assert dataclasses.astuple(stack.tokens.list_tokens(alice)[0])[:5] == (
        view.token_id,
        "acme",
        alice.user_id,
        "canary-token",
        view.prefix,
    )


def test_expired_token_is_rejected(stack: Stack, alice: Actor) -> None:
    value, view = stack.tokens.create_token(
        alice, name="short", actions=["run:start"], expires_in=timedelta(hours=1)
    )
    assert view.expires_at == stack.clock.now + timedelta(hours=1)
    stack.clock.advance(minutes=59, seconds=59)
    stack.tokens.verify_token(value)
    stack.clock.advance(seconds=1)
    _rejected(stack, value)


def test_revoked_token_stops_at_once(stack: Stack, alice: Actor) -> None:
    value, view = stack.tokens.create_token(alice, name="ci", actions=["run:start"])
    stack.tokens.verify_token(value)
    revoked = stack.tokens.revoke_token(alice, view.token_id)
    assert revoked.revoked_at == stack.clock.now
    _rejected(stack, value)
    stack.clock.advance(minutes=5)
    assert stack.tokens.revoke_token(alice, view.token_id).revoked_at == revoked.revoked_at


def test_right_prefix_wrong_secret_is_rejected(stack: Stack, alice: Actor) -> None:
    value, _ = stack.tokens.create_token(alice, name="ci", actions=["run:start"])
    prefix, secret = value[:12], value[12:]
    flipped = ("B" if secret[0] == "A" else "A") + secret[1:]
    _rejected(stack, prefix + flipped)
    _rejected(stack, prefix + secret + "A")
    _rejected(stack, prefix + secret[:-1])
    other, _ = stack.tokens.create_token(alice, name="other", actions=["run:start"])
    _rejected(stack, other[:12] + secret)  # a valid secret under another token's prefix


def test_token_from_workspace_a_acts_only_in_a(stack: Stack, alice: Actor) -> None:
    value, view = stack.tokens.create_token(alice, name="acme-ci", actions=["run:start"])
    in_globex = Actor("globex", alice.user_id)  # the same person, another workspace
    principal = stack.tokens.verify_token(value)
    assert principal.workspace_id == "acme"  # whatever a request claims, this is the tenant
    assert stack.tokens.list_tokens(in_globex) == []
    with pytest.raises(NotFound):
        stack.tokens.revoke_token(in_globex, view.token_id)
    assert stack.tokens.verify_token(value) == principal


MALFORMED = [
    "",
    "sk_",
    "sk__",
    "Bearer sk_abcdefgh_" + "A" * 43,
    "pk_abcdefgh_" + "A" * 43,
    "SK_abcdefgh_" + "A" * 43,
    "sk_ABCDEFGH_" + "A" * 43,
    "sk_abcdefg_" + "A" * 44,
    "sk_abcdefgh_" + "A" * 42,
    "sk_abcdefgh_" + "A" * 43 + "\n",
    " sk_abcdefgh_" + "A" * 43,
    "sk_abcdefgh_" + "A" * 42 + "=",
    "sk_abcdefgh_" + "A" * 42 + "é",
    "sk_abcdéfgh_" + "A" * 43,
    "sk_abcdefgh_" + "\uff21" * 43,  # fullwidth letters
    "sk_abcdefgh_" + "A" * 42 + "\x00",
    "sk_' OR '1'='1_" + "A" * 43,
    "sk_abcdefgh_' OR 1=1; DROP TABLE api_tokens; --",
    "sk_%_" + "A" * 43,
    "x" * 10_000,
    "sk_abcdefgh_" + "A" * 10_000,
    "🔑" * 50,
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_values_are_rejected(stack: Stack, alice: Actor, value: str) -> None:
    stack.tokens.create_token(alice, name="ci", actions=["run:start"])
    _rejected(stack, value)
    with stack.sessions() as db:
        assert db.scalar(select(func.count()).select_from(ApiToken)) == 1


def test_oversized_value_is_rejected_before_lookup(stack: Stack, alice: Actor) -> None:
    value, _ = stack.tokens.create_token(alice, name="ci", actions=["run:start"])
    padded = value + "A" * (MAX_TOKEN_LENGTH - len(value) + 1)
    assert len(padded) == MAX_TOKEN_LENGTH + 1
    _rejected(stack, padded)
    stack.tokens.verify_token(value)


def test_unknown_token_of_the_right_shape_is_rejected(stack: Stack, alice: Actor) -> None:
    _rejected(stack, "sk_abcdefgh_" + "A" * 43)


def test_revoke_from_another_workspace_is_not_found_and_changes_nothing(
    stack: Stack, alice: Actor, mallory: Actor
) -> None:
    value, view = stack.tokens.create_token(alice, name="ci", actions=["run:start"])
    with pytest.raises(NotFound):
        stack.tokens.revoke_token(mallory, view.token_id)
    with pytest.raises(NotFound):
        stack.tokens.revoke_token(mallory, view.token_id, any_owner=True)
    with pytest.raises(NotFound):
        stack.tokens.revoke_token(mallory, "no-such-token")
    assert stack.tokens.list_tokens(alice)[0].revoked_at is None
    stack.tokens.verify_token(value)


def test_revoking_a_colleagues_token_needs_any_owner(
    stack: Stack, alice: Actor, bob: Actor
) -> None:
    value, view = stack.tokens.create_token(bob, name="bob-ci", actions=["run:start"])
    with pytest.raises(NotFound):
        stack.tokens.revoke_token(alice, view.token_id)
    stack.tokens.verify_token(value)
    stack.tokens.revoke_token(alice, view.token_id, any_owner=True)  # after an RBAC check
    _rejected(stack, value)


def test_lists_never_include_foreign_tokens(
    stack: Stack, alice: Actor, bob: Actor, mallory: Actor
) -> None:
    stack.tokens.create_token(alice, name="a1", actions=["run:start"])
    stack.clock.advance(seconds=1)
    stack.tokens.create_token(alice, name="a2", actions=["graph:read"])
    stack.tokens.create_token(bob, name="b1", actions=["graph:read"])
    stack.tokens.create_token(Actor("globex", alice.user_id), name="g1", actions=["graph:read"])
    stack.tokens.create_token(mallory, name="m1", actions=["graph:read"])
    assert [t.name for t in stack.tokens.list_tokens(alice)] == ["a2", "a1"]
    assert {t.name for t in stack.tokens.list_tokens(alice, all_owners=True)} == {"a1", "a2", "b1"}
    assert [t.name for t in stack.tokens.list_tokens(mallory, all_owners=True)] == ["m1"]
    assert all(t.workspace_id == "acme" for t in stack.tokens.list_tokens(bob, all_owners=True))


def test_disabled_owner_token_stops_at_once(stack: Stack, alice: Actor, bob: Actor) -> None:
    bobs, _ = stack.tokens.create_token(bob, name="bob-ci", actions=["run:start"])
    alices, _ = stack.tokens.create_token(alice, name="ci", actions=["run:start"])
    stack.accounts.disable_user(bob.user_id)
    _rejected(stack, bobs)
    stack.tokens.verify_token(alices)
    with pytest.raises(NotFound):
        stack.tokens.create_token(bob, name="again", actions=["run:start"])


def test_revoke_owner_tokens(stack: Stack, alice: Actor, bob: Actor) -> None:
    acme, _ = stack.tokens.create_token(alice, name="a", actions=["run:start"])
    globex, _ = stack.tokens.create_token(
        Actor("globex", alice.user_id), name="g", actions=["run:start"]
    )
    bobs, _ = stack.tokens.create_token(bob, name="b", actions=["run:start"])
    assert stack.tokens.revoke_owner_tokens(alice.user_id, workspace_id="acme") == 1
    _rejected(stack, acme)
    stack.tokens.verify_token(globex)
    assert stack.tokens.revoke_owner_tokens(alice.user_id) == 1
    _rejected(stack, globex)
    stack.tokens.verify_token(bobs)


@pytest.mark.parametrize(
    ("name", "actions", "expires_in", "message"),
    [
        ("", ["run:start"], None, "name"),
        ("x" * 101, ["run:start"], None, "name"),
        ("ci", [], None, "at least one action"),
        ("ci", ["run"], None, "not an action"),
        ("ci", ["RUN:START"], None, "not an action"),
        ("ci", ["run:start", "*"], None, "not an action"),
        ("ci", ["run:start'; --"], None, "not an action"),
        ("ci", [f"a:b{i}" for i in range(65)], None, "at most"),
        ("ci", ["run:start"], timedelta(0), "positive"),
        ("ci", ["run:start"], timedelta(seconds=-5), "positive"),
    ],
)
def test_bad_requests_store_nothing(
    stack: Stack,
    alice: Actor,
    name: str,
    actions: list[str],
    expires_in: timedelta | None,
    message: str,
) -> None:
    with pytest.raises(UserError, match=message):
        stack.tokens.create_token(alice, name=name, actions=actions, expires_in=expires_in)
    assert stack.tokens.list_tokens(alice) == []


def test_tokens_only_for_existing_workspaces_and_users(stack: Stack, alice: Actor) -> None:
    with pytest.raises(NotFound):
        stack.tokens.create_token(Actor("nowhere", alice.user_id), name="x", actions=["a:b"])
    with pytest.raises(NotFound):
        stack.tokens.create_token(Actor("acme", "nobody"), name="x", actions=["a:b"])


def test_last_used_is_recorded_at_most_once_a_minute(stack: Stack, alice: Actor) -> None:
    value, view = stack.tokens.create_token(alice, name="ci", actions=["run:start"])
    assert view.last_used_at is None
    stack.tokens.verify_token(value)
    first = stack.clock.now
    stack.clock.advance(seconds=30)
    stack.tokens.verify_token(value)
    assert stack.tokens.list_tokens(alice)[0].last_used_at == first
    stack.clock.advance(seconds=31)
    stack.tokens.verify_token(value)
    assert stack.tokens.list_tokens(alice)[0].last_used_at == stack.clock.now
