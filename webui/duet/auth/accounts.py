"""Accounts and what admins do to them: making one (the first admin takes over the local user),
approving, rejecting, disabling, promoting and demoting (never the last admin), resetting a
password, the signup policy, and invite links.

The pages and `duet users` both call these. Each change runs in one transaction, so the check
that allows it ("is this the last admin?", "is this invite still open?") and the change itself
cannot be split by another request. Passwords arrive already hashed (`duet.auth.passwords`).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from duet.auth.passwords import password_problem
from duet.auth.sessions import iso, token_hash
from duet.settings import Settings
from duet.store import invites, sessions, users
from duet.store.db import transaction
from duet.store.invites import Invite, InviteRole
from duet.store.sessions import Session
from duet.store.users import Role, User

MAX_NAME_CHARS = 64
SIGNUP_KEY = "signup_policy"
SignupPolicy = Literal["closed", "open"]
SIGNUP_POLICIES: tuple[SignupPolicy, ...] = ("closed", "open")
# An invite lasts from an hour to a month.
MAX_INVITE_HOURS = 720


class AccountError(Exception):
    """A change to an account that cannot be made; `status` is the HTTP status a page answers
    with, `message` says why, for a person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def name_problem(name: str) -> str | None:
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return f"A name is 1 to {MAX_NAME_CHARS} printable characters."
    return None


def new_password_problem(password: str, repeat: str, min_length: int) -> str | None:
    """What is wrong with a new password typed twice, or None."""
    if password != repeat:
        return "The two passwords differ."
    return password_problem(password, min_length)


def new_account_problem(name: str, password: str, repeat: str, min_length: int) -> str | None:
    """What is wrong with a name and a new password typed twice, or None."""
    return name_problem(name) or new_password_problem(password, repeat, min_length)


def make_first_admin(db: sqlite3.Connection, name: str, password_hash: str) -> User:
    """The first admin takes over the local user, and with it every conversation and run of a
    database that was used in local mode."""
    claimed = users.claim_local_user(db, name, password_hash)
    return claimed or users.create_user(db, name, password_hash, "admin")


def create_account(
    db: sqlite3.Connection, name: str, password_hash: str, role: Role, must_change: bool = False
) -> User:
    """A new account. In a database with no accounts yet it must be an admin's (an instance
    where no one can approve anyone would be stuck), and it takes over the local user."""
    with transaction(db):
        if not users.accounts_exist(db):
            if role != "admin":
                raise AccountError(409, "There are no accounts yet: the first one is an admin.")
            user = make_first_admin(db, name, password_hash)
        else:
            if users.find_user(db, name) is not None:
                raise AccountError(409, f"The name {name!r} is taken: choose another.")
            user = users.create_user(db, name, password_hash, role)
        if must_change:
            users.set_password(db, user.id, password_hash, must_change=True)
    return users.get_user(db, user.id) or user


def account(db: sqlite3.Connection, user_id: int) -> User:
    """The account `user_id` (never the local user of a private instance, who has none)."""
    user = users.get_user(db, user_id)
    if user is None or not user.has_password:
        raise AccountError(404, "That account was not found.")
    return user


def is_last_admin(db: sqlite3.Connection, user: User) -> bool:
    """Whether `user` is the only admin left who can sign in."""
    if user.role != "admin" or user.disabled or not user.has_password:
        return False
    return users.count_admins(db) <= 1


def refuse_if_last_admin(db: sqlite3.Connection, user: User, change: str) -> None:
    if is_last_admin(db, user):
        raise AccountError(
            409,
            f"{user.name} is the last admin, so they cannot be {change}: make someone else an "
            "admin first.",
        )


def approve(db: sqlite3.Connection, user_id: int) -> User:
    with transaction(db):
        user = account(db, user_id)
        if user.role != "pending":
            raise AccountError(409, f"{user.name} is not waiting for approval.")
        users.set_role(db, user.id, "user")
    return account(db, user_id)


def reject(db: sqlite3.Connection, user_id: int) -> User:
    """Remove an account that is waiting for approval (the name is free again)."""
    with transaction(db):
        user = account(db, user_id)
        if user.role != "pending" or not users.delete_pending_user(db, user.id):
            raise AccountError(409, f"{user.name} is not waiting for approval.")
    return user


def set_disabled(db: sqlite3.Connection, user_id: int, disabled: bool) -> User:
    """Disable or enable an account; disabling ends every session of it at once."""
    with transaction(db):
        user = account(db, user_id)
        if disabled:
            refuse_if_last_admin(db, user, "disabled")
            sessions.delete_user_sessions(db, user.id)
        users.set_disabled(db, user.id, disabled)
    return account(db, user_id)


def set_role(db: sqlite3.Connection, user_id: int, role: Literal["admin", "user"]) -> User:
    """Promote a user to admin, or demote an admin to user (pending accounts are approved
    first)."""
    with transaction(db):
        user = account(db, user_id)
        if user.role == "pending":
            raise AccountError(409, f"{user.name} is waiting for approval: approve them first.")
        if role == "user":
            refuse_if_last_admin(db, user, "demoted")
        users.set_role(db, user.id, role)
    return account(db, user_id)


def reset_password(db: sqlite3.Connection, user_id: int, password_hash: str) -> User:
    """Set a password the person must change at their next sign-in, and end every session of
    the account (whoever holds one now signs in with the new password)."""
    with transaction(db):
        user = account(db, user_id)
        users.set_password(db, user.id, password_hash, must_change=True)
        sessions.delete_user_sessions(db, user.id)
    return account(db, user_id)


def temporary_password() -> str:
    """A password an admin hands over once; its holder must choose their own at sign-in."""
    return secrets.token_urlsafe(12)


def signup_policy(db: sqlite3.Connection) -> SignupPolicy:
    """`closed` (the default: admins make accounts or send invites) or `open` (anyone who
    reaches Duet signs up and waits for an admin's approval). Never open before the first
    admin exists: that would be "the first to sign up wins"."""
    if users.instance_value(db, SIGNUP_KEY) == "open" and users.accounts_exist(db):
        return "open"
    return "closed"


def set_signup_policy(db: sqlite3.Connection, policy: SignupPolicy) -> None:
    users.set_instance_value(db, SIGNUP_KEY, policy)


def live_sessions(
    db: sqlite3.Connection, settings: Settings, user_id: int | None = None
) -> list[Session]:
    """The sessions that still let someone in (of one user, or everyone's), newest activity
    first. Expired ones are deleted first: a session's own cookie deletes it only if it comes
    back."""
    now = datetime.now(UTC)
    idle_before = now - timedelta(hours=settings.session_idle_hours)
    sessions.delete_expired(db, iso(idle_before), iso(now))
    return sessions.list_sessions(db, user_id)


@dataclass(frozen=True, slots=True)
class NewInvite:
    invite: Invite
    token: str  # the link's secret, shown to the admin once and never stored


def create_invite(
    db: sqlite3.Connection, created_by: int, role: InviteRole, hours: int, now: datetime
) -> NewInvite:
    if not 1 <= hours <= MAX_INVITE_HOURS:
        raise AccountError(422, f"An invite lasts 1 to {MAX_INVITE_HOURS} hours.")
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=hours)
    invite = invites.create_invite(db, token_hash(token), created_by, role, iso(now), iso(expires))
    return NewInvite(invite, token)


def open_invite(db: sqlite3.Connection, token: str, now: datetime) -> Invite:
    invite = invites.find_open_invite(db, token_hash(token), iso(now))
    if invite is None:
        raise AccountError(404, "This invite link has been used, has expired, or is not one.")
    return invite


def accept_invite(
    db: sqlite3.Connection, token: str, name: str, password_hash: str, now: datetime
) -> User:
    """Make the account an open invite is for, with the invite's role; the invite is spent in
    the same transaction, so two people opening one link make one account."""
    with transaction(db):
        invite = open_invite(db, token, now)
        user = create_account(db, name, password_hash, invite.role)
        if not invites.mark_used(db, invite.id, user.id, iso(now)):
            raise AccountError(404, "This invite link has been used, has expired, or is not one.")
    return user
