"""`duet users`: accounts from the shell of the machine that holds the database.

Making the first admin here is free of races on an open network (no one else can reach this
shell), and so is an admin's recovery when no admin can sign in. Passwords are asked twice
without echo and never appear in arguments, the shell's history or the process list.
"""

from __future__ import annotations

import asyncio
import getpass
import sqlite3
import sys
from collections.abc import Callable

from duet.auth import accounts
from duet.auth.accounts import AccountError
from duet.auth.passwords import hash_password
from duet.settings import Settings
from duet.store import StorageError, open_database, users

Ask = Callable[[str], str]
# Tries at typing a new password twice alike, and long enough, before giving up.
PASSWORD_TRIES = 3


def say(message: str) -> None:
    print(f"duet users: {message}", file=sys.stderr)


def open_store(settings: Settings) -> sqlite3.Connection | None:
    try:
        return open_database(settings.database)
    except StorageError as error:
        say(str(error))
        return None


def ask_new_password(ask: Ask, min_length: int) -> str | None:
    for _ in range(PASSWORD_TRIES):
        password = ask("Password: ")
        repeat = ask("The password again: ")
        problem = accounts.new_password_problem(password, repeat, min_length)
        if problem is None:
            return password
        say(problem)
    return None


def create_user(
    name: str, admin: bool, settings: Settings | None = None, ask: Ask | None = None
) -> int:
    """Make an account; the first admin of a database with no accounts takes over the local
    user (and its conversations). Returns the exit status."""
    settings = settings or Settings.from_env()
    name = name.strip()
    problem = accounts.name_problem(name)
    if problem:
        say(problem)
        return 2
    db = open_store(settings)
    if db is None:
        return 1
    try:
        # Said before the password is asked for; create_account checks both again.
        if not admin and not users.accounts_exist(db):
            say("there are no accounts yet: the first one is an admin (add --admin).")
            return 1
        if users.find_user(db, name) is not None:
            say(f"the name {name!r} is taken (see `duet users list`).")
            return 1
        password = ask_new_password(ask or getpass.getpass, settings.min_password_length)
        if password is None:
            return 1
        role: users.Role = "admin" if admin else "user"
        try:
            user = accounts.create_account(db, name, asyncio.run(hash_password(password)), role)
        except AccountError as error:
            say(error.message)
            return 1
        print(f"{user.name} can now sign in as {'an admin' if admin else 'a user'}.")
        if settings.mode != "accounts":
            print("Sign-in begins once Duet runs with DUET_MODE=accounts (docs/team.md).")
        return 0
    finally:
        db.close()


def list_users(settings: Settings | None = None) -> int:
    settings = settings or Settings.from_env()
    db = open_store(settings)
    if db is None:
        return 1
    try:
        everyone = users.list_users(db)
    finally:
        db.close()
    if not everyone:
        print("No accounts yet: make the first admin with `duet users create NAME --admin`.")
        return 0
    width = max(len(user.name) for user in everyone)
    for user in everyone:
        notes = ["disabled"] * user.disabled + ["must change password"] * user.must_change_password
        created = user.created_at[:16].replace("T", " ")
        line = f"{user.name:<{width}}  {user.role:<7}  created {created} UTC"
        print(line + "".join(f"  ({note})" for note in notes))
    return 0


def reset_password(name: str, settings: Settings | None = None, ask: Ask | None = None) -> int:
    """Set a new password for an account, which its holder must change at their next sign-in;
    every session of the account ends. Returns the exit status."""
    settings = settings or Settings.from_env()
    db = open_store(settings)
    if db is None:
        return 1
    try:
        user = users.find_user(db, name.strip())
        if user is None or not user.has_password:
            say(f"there is no account named {name!r} (see `duet users list`).")
            return 1
        password = ask_new_password(ask or getpass.getpass, settings.min_password_length)
        if password is None:
            return 1
        accounts.reset_password(db, user.id, asyncio.run(hash_password(password)))
        print(f"{user.name}'s password is reset; they choose a new one when they sign in.")
        if user.disabled:
            print(f"{user.name}'s account is disabled: an admin enables it on /admin.")
        return 0
    finally:
        db.close()
