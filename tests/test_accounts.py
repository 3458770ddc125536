"""Accounts: the rules of duet.auth.accounts on a real database, then the pages without a
session (/signup, /invite/{token}) and a person's own account page (/account)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from duet.auth import accounts
from duet.auth.accounts import AccountError
from duet.auth.sessions import token_hash
from duet.store import conversations, open_database, sessions, users
from duet.store.users import LOCAL_USER_ID

HASH = "not a real hash: these tests never sign in with it"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = open_database(tmp_path / "duet.sqlite3")
    yield db
    db.close()


def add_session(db: sqlite3.Connection, user_id: int, token: str) -> None:
    far = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    sessions.create_session(db, user_id, token_hash(token), far, "test", "127.0.0.1")


def test_the_first_account_is_an_admin_who_takes_over_the_local_user(
    store: sqlite3.Connection,
) -> None:
    conversations.create_conversation(store, LOCAL_USER_ID, "From local mode")
    with pytest.raises(AccountError, match="first one is an admin"):
        accounts.create_account(store, "bob", HASH, "user")
    admin = accounts.create_account(store, "ada", HASH, "admin")
    assert admin.id == LOCAL_USER_ID and admin.role == "admin" and admin.name == "ada"
    assert [c.title for c in conversations.list_conversations(store, admin.id)] == [
        "From local mode"
    ]
    # The second admin is an account of its own.
    other = accounts.create_account(store, "grace", HASH, "admin")
    assert other.id != LOCAL_USER_ID


def test_a_name_is_taken_whatever_its_case(store: sqlite3.Connection) -> None:
    accounts.create_account(store, "Ada", HASH, "admin")
    with pytest.raises(AccountError, match="taken") as refused:
        accounts.create_account(store, "ada", HASH, "user")
    assert refused.value.status == 409
    assert [u.name for u in users.list_users(store)] == ["Ada"]


@pytest.mark.parametrize(
    ("name", "password", "repeat", "expected"),
    [
        ("", "long enough password", "long enough password", "1 to 64 printable"),
        ("x" * 65, "long enough password", "long enough password", "1 to 64 printable"),
        ("tab\there", "long enough password", "long enough password", "printable"),
        ("ada", "long enough password", "long enough passw0rd", "differ"),
        ("ada", "short", "short", "at least 10"),
        ("ada", "long enough password", "long enough password", None),
    ],
)
def test_what_is_wrong_with_a_new_account(
    name: str, password: str, repeat: str, expected: str | None
) -> None:
    problem = accounts.new_account_problem(name, password, repeat, 10)
    assert (problem is None) if expected is None else (expected in (problem or ""))


def test_the_last_admin_can_be_neither_demoted_nor_disabled(store: sqlite3.Connection) -> None:
    ada = accounts.create_account(store, "ada", HASH, "admin")
    for change in (
        lambda: accounts.set_role(store, ada.id, "user"),
        lambda: accounts.set_disabled(store, ada.id, True),
    ):
        with pytest.raises(AccountError, match="ada is the last admin") as refused:
            change()
        assert refused.value.status == 409
    assert users.get_user(store, ada.id) == ada
    # With a second admin, either can go.
    bob = accounts.create_account(store, "bob", HASH, "user")
    assert accounts.set_role(store, bob.id, "admin").role == "admin"
    assert accounts.set_role(store, ada.id, "user").role == "user"
    with pytest.raises(AccountError, match="bob is the last admin"):
        accounts.set_disabled(store, bob.id, True)


def test_a_disabled_admin_does_not_count_as_one_left(store: sqlite3.Connection) -> None:
    ada = accounts.create_account(store, "ada", HASH, "admin")
    bob = accounts.create_account(store, "bob", HASH, "admin")
    accounts.set_disabled(store, ada.id, True)
    with pytest.raises(AccountError, match="bob is the last admin"):
        accounts.set_role(store, bob.id, "user")
    # Demoting the disabled one takes no admin away from anyone.
    assert accounts.set_role(store, ada.id, "user").role == "user"


def test_disabling_and_resetting_a_password_end_every_session(store: sqlite3.Connection) -> None:
    accounts.create_account(store, "ada", HASH, "admin")
    bob = accounts.create_account(store, "bob", HASH, "user")
    for change in (
        lambda: accounts.set_disabled(store, bob.id, True),
        lambda: accounts.reset_password(store, bob.id, "another hash"),
    ):
        add_session(store, bob.id, "one")
        add_session(store, bob.id, "two")
        change()
        assert sessions.list_sessions(store, bob.id) == []
    reset = users.get_user(store, bob.id)
    assert reset is not None and reset.must_change_password
    assert reset.password_hash == "another hash"


def test_approval_and_rejection_are_for_pending_accounts_only(store: sqlite3.Connection) -> None:
    ada = accounts.create_account(store, "ada", HASH, "admin")
    carol = accounts.create_account(store, "carol", HASH, "pending")
    dave = accounts.create_account(store, "dave", HASH, "pending")
    assert accounts.approve(store, carol.id).role == "user"
    for change in (accounts.approve, accounts.reject):
        with pytest.raises(AccountError, match="not waiting"):
            change(store, carol.id)
        with pytest.raises(AccountError, match="not waiting"):
            change(store, ada.id)
    with pytest.raises(AccountError, match="approve them first"):
        accounts.set_role(store, dave.id, "admin")
    accounts.reject(store, dave.id)
    assert users.find_user(store, "dave") is None
    with pytest.raises(AccountError) as gone:
        accounts.approve(store, dave.id)
    assert gone.value.status == 404


def test_the_local_user_is_not_an_account(store: sqlite3.Connection) -> None:
    with pytest.raises(AccountError) as refused:
        accounts.set_disabled(store, LOCAL_USER_ID, True)
    assert refused.value.status == 404


def test_signup_stays_closed_until_an_admin_exists_and_opens_it(
    store: sqlite3.Connection,
) -> None:
    assert accounts.signup_policy(store) == "closed"
    # A value left in a database with no accounts must not let "the first to sign up" in.
    accounts.set_signup_policy(store, "open")
    assert accounts.signup_policy(store) == "closed"
    accounts.create_account(store, "ada", HASH, "admin")
    assert accounts.signup_policy(store) == "open"
    accounts.set_signup_policy(store, "closed")
    assert accounts.signup_policy(store) == "closed"


def test_an_invite_makes_one_account_with_its_role_before_it_expires(
    store: sqlite3.Connection,
) -> None:
    ada = accounts.create_account(store, "ada", HASH, "admin")
    now = datetime.now(UTC)
    made = accounts.create_invite(store, ada.id, "admin", 24, now)
    # Only the token's hash is kept.
    assert made.token not in str([tuple(row) for row in store.execute("SELECT * FROM invites")])
    user = accounts.accept_invite(store, made.token, "grace", HASH, now)
    assert user.role == "admin"
    with pytest.raises(AccountError, match="has been used") as again:
        accounts.accept_invite(store, made.token, "mallory", HASH, now)
    assert again.value.status == 404
    assert users.find_user(store, "mallory") is None

    later = accounts.create_invite(store, ada.id, "user", 1, now)
    an_hour_on = now + timedelta(hours=1)
    with pytest.raises(AccountError, match="expired"):
        accounts.accept_invite(store, later.token, "late", HASH, an_hour_on)
    assert accounts.accept_invite(
        store, later.token, "early", HASH, an_hour_on - timedelta(seconds=1)
    )


def test_an_invite_for_a_taken_name_is_not_spent(store: sqlite3.Connection) -> None:
    ada = accounts.create_account(store, "ada", HASH, "admin")
    now = datetime.now(UTC)
    made = accounts.create_invite(store, ada.id, "user", 24, now)
    with pytest.raises(AccountError, match="taken"):
        accounts.accept_invite(store, made.token, "ADA", HASH, now)
    assert accounts.accept_invite(store, made.token, "bob", HASH, now).name == "bob"


@pytest.mark.parametrize("hours", [0, accounts.MAX_INVITE_HOURS + 1])
def test_an_invite_lasts_an_hour_to_a_month(store: sqlite3.Connection, hours: int) -> None:
    ada = accounts.create_account(store, "ada", HASH, "admin")
    with pytest.raises(AccountError, match="1 to 720 hours"):
        accounts.create_invite(store, ada.id, "user", hours, datetime.now(UTC))
