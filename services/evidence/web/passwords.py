"""Dashboard passwords: Argon2id hashes (argon2-cffi's defaults, RFC 9106's second
recommended profile), checked off the event loop since each check takes tens of milliseconds."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12

_hasher = PasswordHasher()
# Checked against when the account name is unknown, so that a wrong name takes as long to
# refuse as a wrong password (the time would tell which names exist).
_NO_ACCOUNT = _hasher.hash("no account has this password")


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if password.strip() != password:
        return "a password cannot begin or end with spaces"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _matches(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _NO_ACCOUNT, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one hashed; ``None`` (no such account) never matches but
    costs the same."""
    return await asyncio.to_thread(_matches, password_hash, password)
