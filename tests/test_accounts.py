"""Accounts: the rules of duet.auth.accounts on a real database, then the pages without a
session (/signup, /invite/{token}), a person's own account page (/account) and the links every
page shows a signed-in person. `Team` (an accounts-mode app with its people) serves
test_admin.py too."""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.auth import accounts
from duet.auth.accounts import AccountError
from duet.auth.sessions import COOKIE, iso, token_hash
from duet.settings import Settings
from duet.store import conversations, open_database, sessions, users
from duet.store.users import LOCAL_USER_ID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_request_path import route_table
from test_views import VALID_FORM

HASH = "not a real hash: these tests never sign in with it"
LOCAL = "http://127.0.0.1:8080"
HX = {"HX-Request": "true"}
PAGE = {"Accept": "text/html"}
PASSWORD = "correct horse battery"
# Made once: hashing is slow on purpose.
PASSWORD_HASH = PasswordHasher().hash(PASSWORD)


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


# The pages, in an accounts-mode app.


@dataclass
class Team:
    app: FastAPI
    client: TestClient
    db: sqlite3.Connection

    def add(self, name: str, role: users.Role) -> users.User:
        """An account whose password is PASSWORD (the first admin takes the local user)."""
        return accounts.create_account(self.db, name, PASSWORD_HASH, role)

    def as_(self, user: users.User | None) -> TestClient:
        """The client, with a new session of `user` (None: no one signed in)."""
        self.client.cookies.clear()
        if user is not None:
            token = secrets.token_urlsafe(16)
            far = iso(datetime.now(UTC) + timedelta(days=1))
            sessions.create_session(self.db, user.id, token_hash(token), far, "pytest", "10.0.0.7")
            self.client.cookies.set(COOKIE, token)
        return self.client

    def sign_in(self, name: str, password: str = PASSWORD) -> httpx.Response:
        self.client.cookies.clear()
        return self.client.post("/signin", data={"name": name, "password": password})

    def count(self, table: str) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def down_engines() -> dict[str, DownEngine]:
    port = closed_port()
    return {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }


def serves_accounts(app: FastAPI) -> bool:
    paths = {getattr(route, "path", None) for route in route_table(app.router.routes)}
    return {"/admin", "/account", "/signup"} <= paths


def build_app(settings: Settings, database: Path) -> FastAPI:
    return create_app(settings, engines=down_engines(), database=database)  # type: ignore[arg-type]


@pytest.fixture(name="team")
def team_fixture(tmp_path: Path) -> Iterator[Team]:
    settings = Settings(mode="accounts", min_password_length=10)
    app = build_app(settings, tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
        yield Team(app, client, app.state.db)


@pytest.fixture
def local_client(tmp_path: Path) -> Iterator[TestClient]:
    app = build_app(Settings(), tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
        yield client


def test_the_app_serves_the_accounts_and_admin_routes(tmp_path: Path) -> None:
    app = create_app(Settings(mode="accounts"), engines={}, database=tmp_path / "duet.sqlite3")
    assert serves_accounts(app)


def signup_form(name: str, password: str = PASSWORD, repeat: str | None = None) -> dict[str, str]:
    return {"name": name, "password": password, "repeat": password if repeat is None else repeat}


def goes_to(response: httpx.Response, path: str) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith(path)


def test_signing_up_is_closed_by_default_and_says_so(team: Team) -> None:
    team.add("ada", "admin")
    page = team.as_(None).get("/signup")
    assert page.status_code == 403 and "Signing up is closed" in page.text
    assert "<form" not in page.text.split("<body>")[1].split("</main>")[0]
    refused = team.client.post("/signup", data=signup_form("mallory"))
    assert refused.status_code == 403 and "closed" in refused.text
    assert users.find_user(team.db, "mallory") is None


def test_no_one_signs_up_before_the_first_admin_exists(team: Team) -> None:
    accounts.set_signup_policy(team.db, "open")
    assert team.client.post("/signup", data=signup_form("first")).status_code == 403
    assert not users.accounts_exist(team.db)


def test_open_signup_makes_a_pending_user_who_sees_only_waiting(team: Team) -> None:
    team.add("ada", "admin")
    accounts.set_signup_policy(team.db, "open")
    client = team.as_(None)
    assert client.get("/signup").status_code == 200
    signed_up = client.post("/signup", data=signup_form("carol"))
    assert goes_to(signed_up, "/waiting")
    carol = users.find_user(team.db, "carol")
    assert carol is not None and carol.role == "pending"
    # Signed in by the signup itself: the cookie is set.
    assert client.cookies.get(COOKIE)
    waiting = client.get("/waiting")
    assert waiting.status_code == 200 and "waiting for an admin" in waiting.text
    for path in ("/", "/compare", "/runs", "/account", "/admin", f"/c/{LOCAL_USER_ID}"):
        assert goes_to(client.get(path, headers=PAGE), "/waiting"), path
    sent = client.post("/chat/send", data=VALID_FORM)
    assert sent.status_code == 403 and team.count("messages") == 0
    htmx = client.post("/chat/send", data=VALID_FORM, headers=HX)
    assert htmx.headers["HX-Redirect"].startswith("/waiting")
    # Signing in again later lands there too.
    assert goes_to(team.sign_in("carol"), "/")
    assert goes_to(team.client.get("/", headers=PAGE), "/waiting")


def test_approval_lets_a_pending_user_chat(team: Team) -> None:
    ada = team.add("ada", "admin")
    accounts.set_signup_policy(team.db, "open")
    team.as_(None).post("/signup", data=signup_form("carol"))
    carol_session = team.client.cookies.get(COOKIE)
    carol = users.find_user(team.db, "carol")
    assert carol is not None
    approved = team.as_(ada).post(f"/admin/users/{carol.id}/approve", headers=HX)
    assert approved.status_code == 200 and "carol is approved" in approved.text
    # The same session, now approved.
    team.client.cookies.clear()
    team.client.cookies.set(COOKIE, str(carol_session))
    assert team.client.get("/").status_code == 200
    assert goes_to(team.client.get("/waiting"), "/")
    sent = team.client.post("/chat/send", data=VALID_FORM, headers=HX)
    assert sent.status_code == 200, sent.text
    mine = conversations.list_conversations(team.db, carol.id)
    assert len(mine) == 1 and conversations.list_conversations(team.db, ada.id) == []


@pytest.mark.parametrize(
    ("form", "status", "expected"),
    [
        (signup_form("ADA"), 409, "taken"),
        (signup_form("carol", "short"), 422, "at least 10"),
        (signup_form("carol", repeat=PASSWORD + "!"), 422, "differ"),
        (signup_form(" "), 422, "1 to 64 printable"),
    ],
)
def test_a_bad_signup_says_why_and_makes_nothing(
    team: Team, form: dict[str, str], status: int, expected: str
) -> None:
    team.add("ada", "admin")
    accounts.set_signup_policy(team.db, "open")
    response = team.as_(None).post("/signup", data=form)
    assert response.status_code == status and expected in response.text
    assert [u.name for u in users.list_users(team.db)] == ["ada"]
    assert COOKIE not in response.cookies


def test_signed_in_people_are_sent_on_from_signup(team: Team) -> None:
    ada = team.add("ada", "admin")
    accounts.set_signup_policy(team.db, "open")
    assert goes_to(team.as_(ada).get("/signup"), "/")


def invite_link(team: Team, admin: users.User, role: str = "user", hours: str = "24") -> str:
    """An invite made on the admin page; the path of its link, as shown once."""
    made = team.as_(admin).post("/admin/invites", data={"role": role, "hours": hours}, headers=HX)
    assert made.status_code == 200, made.text
    found = re.search(r"http://127\.0\.0\.1:8080(/invite/[\w-]+)", made.text)
    assert found, made.text
    return found.group(1)


def test_an_invite_link_makes_one_account_with_its_role_once(team: Team) -> None:
    ada = team.add("ada", "admin")
    path = invite_link(team, ada, role="admin")
    client = team.as_(None)
    page = client.get(path)
    assert page.status_code == 200 and "invited you" in page.text
    joined = client.post(path, data=signup_form("grace"))
    assert goes_to(joined, "/")
    grace = users.find_user(team.db, "grace")
    assert grace is not None and grace.role == "admin"
    assert client.get("/admin").status_code == 200  # signed in as grace, an admin
    # Once only, whoever tries it next.
    for who in (None, grace):
        again = team.as_(who).post(path, data=signup_form("mallory"), headers=PAGE)
        assert again.status_code == 404 and "has been used" in again.text
        assert team.as_(who).get(path, headers=PAGE).status_code == 404
    assert users.find_user(team.db, "mallory") is None


def test_an_invite_works_with_signup_closed_and_makes_a_user_who_can_chat(team: Team) -> None:
    ada = team.add("ada", "admin")
    assert accounts.signup_policy(team.db) == "closed"
    path = invite_link(team, ada)
    assert goes_to(team.as_(None).post(path, data=signup_form("bob")), "/")
    bob = users.find_user(team.db, "bob")
    assert bob is not None and bob.role == "user"
    assert team.client.get("/").status_code == 200
    assert team.client.get("/admin").status_code == 403


def test_an_expired_invite_makes_no_account(team: Team) -> None:
    ada = team.add("ada", "admin")
    path = invite_link(team, ada)
    team.db.execute("UPDATE invites SET expires_at = ?", (iso(datetime.now(UTC)),))
    client = team.as_(None)
    assert client.get(path, headers=PAGE).status_code == 404
    refused = client.post(path, data=signup_form("late"), headers=PAGE)
    assert refused.status_code == 404 and "expired" in refused.text
    assert users.find_user(team.db, "late") is None


def test_a_bad_invite_form_keeps_the_invite(team: Team) -> None:
    ada = team.add("ada", "admin")
    path = invite_link(team, ada)
    client = team.as_(None)
    taken = client.post(path, data=signup_form("Ada"))
    assert taken.status_code == 409 and "taken" in taken.text
    short = client.post(path, data=signup_form("bob", "short"))
    assert short.status_code == 422 and "at least 10" in short.text
    assert goes_to(client.post(path, data=signup_form("bob")), "/")


@pytest.mark.parametrize("token", ["not-a-token", "x" * 101, "%00"])
def test_an_unknown_invite_is_not_found(team: Team, token: str) -> None:
    team.add("ada", "admin")
    for method in ("GET", "POST"):
        response = team.as_(None).request(method, f"/invite/{token}", data=signup_form("z"))
        assert response.status_code in (404, 422), (method, token, response.status_code)
    assert users.find_user(team.db, "z") is None


def test_the_account_page_lists_ones_own_sessions_and_ends_them(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    team.as_(ada)
    ada_session = sessions.list_sessions(team.db, ada.id)[0]
    team.as_(bob)
    bob_other = sessions.list_sessions(team.db, bob.id)[0]
    client = team.as_(bob)
    current = next(s for s in sessions.list_sessions(team.db, bob.id) if s.id != bob_other.id)
    page = client.get("/account")
    assert page.status_code == 200
    assert 'href="/account/password"' in page.text
    assert f"/account/sessions/{bob_other.id}/end" in page.text
    assert f"/account/sessions/{current.id}/end" in page.text
    assert f"/account/sessions/{ada_session.id}/end" not in page.text
    # Another person's session is not found, and goes on.
    refused = client.post(f"/account/sessions/{ada_session.id}/end", headers=HX)
    assert refused.status_code == 404
    assert ada_session.id in [s.id for s in sessions.list_sessions(team.db, ada.id)]
    ended = client.post(f"/account/sessions/{bob_other.id}/end", headers=HX)
    assert ended.status_code == 200 and f"/sessions/{bob_other.id}/" not in ended.text
    assert [s.id for s in sessions.list_sessions(team.db, bob.id)] == [current.id]
    # Ending the one in use signs out.
    out = client.post(f"/account/sessions/{current.id}/end", headers=HX)
    assert out.headers["HX-Redirect"] == "/signin"
    assert sessions.list_sessions(team.db, bob.id) == []
    assert goes_to(client.get("/", headers=PAGE), "/signin")


def test_the_account_page_needs_a_signed_in_approved_person(team: Team) -> None:
    team.add("ada", "admin")
    carol = team.add("carol", "pending")
    assert goes_to(team.as_(None).get("/account", headers=PAGE), "/signin")
    assert team.as_(None).post("/account/sessions/1/end").status_code == 401
    assert goes_to(team.as_(carol).get("/account", headers=PAGE), "/waiting")


def test_every_page_shows_admins_the_admin_link_and_everyone_signed_in_sign_out(
    team: Team,
) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    for path in ("/", "/compare", "/runs"):
        as_admin = team.as_(ada).get(path).text
        assert 'href="/admin"' in as_admin and 'action="/signout"' in as_admin, path
        as_user = team.as_(bob).get(path).text
        assert 'href="/admin"' not in as_user and 'action="/signout"' in as_user, path
    signed_out = team.client.post("/signout")
    assert goes_to(signed_out, "/signin")
    assert goes_to(team.client.get("/", headers=PAGE), "/signin")


def test_local_mode_has_no_accounts_pages_and_no_sign_out(local_client: TestClient) -> None:
    page = local_client.get("/").text
    assert 'action="/signout"' not in page and 'href="/admin"' not in page
    for path in ("/signup", "/invite/anything", "/account", "/admin"):
        response = local_client.get(path, headers=PAGE)
        assert response.status_code == 404 and "local mode" in response.text, path
    assert local_client.post("/signup", data=signup_form("x")).status_code == 404
