"""`duet users create | list | reset-password`: accounts from the shell, on a real database."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from duet.auth import users_command
from duet.auth.passwords import verify_sync
from duet.cli import main
from duet.settings import Settings
from duet.store import conversations, open_database, sessions, users
from duet.store.users import LOCAL_USER_ID

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as `duet users` reads them: from the environment."""
    monkeypatch.setenv("DUET_DATABASE", str(tmp_path / "duet.sqlite3"))
    monkeypatch.setenv("DUET_MIN_PASSWORD_LENGTH", "10")
    return Settings.from_env()


def typed(*answers: str) -> Iterator[str]:
    return iter(answers)


def patch_getpass(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """getpass answers these in turn; returns the prompts it was shown."""
    prompts: list[str] = []
    replies = typed(*answers)

    def fake(prompt: str = "Password: ") -> str:
        prompts.append(prompt)
        return next(replies)

    monkeypatch.setattr(getpass, "getpass", fake)
    return prompts


def user_named(settings: Settings, name: str) -> users.User | None:
    db = open_database(settings.database)
    try:
        return users.find_user(db, name)
    finally:
        db.close()


def test_the_first_admin_takes_over_the_local_users_conversations(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = open_database(settings.database)
    conversations.create_conversation(db, LOCAL_USER_ID, "Kept from local mode")
    db.close()
    prompts = patch_getpass(monkeypatch, PASSWORD, PASSWORD)
    assert main(["users", "create", "ada", "--admin"]) == 0
    assert prompts == ["Password: ", "The password again: "]
    ada = user_named(settings, "ada")
    assert ada is not None and ada.role == "admin" and ada.id == LOCAL_USER_ID
    assert verify_sync(ada.password_hash, PASSWORD)
    assert PASSWORD not in capsys.readouterr().out
    db = open_database(settings.database)
    assert [c.title for c in conversations.list_conversations(db, ada.id)] == [
        "Kept from local mode"
    ]
    db.close()


def test_the_first_account_must_be_an_admin(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = patch_getpass(monkeypatch)
    assert users_command.create_user("bob", admin=False) == 1
    assert "the first one is an admin (add --admin)" in capsys.readouterr().err
    assert prompts == []  # said before any password is typed
    assert user_named(settings, "bob") is None


def test_a_password_is_asked_again_until_it_is_typed_twice_alike_and_long_enough(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    replies = typed("short", "short", PASSWORD, PASSWORD + "!", PASSWORD, PASSWORD)
    assert users_command.create_user("ada", admin=True, ask=lambda _: next(replies)) == 0
    err = capsys.readouterr().err
    assert "at least 10 characters" in err and "The two passwords differ." in err
    ada = user_named(settings, "ada")
    assert ada is not None and verify_sync(ada.password_hash, PASSWORD)


def test_three_failed_tries_make_no_account(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert users_command.create_user("ada", admin=True, ask=lambda _: "short") == 1
    assert capsys.readouterr().err.count("at least 10 characters") == 3
    assert user_named(settings, "ada") is None


def test_a_bad_or_taken_name_is_refused(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert users_command.create_user("", admin=True, ask=lambda _: PASSWORD) == 2
    assert "1 to 64 printable characters" in capsys.readouterr().err
    assert users_command.create_user("ada", admin=True, ask=lambda _: PASSWORD) == 0
    assert users_command.create_user("ADA", admin=False, ask=lambda _: PASSWORD) == 1
    assert "'ADA' is taken" in capsys.readouterr().err


def test_the_list_shows_roles_and_states_and_no_secret(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "list"]) == 0
    assert "No accounts yet" in capsys.readouterr().out
    users_command.create_user("ada", admin=True, ask=lambda _: PASSWORD)
    users_command.create_user("bob", admin=False, ask=lambda _: PASSWORD)
    users_command.reset_password("bob", ask=lambda _: PASSWORD + "2")
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["ada", "admin"], ["bob", "user"]]
    assert "must change password" in lines[1] and "must change" not in lines[0]
    assert "argon2" not in "".join(lines)


def test_reset_password_sets_one_to_change_and_ends_every_session(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users_command.create_user("ada", admin=True, ask=lambda _: PASSWORD)
    db = open_database(settings.database)
    ada = users.find_user(db, "ada")
    assert ada is not None
    sessions.create_session(db, ada.id, "a token's hash", "9999-01-01", "test", "127.0.0.1")
    db.close()
    patch_getpass(monkeypatch, "new password here", "new password here")
    assert main(["users", "reset-password", "Ada"]) == 0
    reset = user_named(settings, "ada")
    assert reset is not None and reset.must_change_password
    assert verify_sync(reset.password_hash, "new password here")
    db = open_database(settings.database)
    assert sessions.list_sessions(db, ada.id) == []
    db.close()
    assert main(["users", "reset-password", "nobody"]) == 1
    assert "no account named 'nobody'" in capsys.readouterr().err


def test_a_database_that_cannot_be_used_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("DUET_DATABASE", str(tmp_path / "a file" / "duet.sqlite3"))
    assert main(["users", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is a file, not a folder" in err


def test_the_command_reads_the_password_from_the_terminal_not_the_arguments(
    tmp_path: Path,
) -> None:
    """The real command in a process of its own. Without a terminal (a new session has none)
    getpass reads standard input: that stands in for typing."""
    database = tmp_path / "duet.sqlite3"
    done = subprocess.run(
        [sys.executable, "-m", "duet.cli", "users", "create", "ada", "--admin"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        capture_output=True,
        text=True,
        env={**os.environ, "DUET_DATABASE": str(database)},
        start_new_session=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "ada can now sign in as an admin." in done.stdout
    # Local mode (the default) is said to need accounts turned on.
    assert "DUET_MODE=accounts" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    db = open_database(database)
    ada = users.find_user(db, "ada")
    db.close()
    assert ada is not None and verify_sync(ada.password_hash, PASSWORD)
