"""Local accounts: argon2 hashes, generic failures, throttling without lock-out, disabling."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from auth.accounts import WRONG_CREDENTIALS, Backoff, ThrottlePolicy
from auth.passwords import MAX_LENGTH, Passwords
from auth.tables import LoginAttempt, User
from components.errors import Conflict, Forbidden, NotFound, UserError
from graphs.identity import Actor
from tests.auth.identity_stack import PASSWORD, CountingHasher, Stack, fast_hasher, make_stack

ATTACKER_IP = "203.0.113.9"
ALICE_IP = "198.51.100.7"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


def _wait_of(error: Forbidden) -> int:
    match = re.fullmatch(r"too many attempts; try again in (\d+) s", str(error))
    assert match, str(error)
    return int(match.group(1))


def _guess(stack: Stack, email: str, ip: str, password: str = "wrong password!") -> str:
    """One login attempt; returns 'ok', 'wrong' or 'throttled'."""
    try:
        stack.accounts.authenticate(email, password, client_ip=ip)
    except Forbidden as error:
        return "wrong" if str(error) == WRONG_CREDENTIALS else "throttled"
    return "ok"


# --- passwords -------------------------------------------------------------------------------


def test_password_is_stored_as_argon2id_hash_never_plaintext(stack: Stack) -> None:
    alice = stack.user("alice@example.org")
    with stack.sessions() as db:
        stored = db.get(User, alice.user_id)
        assert stored is not None and stored.password_hash is not None
        assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD.encode() not in stack.stored_bytes()
    assert alice.has_password


@pytest.mark.parametrize("password", ["", "short", "x" * 11, "y" * (MAX_LENGTH + 1)])
def test_password_policy_refuses_and_stores_nothing(stack: Stack, password: str) -> None:
    with pytest.raises(UserError, match="password is too"):
        stack.accounts.create_user("bob@example.org", password, "Bob")
    with pytest.raises(NotFound):
        stack.accounts.get_user_by_email("bob@example.org")


def test_password_of_exactly_the_limits_is_accepted(stack: Stack) -> None:
    stack.accounts.create_user("min@example.org", "m" * 12, "Min")
    stack.accounts.create_user("max@example.org", "M" * MAX_LENGTH, "Max")
    assert stack.accounts.authenticate("max@example.org", "M" * MAX_LENGTH, client_ip=ALICE_IP)


def test_rehash_when_parameters_change(tmp_path: Path) -> None:
    old = make_stack(tmp_path, passwords=Passwords(fast_hasher(time_cost=1)))
    alice = old.user("alice@example.org")
    new = make_stack(tmp_path, passwords=Passwords(fast_hasher(time_cost=2)))

    def stored() -> str:
        with new.sessions() as db:
            row = db.get(User, alice.user_id)
            assert row is not None and row.password_hash is not None
            return row.password_hash

    before = stored()
    assert "t=1" in before
    new.accounts.authenticate("alice@example.org", PASSWORD, client_ip=ALICE_IP)
    after = stored()
    assert "t=2" in after and after != before
    assert new.accounts.authenticate("alice@example.org", PASSWORD, client_ip=ALICE_IP)
    assert stored() == after  # current parameters: no further rehash


def test_verify_tolerates_garbage_hashes() -> None:
    passwords = Passwords(fast_hasher())
    assert passwords.verify("not-a-hash", PASSWORD) is False
    assert passwords.verify(None, PASSWORD) is False
    assert passwords.needs_rehash("not-a-hash") is True


# --- users and workspaces --------------------------------------------------------------------


def test_email_is_lower_cased_and_unique(stack: Stack) -> None:
    alice = stack.accounts.create_user("  Alice@Example.ORG ", PASSWORD, "Alice")
    assert alice.email == "alice@example.org"
    with pytest.raises(Conflict, match="already exists"):
        stack.accounts.create_user("ALICE@example.org", PASSWORD, "Alice again")
    assert stack.accounts.authenticate("ALICE@EXAMPLE.ORG", PASSWORD, client_ip=ALICE_IP)


@pytest.mark.parametrize("email", ["", "alice", "a@b@c", "alice @example.org", "@x", "x" * 400])
def test_bad_email_is_refused(stack: Stack, email: str) -> None:
    with pytest.raises(UserError, match="not an e-mail address"):
        stack.accounts.create_user(email, PASSWORD, "X")


def test_password_less_account_cannot_log_in_with_any_password(stack: Stack) -> None:
    sso = stack.user("sso@example.org", password=None)
    assert not sso.has_password
    for attempt in ["", PASSWORD, "None"]:
        assert _guess(stack, "sso@example.org", ALICE_IP, attempt) == "wrong"


def test_workspace_needs_an_existing_enabled_owner(stack: Stack) -> None:
    alice = stack.user("alice@example.org")
    view = stack.accounts.create_workspace("  Acme  ", owner_user_id=alice.user_id)
    assert view.name == "Acme" and view.created_by == alice.user_id
    assert stack.accounts.get_workspace(view.workspace_id) == view
    with pytest.raises(NotFound):
        stack.accounts.create_workspace("Ghost", owner_user_id="nobody")
    stack.accounts.disable_user(alice.user_id)
    with pytest.raises(NotFound):
        stack.accounts.create_workspace("Late", owner_user_id=alice.user_id)


def test_workspace_ids_are_checked_and_unique(stack: Stack) -> None:
    alice = stack.user("alice@example.org")
    stack.workspace("acme", alice)
    with pytest.raises(Conflict):
        stack.workspace("acme", alice)
    for bad in ["", "../etc", "a b", "x" * 65, "é"]:
        with pytest.raises(UserError):
            stack.accounts.create_workspace("W", owner_user_id=alice.user_id, workspace_id=bad)
    with pytest.raises(UserError):
        stack.accounts.create_workspace("   ", owner_user_id=alice.user_id)


# --- authentication ---------------------------------------------------------------------------


def test_failures_are_one_generic_message(stack: Stack) -> None:
    alice = stack.user("alice@example.org")
    assert stack.accounts.authenticate("alice@example.org", PASSWORD, client_ip=ALICE_IP) == (
        stack.accounts.get_user(alice.user_id)
    )
    messages = set()
    for email, password in [
        ("alice@example.org", "wrong password!"),
        ("nobody@example.org", PASSWORD),
        ("x" * 5000, PASSWORD),
        ("alice@example.org", "z" * (MAX_LENGTH + 50)),
        ("' OR 1=1 --", "' OR 1=1 --"),
    ]:
        with pytest.raises(Forbidden) as caught:
            stack.accounts.authenticate(email, password, client_ip=ALICE_IP)
        messages.add(str(caught.value))
    assert messages == {WRONG_CREDENTIALS}


def test_unknown_email_runs_the_same_argon2_work(tmp_path: Path) -> None:
    hasher = CountingHasher()
    stack = make_stack(tmp_path, passwords=Passwords(hasher))
    alice = stack.user("alice@example.org")
    stack.user("gone@example.org")
    stack.accounts.disable_user(stack.accounts.get_user_by_email("gone@example.org").user_id)
    cases = [
        ("alice@example.org", "wrong password!"),  # real hash
        ("nobody@example.org", PASSWORD),  # unknown: dummy hash
        ("gone@example.org", PASSWORD),  # disabled: dummy hash, even with the right password
        ("alice@example.org", "q" * (MAX_LENGTH + 1)),  # overlong: dummy hash
    ]
    for email, password in cases:
        hasher.verified.clear()
        assert _guess(stack, email, ALICE_IP, password) == "wrong"
        assert len(hasher.verified) == 1, email
        assert hasher.verified[0].startswith("$argon2id$")
    # the dummy has the same parameters as a real hash, so it costs the same
    with stack.sessions() as db:
        real = db.get(User, alice.user_id)
        assert real is not None and real.password_hash is not None
    assert hasher.verified[0].split("$")[3] == real.password_hash.split("$")[3]


# --- throttling -------------------------------------------------------------------------------


def test_attacker_hammering_alice_from_one_ip_does_not_stop_alice_elsewhere(stack: Stack) -> None:
    stack.user("alice@example.org")
    outcomes = [_guess(stack, "alice@example.org", ATTACKER_IP) for _ in range(40)]
    assert outcomes[:5] == ["wrong"] * 5
    assert outcomes.count("wrong") <= 6 and "throttled" in outcomes
    assert _guess(stack, "alice@example.org", ALICE_IP, PASSWORD) == "ok"
    assert _guess(stack, "alice@example.org", "198.51.100.99", PASSWORD) == "ok"


def test_throttled_attempt_does_not_check_the_password(tmp_path: Path) -> None:
    hasher = CountingHasher()
    stack = make_stack(tmp_path, passwords=Passwords(hasher))
    stack.user("alice@example.org")
    while _guess(stack, "alice@example.org", ATTACKER_IP) != "throttled":
        pass
    hasher.verified.clear()
    assert _guess(stack, "alice@example.org", ATTACKER_IP, PASSWORD) == "throttled"
    assert hasher.verified == []


def test_backoff_doubles_is_capped_and_never_locks_for_good(stack: Stack) -> None:
    stack.user("alice@example.org")
    waits = []
    for _ in range(30):
        try:
            stack.accounts.authenticate("alice@example.org", "nope nope nope", client_ip=ALICE_IP)
        except Forbidden as error:
            if str(error) == WRONG_CREDENTIALS:
                continue
            wait = _wait_of(error)
            waits.append(wait)
            stack.clock.advance(seconds=wait)
    assert waits[:5] == [2, 4, 8, 16, 32]
    assert waits[-3:] == [900, 900, 900]  # capped at 15 minutes
    assert _guess(stack, "alice@example.org", ALICE_IP) == "wrong"
    assert _guess(stack, "alice@example.org", ALICE_IP, PASSWORD) == "throttled"
    stack.clock.advance(minutes=15)
    assert _guess(stack, "alice@example.org", ALICE_IP, PASSWORD) == "ok"
    # a success resets the pair: the next typo costs nothing
    assert _guess(stack, "alice@example.org", ALICE_IP) == "wrong"
    assert _guess(stack, "alice@example.org", ALICE_IP, PASSWORD) == "ok"


def test_old_failures_age_out(stack: Stack) -> None:
    stack.user("alice@example.org")
    while _guess(stack, "alice@example.org", ATTACKER_IP) != "throttled":
        pass
    stack.clock.advance(hours=24, seconds=1)
    assert _guess(stack, "alice@example.org", ATTACKER_IP) == "wrong"


def test_per_ip_throttle_stops_spraying_many_accounts(tmp_path: Path) -> None:
    policy = ThrottlePolicy(
        per_ip=Backoff(8, timedelta(seconds=1), timedelta(minutes=5), timedelta(hours=1), False)
    )
    stack = make_stack(tmp_path, throttle=policy)
    stack.user("victim@example.org")
    sprayed = [_guess(stack, f"user{i}@example.org", ATTACKER_IP) for i in range(12)]
    assert sprayed[:8] == ["wrong"] * 8 and sprayed[-1] == "throttled"
    assert _guess(stack, "victim@example.org", ATTACKER_IP, PASSWORD) == "throttled"
    assert _guess(stack, "victim@example.org", ALICE_IP, PASSWORD) == "ok"
    stack.clock.advance(minutes=5)
    assert _guess(stack, "victim@example.org", ATTACKER_IP, PASSWORD) == "ok"


def test_ipv6_addresses_throttle_per_64(tmp_path: Path) -> None:
    policy = ThrottlePolicy(
        per_ip=Backoff(3, timedelta(seconds=1), timedelta(minutes=5), timedelta(hours=1), False)
    )
    stack = make_stack(tmp_path, throttle=policy)
    stack.user("alice@example.org")
    for i in range(3):  # rotating addresses inside one /64 does not help
        assert _guess(stack, f"u{i}@example.org", f"2001:db8:1:2::{i + 1}") == "wrong"
    assert _guess(stack, "u9@example.org", "2001:db8:1:2:ffff::9") == "throttled"
    assert _guess(stack, "alice@example.org", "2001:db8:1:3::1", PASSWORD) == "ok"


def test_throttling_keys_do_not_store_the_email(stack: Stack) -> None:
    stack.user("alice@example.org")
    _guess(stack, "alice@example.org", ATTACKER_IP)
    with stack.sessions() as db:
        keys = db.scalars(select(LoginAttempt.key)).all()
    assert len(keys) == 2 and not any("alice" in key for key in keys)
    assert f"ip:{ATTACKER_IP}" in keys


def test_prune_attempts_keeps_recent_ones(stack: Stack) -> None:
    stack.user("alice@example.org")
    _guess(stack, "alice@example.org", ATTACKER_IP)
    assert stack.accounts.prune_attempts() == 0
    stack.clock.advance(hours=25)
    _guess(stack, "alice@example.org", ALICE_IP)
    assert stack.accounts.prune_attempts() == 2
    with stack.sessions() as db:
        assert len(db.scalars(select(LoginAttempt)).all()) == 2


# --- disabling --------------------------------------------------------------------------------


def test_disabled_user_stops_at_once_login_session_and_token(stack: Stack) -> None:
    alice = stack.user("alice@example.org")
    workspace = stack.workspace("acme", alice)
    cookie, _ = stack.web.start_session(alice.user_id, workspace)
    token, _ = stack.tokens.create_token(
        Actor(workspace, alice.user_id), name="ci", actions=["run:start"]
    )
    assert stack.web.resolve_session(cookie).user_id == alice.user_id
    assert stack.tokens.verify_token(token).user_id == alice.user_id

    disabled = stack.accounts.disable_user(alice.user_id)

    assert disabled.disabled_at == stack.clock.now
    assert _guess(stack, "alice@example.org", ALICE_IP, PASSWORD) == "wrong"
    with pytest.raises(NotFound):
        stack.web.resolve_session(cookie)
    with pytest.raises(NotFound):
        stack.tokens.verify_token(token)
    with pytest.raises(NotFound):
        stack.web.start_session(alice.user_id, workspace)


def test_disabled_flag_alone_stops_sessions_and_tokens(stack: Stack) -> None:
    """Even a disable written by another process (no session revocation) takes effect."""
    alice = stack.user("alice@example.org")
    workspace = stack.workspace("acme", alice)
    cookie, _ = stack.web.start_session(alice.user_id, workspace)
    token, _ = stack.tokens.create_token(
        Actor(workspace, alice.user_id), name="ci", actions=["run:start"]
    )
    with stack.sessions() as db:
        db.execute(update(User).values(disabled_at=stack.clock.now))
        db.commit()
    with pytest.raises(NotFound):
        stack.web.resolve_session(cookie)
    with pytest.raises(NotFound):
        stack.tokens.verify_token(token)


def test_set_password_ends_sessions_and_changes_login(stack: Stack) -> None:
    alice = stack.user("alice@example.org")
    workspace = stack.workspace("acme", alice)
    cookie, _ = stack.web.start_session(alice.user_id, workspace)
    stack.accounts.set_password(alice.user_id, "a brand new passphrase")
    with pytest.raises(NotFound):
        stack.web.resolve_session(cookie)
    assert _guess(stack, "alice@example.org", ALICE_IP, PASSWORD) == "wrong"
    assert _guess(stack, "alice@example.org", ALICE_IP, "a brand new passphrase") == "ok"
    with pytest.raises(NotFound):
        stack.accounts.set_password("nobody", PASSWORD)


# --- schema -----------------------------------------------------------------------------------


def _alembic_config() -> Any:
    from alembic.config import Config

    from auth.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def test_migration_matches_the_identity_tables_and_lives_beside_graphs(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    import auth  # every table module: accounts, rbac, vault, audit, oidc
    import auth.oidc
    from auth.base import Base
    from auth.db import migrate as migrate_auth
    from graphs.db import make_engine
    from graphs.db import migrate as migrate_graphs

    engine = make_engine(f"sqlite:///{tmp_path / 'both.db'}")
    migrate_graphs(engine)
    migrate_auth(engine)
    migrate_auth(engine)  # a second upgrade is a no-op
    ours = set(Base.metadata.tables)
    assert auth.oidc.OidcIdentity.__tablename__ in ours

    def only_ours(obj: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
        return (name if kind == "table" else obj.table.name) in ours

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": only_ours})
        diff = compare_metadata(context, Base.metadata)
        names = set(inspect(conn).get_table_names())
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version_auth").all()

    assert diff == []
    assert ours <= names and {"alembic_version_graphs", "graphs"} <= names
    heads = ScriptDirectory.from_config(_alembic_config()).get_heads()
    assert version == [(heads[0],)] and len(heads) == 1


def test_default_hasher_is_argon2id_with_library_parameters() -> None:
    stored = Passwords().hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
