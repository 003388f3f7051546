"""The secrets vault on real SQLite files: encryption at rest, keys, rotation, isolation.

Every test plants a random canary value and checks it appears nowhere it must not (I-SEC).
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from auth.audit import AuditLog
from auth.base import Base
from auth.redact import REDACTED, Redactor, install_log_redaction
from auth.vault import (
    KEY_ENV,
    Keyring,
    Vault,
    VaultKeyMismatch,
    key_file_for,
    key_id,
    load_keyring,
)
from components.errors import NotFound, StudioError, UserError
from graphs.db import make_engine
from graphs.identity import Actor

Sessions = sessionmaker[Session]
ALICE = Actor("acme", "alice")
MALLORY = Actor("evil-corp", "mallory")


def canary() -> str:
    return f"canary-{secrets.token_urlsafe(24)}"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studio.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{db_path}")
    mine = [Base.metadata.tables[name] for name in ("vault_secrets", "audit_entries")]
    Base.metadata.create_all(engine, tables=mine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Sessions:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def vault(sessions: Sessions, db_path: Path) -> Vault:
    return Vault(sessions, load_keyring(key_file_for(db_path)))


def raw_files(db_path: Path) -> bytes:
    """Every byte SQLite wrote: the database, its WAL and shared-memory files."""
    parts = [db_path, db_path.with_name(db_path.name + "-wal")]
    parts.append(db_path.with_name(db_path.name + "-shm"))
    return b"".join(p.read_bytes() for p in parts if p.exists())


def stored_rows(db_path: Path) -> list[tuple[str, str, bytes, str]]:
    with sqlite3.connect(db_path) as conn:
        query = "SELECT workspace_id, name, ciphertext, key_id FROM vault_secrets ORDER BY name"
        return list(conn.execute(query))


# -- encryption at rest ------------------------------------------------------------------


def test_canary_never_reaches_the_database_files(
    vault: Vault, engine: Engine, db_path: Path
) -> None:
    first, second = canary(), canary()
    vault.set_secret(ALICE, "API_KEY", first)
    vault.set_secret(ALICE, "API_KEY", second)  # an update rewrites pages: check both
    assert vault.resolver("acme")("API_KEY") == second
    blob = raw_files(db_path)
    assert b"API_KEY" in blob  # the grep works: names are stored in clear
    for value in (first, second):
        assert value.encode() not in blob
        assert value.encode("utf-16-le") not in blob
    engine.dispose()  # checkpoint the WAL into the main file, then grep again
    assert second.encode() not in raw_files(db_path)
    assert second.encode() not in key_file_for(db_path).read_bytes()


def test_list_shows_names_and_metadata_never_values(vault: Vault) -> None:
    value = canary()
    vault.set_secret(ALICE, "SMTP_PASSWORD", value)
    vault.set_secret(Actor("acme", "bob"), "API_KEY", canary())
    listed = vault.list_secrets(ALICE)
    assert [s.name for s in listed] == ["API_KEY", "SMTP_PASSWORD"]
    assert listed[0].created_by == "bob" and listed[1].updated_by == "alice"
    assert listed[0].created_at.tzinfo is not None
    assert value not in repr(listed)
    assert not hasattr(listed[0], "value")


def test_set_twice_updates_and_keeps_creation_metadata(vault: Vault) -> None:
    created = vault.set_secret(ALICE, "TOKEN", canary())
    updated = vault.set_secret(Actor("acme", "bob"), "TOKEN", "second-value")
    assert (updated.created_by, updated.updated_by) == ("alice", "bob")
    assert updated.created_at == created.created_at
    assert vault.resolver("acme")("TOKEN") == "second-value"
    assert vault.count() == 1


# -- resolving -----------------------------------------------------------------------------


def test_resolver_reads_at_call_time(vault: Vault) -> None:
    resolve = vault.resolver("acme")  # made before the secret exists
    with pytest.raises(NotFound):
        resolve("API_KEY")
    vault.set_secret(ALICE, "API_KEY", "first-value")
    assert resolve("API_KEY") == "first-value"
    vault.set_secret(ALICE, "API_KEY", "second-value")
    assert resolve("API_KEY") == "second-value"
    vault.delete_secret(ALICE, "API_KEY")
    with pytest.raises(NotFound):
        resolve("API_KEY")


def test_unknown_secret_names_the_secret(vault: Vault) -> None:
    with pytest.raises(NotFound, match="'MISSING_KEY'") as caught:
        vault.resolver("acme")("MISSING_KEY")
    assert "studio secrets set" in str(caught.value)


def test_every_use_is_reported(sessions: Sessions, db_path: Path) -> None:
    used: list[tuple[str, str]] = []
    changes: list[tuple[str, str, str]] = []
    vault = Vault(
        sessions,
        load_keyring(key_file_for(db_path)),
        on_use=lambda ws, name: used.append((ws, name)),
        on_change=lambda actor, action, name: changes.append((actor.user_id, action, name)),
    )
    vault.set_secret(ALICE, "API_KEY", canary())
    vault.set_secret(ALICE, "API_KEY", canary())
    vault.resolver("acme")("API_KEY")
    vault.resolver("acme")("API_KEY")
    with pytest.raises(NotFound):
        vault.resolver("acme")("OTHER")
    vault.delete_secret(ALICE, "API_KEY")
    assert used == [("acme", "API_KEY")] * 2
    assert changes == [
        ("alice", "secret.created", "API_KEY"),
        ("alice", "secret.updated", "API_KEY"),
        ("alice", "secret.deleted", "API_KEY"),
    ]


def test_uses_and_changes_land_in_the_audit_log(sessions: Sessions, db_path: Path) -> None:
    redactor = Redactor()  # the app shares one redactor between vault, audit and logs
    audit = AuditLog(sessions, redactor=redactor)
    vault = Vault(
        sessions,
        load_keyring(key_file_for(db_path)),
        redactor=redactor,
        on_use=lambda ws, name: audit.record(
            "secret.used", actor="system", workspace_id=ws, target=name
        ),
        on_change=lambda actor, action, name: audit.record(
            action, actor=actor.user_id, workspace_id=actor.workspace_id, target=name
        ),
    )
    value = canary()
    vault.set_secret(ALICE, "API_KEY", value)
    vault.resolver("acme")("API_KEY")
    # a careless caller puts the value into details: it is stored redacted
    audit.record("secret.used", actor="alice", workspace_id="acme", details={"v": value})
    actions = [e.action for e in audit.entries(ALICE)]
    assert actions == ["secret.created", "secret.used", "secret.used"]
    assert audit.entries(ALICE)[-1].details == {"v": REDACTED}
    assert audit.verify().ok
    assert value.encode() not in raw_files(db_path)


# -- errors never carry values -------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "a", "short", "12345"])
def test_secrets_shorter_than_six_characters_are_refused(vault: Vault, value: str) -> None:
    with pytest.raises(UserError, match="shorter than 6 characters") as caught:
        vault.set_secret(ALICE, "PIN", value)
    assert value == "" or f"'{value}'" not in str(caught.value)
    assert vault.list_secrets(ALICE) == []


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a-b", "x" * 65, "ünï", "a\nb"])
def test_invalid_names_are_refused(vault: Vault, name: str) -> None:
    value = canary()
    with pytest.raises(UserError, match="is invalid") as caught:
        vault.set_secret(ALICE, name, value)
    assert value not in str(caught.value)


def test_oversized_value_is_refused_without_echo(vault: Vault) -> None:
    value = canary() * 5_000
    with pytest.raises(UserError, match="larger than") as caught:
        vault.set_secret(ALICE, "BIG", value)
    assert value[:30] not in str(caught.value)


# -- keys ----------------------------------------------------------------------------------


def test_wrong_key_fails_closed(vault: Vault, sessions: Sessions) -> None:
    value = canary()
    vault.set_secret(ALICE, "API_KEY", value)
    stranger = Vault(sessions, Keyring([Fernet.generate_key()]))
    with pytest.raises(VaultKeyMismatch, match="does not match") as caught:
        stranger.resolver("acme")("API_KEY")
    error = caught.value
    assert isinstance(error, StudioError)
    assert "'API_KEY'" in str(error) and value not in str(error)
    assert error.__cause__ is None and error.__context__ is None  # no InvalidToken trace
    with pytest.raises(VaultKeyMismatch):
        stranger.register_all()


def test_row_moved_to_another_workspace_does_not_decrypt(vault: Vault, db_path: Path) -> None:
    value = canary()
    vault.set_secret(ALICE, "API_KEY", value)
    with sqlite3.connect(db_path) as conn:  # an attacker with database access copies a row
        conn.execute("UPDATE vault_secrets SET workspace_id = 'evil-corp'")
    with pytest.raises(VaultKeyMismatch, match="sealed for another workspace") as caught:
        vault.resolver("evil-corp")("API_KEY")
    assert value not in str(caught.value)


def test_key_file_is_created_with_mode_0600(db_path: Path) -> None:
    path = key_file_for(db_path)
    old_umask = os.umask(0)  # the mode must not depend on a permissive umask
    try:
        ring = load_keyring(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(path).primary_id == ring.primary_id  # created once, then reused
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_key_file_others_may_access_is_refused(db_path: Path, mode: int) -> None:
    path = key_file_for(db_path)
    load_keyring(path)
    path.chmod(mode)
    with pytest.raises(UserError, match="chmod 600") as caught:
        load_keyring(path)
    assert f"{mode:04o}" in str(caught.value)
    assert path.read_text().splitlines()[-1] not in str(caught.value)


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    load_keyring(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(UserError, match="not a symlink"):
        load_keyring(link)


def test_malformed_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"my-secret-but-not-fernet\n")
    os.close(fd)
    with pytest.raises(UserError, match="not a valid Fernet key") as caught:
        load_keyring(path)
    assert "my-secret-but-not-fernet" not in str(caught.value)


def test_first_start_race_creates_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race.key"
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        ids.append(load_keyring(path).primary_id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_environment_key_wins_over_the_key_file(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    key = Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV, key.decode())
    ring = load_keyring(key_file_for(db_path))
    assert ring.primary_id == key_id(key) and ring.path is None
    assert not key_file_for(db_path).exists()


@pytest.mark.parametrize("bad", ["not-a-key", "", " , ", "c2hvcnQ="])
def test_malformed_environment_key_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, bad: str
) -> None:
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(UserError, match=KEY_ENV) as caught:
        load_keyring(key_file_for(db_path))
    assert not bad.strip(" ,") or bad not in str(caught.value)


# -- rotation ------------------------------------------------------------------------------


def seed(vault: Vault, count: int) -> dict[tuple[str, str], str]:
    values = {}
    for i in range(count):
        actor = ALICE if i % 2 else MALLORY
        values[(actor.workspace_id, f"KEY_{i}")] = value = canary()
        vault.set_secret(actor, f"KEY_{i}", value)
    return values


def assert_all_readable(vault: Vault, values: dict[tuple[str, str], str]) -> None:
    for (workspace_id, name), value in values.items():
        assert vault.resolver(workspace_id)(name) == value


def test_rotation_reencrypts_every_secret(vault: Vault, sessions: Sessions, db_path: Path) -> None:
    values = seed(vault, 6)
    old_key = vault.keyring.material()[0]
    new_key = Fernet.generate_key()
    report = vault.rotate(new_key)
    assert report.reencrypted == 6 and report.key_id == key_id(new_key)
    for _ws, _name, token, kid in stored_rows(db_path):
        assert kid == key_id(new_key)
        with pytest.raises(InvalidToken):  # the old key no longer opens anything
            Fernet(old_key).decrypt(token)
        assert Fernet(new_key).decrypt(token)
    assert_all_readable(vault, values)
    reopened = Vault(sessions, load_keyring(key_file_for(db_path)))
    assert reopened.keyring.key_ids == (key_id(new_key), key_id(old_key))
    assert_all_readable(reopened, values)
    with pytest.raises(VaultKeyMismatch):
        Vault(sessions, Keyring([old_key])).resolver("acme")("KEY_1")
    assert stat.S_IMODE(key_file_for(db_path).stat().st_mode) == 0o600


def test_retiring_keys_after_rotation(vault: Vault, sessions: Sessions, db_path: Path) -> None:
    values = seed(vault, 4)
    old_id = vault.keyring.primary_id
    assert vault.retire_unused_keys() == ()  # the only key is the primary
    vault.rotate(Fernet.generate_key())
    assert vault.retire_unused_keys() == (old_id,)
    reopened = Vault(sessions, load_keyring(key_file_for(db_path)))
    assert old_id not in reopened.keyring.key_ids
    assert_all_readable(reopened, values)


def test_crash_mid_rotation_loses_nothing(
    vault: Vault, sessions: Sessions, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = seed(vault, 10)
    old_key = vault.keyring.material()[0]
    new_key = Fernet.generate_key()
    done = 0
    original = Vault._reencrypt

    def crash_after_half(self: Vault, *args: object) -> None:
        nonlocal done
        if done == 5:
            raise RuntimeError("simulated crash mid-rotation")
        original(self, *args)  # type: ignore[arg-type]
        done += 1

    monkeypatch.setattr(Vault, "_reencrypt", crash_after_half)
    with pytest.raises(RuntimeError, match="simulated crash"):
        vault.rotate(new_key)
    assert done == 5
    # all or nothing: every row is still under the old key, which still opens all of them
    assert {kid for *_rest, kid in stored_rows(db_path)} == {key_id(old_key)}
    assert_all_readable(Vault(sessions, Keyring([old_key])), values)
    # and a restart reads the key file (new key first, old kept): everything is readable
    restarted = Vault(sessions, load_keyring(key_file_for(db_path)))
    assert restarted.keyring.primary_id == key_id(new_key)
    assert_all_readable(restarted, values)
    monkeypatch.setattr(Vault, "_reencrypt", original)
    assert restarted.rotate(new_key).reencrypted == 10
    assert {kid for *_rest, kid in stored_rows(db_path)} == {key_id(new_key)}
    assert_all_readable(restarted, values)


def test_rotation_refuses_when_a_secret_does_not_decrypt(
    vault: Vault, db_path: Path, sessions: Sessions
) -> None:
    values = seed(vault, 3)
    with sqlite3.connect(db_path) as conn:  # one row was encrypted under a lost key
        stray = Fernet(Fernet.generate_key()).encrypt(b"x")
        conn.execute("UPDATE vault_secrets SET ciphertext = ? WHERE name = 'KEY_0'", (stray,))
    with pytest.raises(VaultKeyMismatch, match="'KEY_0'"):
        vault.rotate(Fernet.generate_key())
    del values[("evil-corp", "KEY_0")]
    assert_all_readable(vault, values)  # nothing re-encrypted, nothing lost


def test_running_process_follows_a_rotation_done_elsewhere(
    vault: Vault, sessions: Sessions, db_path: Path
) -> None:
    values = seed(vault, 3)
    cli = Vault(sessions, load_keyring(key_file_for(db_path)))  # `studio secrets rotate-key`
    cli.rotate(Fernet.generate_key())
    assert_all_readable(vault, values)  # the server reloads the changed key file
    vault.set_secret(ALICE, "LATER", "written-after-rotation")
    assert vault.keyring.primary_id == cli.keyring.primary_id
    assert cli.resolver("acme")("LATER") == "written-after-rotation"


def test_rotation_with_an_environment_key_needs_the_new_key_there_first(
    monkeypatch: pytest.MonkeyPatch, sessions: Sessions
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV, old.decode())
    vault = Vault(sessions, load_keyring(None))
    values = seed(vault, 2)
    with pytest.raises(UserError, match="NEW_KEY,OLD_KEY"):
        vault.rotate(new)
    monkeypatch.setenv(KEY_ENV, f"{new.decode()},{old.decode()}")  # restart with both
    restarted = Vault(sessions, load_keyring(None))
    assert restarted.rotate(new).reencrypted == 2
    assert restarted.retire_unused_keys() == (key_id(old),)
    monkeypatch.setenv(KEY_ENV, new.decode())
    assert_all_readable(Vault(sessions, load_keyring(None)), values)


# -- tenancy -------------------------------------------------------------------------------


def test_workspaces_are_isolated(vault: Vault) -> None:
    value = canary()
    vault.set_secret(ALICE, "API_KEY", value)
    with pytest.raises(NotFound) as caught:
        vault.resolver(MALLORY.workspace_id)("API_KEY")
    assert value not in str(caught.value)
    assert vault.list_secrets(MALLORY) == []
    with pytest.raises(NotFound):
        vault.delete_secret(MALLORY, "API_KEY")
    assert vault.resolver("acme")("API_KEY") == value  # untouched
    vault.set_secret(MALLORY, "API_KEY", "mallorys-own-value")  # same name, own row
    assert vault.resolver("acme")("API_KEY") == value
    assert vault.resolver("evil-corp")("API_KEY") == "mallorys-own-value"
    assert [s.name for s in vault.list_secrets(ALICE)] == ["API_KEY"]


# -- redaction, end to end -----------------------------------------------------------------


def test_resolved_values_are_redacted_from_logs(
    vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    value = canary()
    vault.set_secret(ALICE, "API_KEY", value)
    fresh = Vault(vault._sessions, vault.keyring)  # a process that has not seen it yet
    uninstall = install_log_redaction(fresh.redactor)
    try:
        resolved = fresh.resolver("acme")("API_KEY")
        with caplog.at_level(logging.INFO):
            logging.getLogger("components.tools.http").info("calling with key=%s", resolved)
            logging.getLogger("graphs.runs").warning(f"header Bearer {resolved}")
    finally:
        uninstall()
    assert value not in caplog.text
    assert caplog.text.count(REDACTED) == 2
    for record in caplog.records:
        assert value not in record.getMessage() and value not in repr(record.args)
