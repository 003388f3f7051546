"""Password hashing with argon2id (argon2-cffi), and the password length policy.

`Passwords.verify` costs the same whether or not there is a stored hash: without one it
verifies against a dummy hash made with the same parameters, so the time a login takes does
not reveal whether an e-mail address has an account.
"""

from __future__ import annotations

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "Passwords", "check_password"]

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from components.errors import UserError

MIN_LENGTH = 12
MAX_LENGTH = 1024


def check_password(password: str) -> None:
    """Refuse passwords a person should change before they are stored."""
    if len(password) < MIN_LENGTH:
        raise UserError(f"the password is too short; use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise UserError(f"the password is too long; use at most {MAX_LENGTH} characters")


class Passwords:
    """argon2id hashing; pass a `PasswordHasher` with other parameters to tune (or test) it."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    @property
    def _dummy(self) -> str:
        """A hash with the same parameters, made on first use (it costs an argon2 run)."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(24))
        return self._dummy_hash

    def hash(self, password: str) -> str:
        check_password(password)
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; always runs one argon2 verification."""
        usable = stored_hash is not None and len(password) <= MAX_LENGTH
        target = stored_hash if usable and stored_hash else self._dummy
        candidate = password if len(password) <= MAX_LENGTH else ""
        try:
            matched = self.hasher.verify(target, candidate)
        except (VerificationError, InvalidHashError):
            return False
        return usable and matched

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
