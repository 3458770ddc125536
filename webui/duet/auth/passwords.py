"""Passwords, hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommended
profile), always in a worker thread: a hash takes a good fraction of a second of CPU by design,
and on the event loop it would stall every answer streaming to everyone else."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher()
MAX_PASSWORD_CHARS = 1024


@cache
def dummy_hash() -> str:
    """A hash no password is checked against, so that an unknown name costs the same time as
    a wrong password (no one learns which names exist by timing sign-in)."""
    return HASHER.hash("duet: no such account")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


def verify_sync(password_hash: str | None, password: str) -> bool:
    try:
        return HASHER.verify(password_hash or dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (no such account), the same work, and False."""
    return await asyncio.to_thread(verify_sync, password_hash, password)


def password_problem(password: str, min_length: int) -> str | None:
    """What is wrong with a new password, for a person, or None."""
    if len(password) < min_length:
        return f"Passwords need at least {min_length} characters (DUET_MIN_PASSWORD_LENGTH)."
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Passwords are limited to {MAX_PASSWORD_CHARS} characters."
    return None
