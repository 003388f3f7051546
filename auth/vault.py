"""The secrets vault: values encrypted at rest, resolved by name only when a tool needs them.

Keys. The vault keys are Fernet keys. They come from ``STUDIO_SECRET_KEY`` (one key, or
several separated by commas, newest first) or else from a key file (`key_file_for` puts it
beside the database) that is created on first start with mode 0600 and refused when group
or others have any permission on it. The first key encrypts; the others only decrypt. Each
row stores the id of the key that encrypted it (a fingerprint, not the key).

Each ciphertext also seals the workspace and the name of its row, so a row copied into
another workspace by someone with database access does not decrypt there.

Rotation, step by step (`studio` CLI wraps it):

1. ``Vault.rotate(new_key)``. With a key file, the new key is first written to the file in
   front of the old ones (atomically: temp file, fsync, rename), then every secret of every
   workspace is re-encrypted in one transaction. A crash before the commit leaves all rows
   under the old key, which the file still holds; a crash after it leaves them under the
   new key, which the file already holds: no order of failures loses a secret. With
   ``STUDIO_SECRET_KEY``, set it to ``NEW,OLD`` and restart first (the vault cannot persist
   an environment variable), then rotate.
2. Restart the other studio processes (a running process also reloads a changed key file
   when it meets a key id it does not know, or before it encrypts).
3. ``Vault.retire_unused_keys()`` drops from the key file the keys no row uses any more
   (with ``STUDIO_SECRET_KEY``: it names them, remove them from the variable yourself).
Back up the key file together with the database: a database without its key is lost.

Secrets must be at least `MIN_SECRET_LENGTH` (6) characters: shorter values are not
redacted (see `auth.redact`), so the vault refuses them.
"""

from __future__ import annotations

__all__ = [
    "KEY_ENV",
    "Keyring",
    "RotationReport",
    "Secret",
    "SecretInfo",
    "Vault",
    "VaultKeyMismatch",
    "key_file_for",
    "key_id",
    "load_keyring",
]

import hashlib
import json
import os
import re
import secrets
import stat
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import (
    CursorResult,
    DateTime,
    LargeBinary,
    Select,
    String,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from auth.base import ActorLike, Base, utcnow
from auth.redact import MIN_SECRET_LENGTH, Redactor
from components.base import SecretResolver
from components.errors import NotFound, StudioError, UserError

KEY_ENV = "STUDIO_SECRET_KEY"
SECRET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_SECRET_BYTES = 64_000
_KEY_FILE_HEADER = (
    "# Agent Studio vault keys (Fernet), newest first; older keys only decrypt.\n"
    "# Keep this file secret (mode 0600) and back it up with the database.\n"
)
_GENERATE_HINT = (
    "generate one with: python -c "
    '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class VaultKeyMismatch(StudioError):
    """A secret does not decrypt with the vault's keys: the key is wrong, or data altered."""


class Secret(Base):
    """One encrypted secret. The ciphertext seals (workspace, name, value)."""

    __tablename__ = "vault_secrets"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    secret_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    updated_by: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    key_id: str
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str


@dataclass(frozen=True, slots=True)
class RotationReport:
    key_id: str
    reencrypted: int


def key_id(key: bytes) -> str:
    """A key's public fingerprint (16 hex digits)."""
    return hashlib.sha256(b"agent-studio vault key\0" + key).hexdigest()[:16]


def key_file_for(db_path: Path) -> Path:
    """The vault key file beside the database: studio.db → studio-vault.key."""
    return db_path.with_name(f"{db_path.stem}-vault.key")


def _fernet(key: bytes | str, source: str) -> tuple[bytes, Fernet]:
    raw = key.encode() if isinstance(key, str) else key
    try:
        return raw, Fernet(raw)
    except (ValueError, TypeError):
        raise UserError(
            f"{source} is not a valid Fernet key (32 url-safe base64-encoded bytes); "
            + _GENERATE_HINT
        ) from None


class Keyring:
    """Fernet keys, the primary (encrypting) one first. Immutable."""

    __slots__ = ("_fernets", "_keys", "path", "source", "stamp")

    def __init__(
        self,
        keys: Sequence[bytes | str],
        *,
        path: Path | None = None,
        source: str = "the vault key",
        stamp: tuple[int, int, int] | None = None,
    ) -> None:
        if not keys:
            raise UserError(f"{source} holds no key; {_GENERATE_HINT}")
        parsed = [_fernet(key, source) for key in keys]
        self._keys = {key_id(raw): raw for raw, _ in parsed}
        self._fernets = {key_id(raw): fernet for raw, fernet in parsed}
        self.path = path
        self.source = source
        self.stamp = stamp

    @property
    def primary_id(self) -> str:
        return next(iter(self._keys))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """(key id, token) under the primary key."""
        return self.primary_id, self._fernets[self.primary_id].encrypt(plaintext)

    def decrypt(self, token: bytes, token_key_id: str) -> bytes | None:
        """The plaintext, or None when no key of this ring opens the token."""
        known = self._fernets.get(token_key_id)
        candidates = [known] if known else list(self._fernets.values())
        try:
            return MultiFernet(candidates).decrypt(token)
        except InvalidToken:
            return None

    def with_primary(self, key: bytes | str) -> Keyring:
        raw, _ = _fernet(key, "the new vault key")
        rest = [k for k in self._keys.values() if k != raw]
        return Keyring([raw, *rest], path=self.path, source=self.source, stamp=self.stamp)

    def without(self, ids: set[str]) -> Keyring:
        kept = [raw for kid, raw in self._keys.items() if kid not in ids]
        return Keyring(kept, path=self.path, source=self.source, stamp=self.stamp)

    def material(self) -> tuple[bytes, ...]:
        return tuple(self._keys.values())


def load_keyring(
    key_file: Path | str | None, *, environ: Mapping[str, str] | None = None
) -> Keyring:
    """The vault keys: ``STUDIO_SECRET_KEY`` if set, else the key file (created if absent).

    Fails closed with a `UserError`: malformed keys, a key file group or others may access,
    a symlink or non-regular key file, or neither source given.
    """
    env = os.environ if environ is None else environ
    if KEY_ENV in env:
        keys = [part.strip() for part in env[KEY_ENV].split(",") if part.strip()]
        return Keyring(keys, source=KEY_ENV)
    if key_file is None:
        raise UserError(f"no vault key: set {KEY_ENV} or give a key file path")
    path = Path(key_file)
    if not path.exists() and not path.is_symlink():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    """Create the key file with mode 0600 and a fresh key; first writer wins (link is
    atomic), so two processes starting at once end up with one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = _KEY_FILE_HEADER + Fernet.generate_key().decode() + "\n"
    tmp = _write_private(path, content)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    _fsync_dir(path.parent)


def _write_private(path: Path, content: str) -> Path:
    """A new 0600 file beside `path` (O_CREAT|O_EXCL), written and fsynced."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    return tmp


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> Keyring:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UserError(
            f"vault key file {str(path)!r} cannot be opened ({exc.strerror}); "
            "it must be a regular file, not a symlink"
        ) from None
    with os.fdopen(fd, "r", encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"vault key file {str(path)!r} is not a regular file")
        if info.st_mode & 0o077:
            raise UserError(
                f"vault key file {str(path)!r} has mode {stat.S_IMODE(info.st_mode):04o}: "
                f"group or others may access it; run `chmod 600 {path}` and check who "
                "could have read it"
            )
        text = handle.read()
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
    return Keyring(keys, path=path, source=f"vault key file {str(path)!r}", stamp=stamp)


def _write_key_file(ring: Keyring) -> Keyring:
    """Persist `ring` to its key file atomically (temp file, fsync, rename)."""
    assert ring.path is not None
    content = _KEY_FILE_HEADER + "".join(f"{raw.decode()}\n" for raw in ring.material())
    tmp = _write_private(ring.path, content)
    os.replace(tmp, ring.path)
    _fsync_dir(ring.path.parent)
    return _read_key_file(ring.path)


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _seal(workspace_id: str, name: str, value: str) -> bytes:
    return json.dumps({"w": workspace_id, "n": name, "v": value}).encode()


def _show(name: str) -> str:
    return repr(name[:80])


def _aware(at: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _info(row: Secret) -> SecretInfo:
    created, updated = _aware(row.created_at), _aware(row.updated_at)
    return SecretInfo(row.name, row.key_id, created, updated, row.created_by, row.updated_by)


OnUse = Callable[[str, str], object]
OnChange = Callable[[ActorLike, str, str], object]


class Vault:
    """Per-workspace secrets. Authorization (``secret:manage``, ``secret:use``) is the
    caller's job; every method here scopes by the actor's workspace.

    `on_use(workspace_id, name)` runs each time a resolver returns a value and
    `on_change(actor, action, name)` after each create/update/delete (action is
    ``secret.created`` / ``secret.updated`` / ``secret.deleted``): wire both to the audit
    log. An exception from either propagates: a use that cannot be audited does not happen.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keyring: Keyring,
        *,
        redactor: Redactor | None = None,
        on_use: OnUse | None = None,
        on_change: OnChange | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self.redactor = redactor if redactor is not None else Redactor()
        self._on_use = on_use
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.RLock()

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def _fresh_keyring(self) -> Keyring:
        """The keyring, reloaded when its key file changed (another process rotated)."""
        ring = self._keyring
        if ring.path is not None and _file_stamp(ring.path) != ring.stamp:
            self._keyring = ring = _read_key_file(ring.path)
        return ring

    def set_secret(self, actor: ActorLike, name: str, value: str) -> SecretInfo:
        """Create or replace the secret `name` in the actor's workspace."""
        _check_name(name)
        _check_value(name, value)
        self.redactor.register(value)
        with self._lock:
            for _attempt in range(3):
                try:
                    info, action = self._upsert(actor, name, value)
                    break
                except IntegrityError:  # created concurrently: update it instead
                    continue
            else:
                raise StudioError(f"secret {_show(name)} changed concurrently: try again")
        if self._on_change:
            self._on_change(actor, action, name)
        return info

    def _upsert(self, actor: ActorLike, name: str, value: str) -> tuple[SecretInfo, str]:
        ring = self._fresh_keyring()
        kid, token = ring.encrypt(_seal(actor.workspace_id, name, value))
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.scalar(_by_name(actor.workspace_id, name))
            action = "secret.updated"
            if row is None:
                action = "secret.created"
                row = Secret(
                    secret_id=str(uuid.uuid4()),
                    workspace_id=actor.workspace_id,
                    name=name,
                    created_at=now,
                    created_by=actor.user_id,
                )
                session.add(row)
            row.ciphertext, row.key_id = token, kid
            row.updated_at, row.updated_by = now, actor.user_id
            session.flush()
            return _info(row), action

    def delete_secret(self, actor: ActorLike, name: str) -> None:
        """Delete a secret of the actor's workspace; `NotFound` if it has none by that name."""
        statement = delete(Secret).where(
            Secret.workspace_id == actor.workspace_id, Secret.name == name
        )
        with self._sessions.begin() as session:
            gone = cast(CursorResult[Any], session.execute(statement)).rowcount
        if not gone:
            raise NotFound(f"secret {_show(name)} not found in this workspace")
        if self._on_change:
            self._on_change(actor, "secret.deleted", name)

    def list_secrets(self, actor: ActorLike) -> list[SecretInfo]:
        """Names and metadata of the actor's workspace's secrets, by name; never values."""
        query = select(Secret).where(Secret.workspace_id == actor.workspace_id)
        with self._sessions() as session:
            return [_info(row) for row in session.scalars(query.order_by(Secret.name))]

    def resolver(self, workspace_id: str) -> SecretResolver:
        """A `SecretResolver` for one workspace: each call reads and decrypts at that moment."""

        def resolve(name: str) -> str:
            return self._resolve(workspace_id, name)

        return resolve

    def _resolve(self, workspace_id: str, name: str) -> str:
        with self._sessions() as session:
            row = session.scalar(_by_name(workspace_id, name))
            if row is None:
                raise NotFound(
                    f"secret {_show(name)} is not set in this workspace: add it with "
                    "`studio secrets set` or on the workspace's secrets page"
                )
            value = self._open(row)
        self.redactor.register(value)
        if self._on_use:
            self._on_use(workspace_id, name)
        return value

    def _open(self, row: Secret) -> str:
        """Decrypt a row and check it was sealed for its own workspace and name."""
        ring = self._keyring
        plain = ring.decrypt(row.ciphertext, row.key_id)
        if plain is None and row.key_id not in ring.key_ids:
            plain = self._fresh_keyring().decrypt(row.ciphertext, row.key_id)
        if plain is None:
            raise VaultKeyMismatch(
                f"secret {_show(row.name)} cannot be decrypted: the vault key does not match "
                f"the key it was encrypted with (key id {row.key_id}), or the stored value "
                f"was altered; start the studio with the original {KEY_ENV} or key file"
            )
        sealed = json.loads(plain)
        if (sealed.get("w"), sealed.get("n")) != (row.workspace_id, row.name):
            raise VaultKeyMismatch(
                f"secret {_show(row.name)} was sealed for another workspace or name: "
                "the database was altered; set the secret again"
            )
        value: str = sealed["v"]
        return value

    def register_all(self) -> int:
        """Teach the redactor every stored value (call at start-up); fails closed with
        `VaultKeyMismatch` when a secret does not decrypt, i.e. the key is wrong."""
        with self._sessions() as session:
            values = [self._open(row) for row in session.scalars(select(Secret))]
        self.redactor.register_many(values)
        return len(values)

    def rotate(self, new_key: bytes | str) -> RotationReport:
        """Make `new_key` the primary key and re-encrypt every secret in one transaction.

        See the module docstring for the procedure. Nothing is re-encrypted if any secret
        fails to decrypt (`VaultKeyMismatch`, and the transaction rolls back).
        """
        with self._lock:
            ring = self._fresh_keyring().with_primary(new_key)
            if ring.path is not None:
                ring = _write_key_file(ring)
            elif ring.primary_id not in self._keyring.key_ids:
                raise UserError(
                    f"the vault keys come from {KEY_ENV}: set it to 'NEW_KEY,OLD_KEY' (new "
                    "first) and restart, then rotate; the vault cannot change the variable"
                )
            self._keyring = ring
            with self._sessions.begin() as session:
                rows = session.scalars(select(Secret).with_for_update()).all()
                for row in rows:
                    self._reencrypt(session, row, ring)
        return RotationReport(ring.primary_id, len(rows))

    def _reencrypt(self, session: Session, row: Secret, ring: Keyring) -> None:
        """Re-encrypt one row; compare-and-set, so a value set meanwhile is not undone."""
        for _attempt in range(3):
            kid, token = ring.encrypt(_seal(row.workspace_id, row.name, self._open(row)))
            statement = (
                update(Secret)
                .where(Secret.secret_id == row.secret_id, Secret.ciphertext == row.ciphertext)
                .values(ciphertext=token, key_id=kid)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], session.execute(statement)).rowcount:
                return
            fresh = session.scalar(
                select(Secret)
                .where(Secret.secret_id == row.secret_id)
                .execution_options(populate_existing=True)
            )
            if fresh is None:  # deleted meanwhile
                return
            row = fresh
        raise StudioError(f"secret {_show(row.name)} kept changing during rotation: rotate again")

    def retire_unused_keys(self) -> tuple[str, ...]:
        """Drop the keys no secret uses any more (never the primary); returns their ids.

        Run it after every studio process has restarted with the new key. With
        ``STUDIO_SECRET_KEY`` nothing is changed: remove the returned ids' keys yourself.
        """
        with self._lock:
            ring = self._fresh_keyring()
            with self._sessions() as session:
                used = set(session.scalars(select(Secret.key_id).group_by(Secret.key_id)))
            unused = {kid for kid in ring.key_ids[1:] if kid not in used}
            if unused and ring.path is not None:
                self._keyring = _write_key_file(ring.without(unused))
            return tuple(kid for kid in ring.key_ids if kid in unused)

    def count(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Secret)) or 0)


def _by_name(workspace_id: str, name: str) -> Select[Secret]:
    return select(Secret).where(Secret.workspace_id == workspace_id, Secret.name == name)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
        raise UserError(
            f"secret name {_show(str(name))} is invalid: use a letter, then letters, digits "
            "or '_' (at most 64)"
        )


def _check_value(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise UserError(f"secret {_show(name)} must be text")
    if len(value) < MIN_SECRET_LENGTH:
        raise UserError(
            f"secret {_show(name)} is shorter than {MIN_SECRET_LENGTH} characters: values "
            "that short cannot be redacted from logs reliably; use a longer value"
        )
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise UserError(f"secret {_show(name)} is larger than {MAX_SECRET_BYTES} bytes")
