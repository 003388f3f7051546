"""Web sessions: a new id at every login, logout that ends it, idle and absolute timeouts."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from auth.accounts import UserView
from auth.sessions import SessionPolicy
from auth.tables import Session
from components.errors import NotFound
from tests.auth.identity_stack import Stack, make_stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


@pytest.fixture
def alice(stack: Stack) -> UserView:
    user = stack.user("alice@example.org")
    stack.workspace("acme", user)
    return user


def test_every_login_gets_a_new_random_session(stack: Stack, alice: UserView) -> None:
    cookies = {stack.web.start_session(alice.user_id, "acme")[0] for _ in range(20)}
    assert len(cookies) == 20
    assert all(len(c) >= 43 and c.isascii() for c in cookies)
    for cookie in cookies:  # logging in again never ends the other devices' sessions
        assert stack.web.resolve_session(cookie).user_id == alice.user_id


def test_login_replacing_an_old_cookie_ends_it(stack: Stack, alice: UserView) -> None:
    """Session fixation: a cookie planted before login is not the one after it."""
    planted, _ = stack.web.start_session(alice.user_id, "acme")
    fresh, view = stack.web.start_session(alice.user_id, "acme", replaces=planted)
    assert fresh != planted
    with pytest.raises(NotFound):
        stack.web.resolve_session(planted)
    assert stack.web.resolve_session(fresh) == view


def test_only_the_hash_of_the_cookie_is_stored(stack: Stack, alice: UserView) -> None:
    cookie, view = stack.web.start_session(alice.user_id, "acme")
    assert view.session_id == hashlib.sha256(cookie.encode()).hexdigest()
    data = stack.stored_bytes()
    assert cookie.encode() not in data
    assert view.session_id.encode() in data  # the search does look at the right bytes


def test_resolve_gives_user_workspace_and_times(stack: Stack, alice: UserView) -> None:
    cookie, started = stack.web.start_session(alice.user_id, "acme")
    view = stack.web.resolve_session(cookie)
    assert (view.user_id, view.workspace_id) == (alice.user_id, "acme")
    assert view.created_at == stack.clock.now == started.last_seen_at
    assert view.expires_at == stack.clock.now + timedelta(hours=12)


def test_logout_really_ends_the_session(stack: Stack, alice: UserView) -> None:
    cookie, _ = stack.web.start_session(alice.user_id, "acme")
    other, _ = stack.web.start_session(alice.user_id, "acme")
    stack.web.end_session(cookie)
    with pytest.raises(NotFound, match="log in again"):
        stack.web.resolve_session(cookie)
    stack.web.end_session(cookie)  # a second logout is harmless
    stack.web.end_session("never-issued")
    assert stack.web.resolve_session(other).user_id == alice.user_id
    with stack.sessions() as db:
        row = db.get(Session, hashlib.sha256(cookie.encode()).hexdigest())
        assert row is not None and row.revoked_at == stack.clock.now


def test_idle_timeout(stack: Stack, alice: UserView) -> None:
    cookie, _ = stack.web.start_session(alice.user_id, "acme")
    for _ in range(4):  # activity keeps it alive past the idle limit
        stack.clock.advance(minutes=29)
        stack.web.resolve_session(cookie)
    stack.clock.advance(minutes=30, seconds=1)
    with pytest.raises(NotFound):
        stack.web.resolve_session(cookie)


def test_absolute_timeout_even_with_activity(stack: Stack, alice: UserView) -> None:
    cookie, view = stack.web.start_session(alice.user_id, "acme")
    while stack.clock.now + timedelta(minutes=10) < view.expires_at:
        stack.clock.advance(minutes=10)
        stack.web.resolve_session(cookie)
    stack.clock.now = view.expires_at
    with pytest.raises(NotFound):
        stack.web.resolve_session(cookie)


def test_timeouts_are_configurable(tmp_path: Path) -> None:
    policy = SessionPolicy(idle_timeout=timedelta(minutes=5), absolute_timeout=timedelta(hours=1))
    stack = make_stack(tmp_path, session_policy=policy)
    alice = stack.user("alice@example.org")
    stack.workspace("acme", alice)
    cookie, view = stack.web.start_session(alice.user_id, "acme")
    assert view.expires_at - view.created_at == timedelta(hours=1)
    stack.clock.advance(minutes=5, seconds=1)
    with pytest.raises(NotFound):
        stack.web.resolve_session(cookie)


@pytest.mark.parametrize(
    ("idle", "absolute"),
    [(timedelta(0), timedelta(hours=1)), (timedelta(hours=2), timedelta(hours=1))],
)
def test_nonsense_policies_are_refused(idle: timedelta, absolute: timedelta) -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        SessionPolicy(idle_timeout=idle, absolute_timeout=absolute)


def test_last_seen_is_written_at_most_once_a_minute(stack: Stack, alice: UserView) -> None:
    cookie, view = stack.web.start_session(alice.user_id, "acme")
    stack.clock.advance(seconds=40)
    assert stack.web.resolve_session(cookie).last_seen_at == view.created_at
    stack.clock.advance(seconds=25)
    assert stack.web.resolve_session(cookie).last_seen_at == stack.clock.now


def test_ending_all_sessions_of_a_user(stack: Stack, alice: UserView) -> None:
    bob = stack.user("bob@example.org")
    mine = [stack.web.start_session(alice.user_id, "acme")[0] for _ in range(3)]
    bobs, _ = stack.web.start_session(bob.user_id, "acme")
    assert stack.web.end_user_sessions(alice.user_id) == 3
    for cookie in mine:
        with pytest.raises(NotFound):
            stack.web.resolve_session(cookie)
    assert stack.web.resolve_session(bobs).user_id == bob.user_id


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        " ",
        "x" * 10_000,
        "\u2728\u0301\ufeff\U0001f511",
        "' OR '1'='1' --",
        "\x00",
        "%00",
        "None",
    ],
)
def test_malformed_cookies_are_simply_unknown(stack: Stack, alice: UserView, cookie: str) -> None:
    stack.web.start_session(alice.user_id, "acme")
    with pytest.raises(NotFound):
        stack.web.resolve_session(cookie)
    stack.web.end_session(cookie)  # and ending them does nothing
    with stack.sessions() as db:
        assert db.scalars(select(Session.revoked_at)).all() == [None]


def test_sessions_only_for_known_enabled_users_and_workspaces(
    stack: Stack, alice: UserView
) -> None:
    with pytest.raises(NotFound):
        stack.web.start_session("nobody", "acme")
    with pytest.raises(NotFound):
        stack.web.start_session(alice.user_id, "no-such-workspace")


def test_switch_workspace(stack: Stack, alice: UserView) -> None:
    stack.workspace("globex", alice)
    cookie, _ = stack.web.start_session(alice.user_id, "acme")
    assert stack.web.switch_workspace(cookie, "globex").workspace_id == "globex"
    assert stack.web.resolve_session(cookie).workspace_id == "globex"
    with pytest.raises(NotFound):
        stack.web.switch_workspace(cookie, "nope")
    stack.web.end_session(cookie)
    with pytest.raises(NotFound):
        stack.web.switch_workspace(cookie, "acme")


def test_purge_deletes_only_dead_sessions(stack: Stack, alice: UserView) -> None:
    ended, _ = stack.web.start_session(alice.user_id, "acme")
    stack.web.end_session(ended)
    stack.web.start_session(alice.user_id, "acme")  # goes idle
    stack.clock.advance(minutes=20)
    live, _ = stack.web.start_session(alice.user_id, "acme")
    stack.clock.advance(minutes=15)
    assert stack.web.purge_sessions() == 2
    assert stack.web.resolve_session(live).user_id == alice.user_id
    with stack.sessions() as db:
        assert len(db.scalars(select(Session)).all()) == 1
