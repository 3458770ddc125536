"""Who may use which route, in accounts mode: a matrix built from the app's own route table.

Every route is listed in MATRIX with the answer each kind of actor gets: no one signed in, a
user still waiting for approval, the owner of the objects the path names (user A), another user
(B), and an admin who does not own them. A route that is not listed fails the test, so a new
route cannot be added without deciding who may use it. Each route is asked with fresh objects
of A's, and A comes last, so an owner's delete does not hide what the others would have seen.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from down_engine import DownEngine, closed_port
from duet.api.keys import create_key
from duet.app import create_app
from duet.auth.sessions import COOKIE, iso, token_hash
from duet.settings import Settings
from duet.store import (
    api_keys,
    conversations,
    invites,
    load_runs,
    messages,
    runs,
    sessions,
    shares,
    trash,
    users,
)
from duet.store.messages import AnswerRecord
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_request_path import route_table

LOCAL = "http://127.0.0.1:8080"
ROLES = ("anonymous", "pending", "owner", "other", "admin")
FORM = {
    "content": "Hello",
    "engine": "vllm",
    "temperature": "0.6",
    "top_p": "0.95",
    "top_k": "20",
    "max_tokens": "16",
    "system_prompt": "",
}
SECRET = "ownerssecretword"


def location(response: httpx.Response) -> str:
    return response.headers.get("location", "") or response.headers.get("hx-redirect", "")


# What an actor gets, as predicates over the response.
def signin(r: httpx.Response) -> bool:
    return r.status_code == 401 or (r.status_code == 303 and location(r).startswith("/signin"))


def wait(r: httpx.Response) -> bool:
    redirected = r.status_code == 303 and location(r).startswith("/waiting")
    return redirected or (r.status_code == 403 and "approval" in r.text)


def missing(r: httpx.Response) -> bool:
    return r.status_code == 404


def denied(r: httpx.Response) -> bool:
    return r.status_code == 403 and not wait(r)


def allowed(r: httpx.Response) -> bool:
    return r.status_code < 500 and not (signin(r) or wait(r) or r.status_code in {401, 403, 404})


def served(r: httpx.Response) -> bool:
    return r.status_code < 500


Check = Callable[[httpx.Response], bool]
OWNED: dict[str, Check] = {
    "anonymous": signin, "pending": wait, "owner": allowed, "other": missing, "admin": missing,
}  # fmt: skip
MEMBERS: dict[str, Check] = {
    "anonymous": signin, "pending": wait, "owner": allowed, "other": allowed, "admin": allowed,
}  # fmt: skip
EVERYONE: dict[str, Check] = dict.fromkeys(ROLES, allowed)
OWN_RULES: dict[str, Check] = dict.fromkeys(ROLES, served)  # tested in their own files
SIGNED_IN: dict[str, Check] = {
    "anonymous": signin, "pending": wait, "owner": allowed, "other": allowed, "admin": allowed,
}  # fmt: skip
ADMINS: dict[str, Check] = {
    "anonymous": denied, "pending": denied, "owner": denied, "other": denied, "admin": allowed,
}  # fmt: skip

# The admin page: an admin's, whatever the objects; the others are refused, anonymous and pending
# sent where they can go on first.
ADMIN_PAGES: dict[str, Check] = {
    "anonymous": signin, "pending": wait, "owner": denied, "other": denied, "admin": allowed,
}  # fmt: skip


# /v1 answers to a Bearer key only: a session cookie, whoever's, is 401 in OpenAI's error shape.
def key_required(r: httpx.Response) -> bool:
    return r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


API_KEY_ONLY: dict[str, Check] = dict.fromkeys(ROLES, key_required)

# A live share link of A's (to a conversation without the secret word, which must never be shown
# to anyone else): any signed-in, approved teammate reads it.
SHARED = MEMBERS

MATRIX: dict[tuple[str, str], dict[str, Check]] = {
    ("GET", "/static"): EVERYONE,
    ("GET", "/"): MEMBERS,
    ("GET", "/c/{conversation_id}"): OWNED,
    ("POST", "/chat/send"): OWNED,  # continuing A's conversation by its id
    ("GET", "/composer/sampling"): MEMBERS,
    ("GET", "/messages/{message_id}"): OWNED,
    ("GET", "/messages/{message_id}/stream"): OWNED,
    ("POST", "/messages/{message_id}/stop"): OWNED,
    ("POST", "/messages/{message_id}/regenerate"): OWNED,
    ("POST", "/messages/{message_id}/choose"): OWNED,
    ("POST", "/messages/{message_id}/again"): OWNED,
    ("GET", "/messages/{message_id}/edit"): OWNED,
    ("POST", "/messages/{message_id}/edit"): OWNED,
    ("GET", "/conversations"): MEMBERS,
    ("GET", "/conversations/{conversation_id}/rename"): OWNED,
    ("GET", "/conversations/{conversation_id}/item"): OWNED,
    ("POST", "/conversations/{conversation_id}/rename"): OWNED,
    ("DELETE", "/conversations/{conversation_id}"): OWNED,
    ("GET", "/conversations/{conversation_id}/export.{extension}"): OWNED,
    ("GET", "/conversations/{conversation_id}/context"): OWNED,
    ("GET", "/conversations/{conversation_id}/news"): OWNED,
    ("GET", "/trash"): MEMBERS,
    ("DELETE", "/trash"): MEMBERS,  # each empties their own (test_trash.py)
    ("POST", "/trash/{trashed_id}/restore"): OWNED,
    ("DELETE", "/trash/{trashed_id}"): OWNED,
    ("GET", "/trash/{trashed_id}/notice"): OWNED,
    ("GET", "/health"): MEMBERS,
    ("GET", "/health/badges"): MEMBERS,
    ("GET", "/compare"): MEMBERS,
    ("POST", "/compare"): MEMBERS,
    ("GET", "/compare/answers/{answer_id}/stream"): OWNED,
    ("GET", "/compare/answers/{answer_id}"): OWNED,
    ("POST", "/compare/answers/{answer_id}/browser"): OWNED,
    ("POST", "/compare/answers/{answer_id}/stop"): OWNED,
    ("GET", "/runs"): MEMBERS,
    ("GET", "/runs.csv"): MEMBERS,
    ("GET", "/runs.json"): MEMBERS,
    ("GET", "/runs/{run_id}.json"): OWNED,
    ("GET", "/runs/{run_id}"): OWNED,
    ("DELETE", "/runs/{run_id}"): OWNED,  # an admin may not delete A's run, as with chats
    ("POST", "/compare/answers/{answer_id}/continue"): OWNED,
    ("GET", "/signin"): EVERYONE,
    ("POST", "/signin"): OWN_RULES,
    ("POST", "/signout"): OWN_RULES,
    ("GET", "/waiting"): EVERYONE,
    ("GET", "/setup"): OWN_RULES,
    ("POST", "/setup"): OWN_RULES,
    ("GET", "/account/password"): SIGNED_IN,
    ("POST", "/account/password"): SIGNED_IN,
    ("GET", "/metrics"): ADMINS,
    ("GET", "/conversations/{conversation_id}/shares"): OWNED,
    ("POST", "/conversations/{conversation_id}/share"): OWNED,
    ("GET", "/runs/{run_id}/shares"): OWNED,
    ("POST", "/runs/{run_id}/share"): OWNED,
    ("POST", "/shares/{share_id}/revoke"): OWNED,
    ("GET", "/shared/{token}"): SHARED,
    ("GET", "/signup"): OWN_RULES,  # test_accounts.py
    ("POST", "/signup"): OWN_RULES,
    ("GET", "/invite/{token}"): OWN_RULES,
    ("POST", "/invite/{token}"): OWN_RULES,
    ("GET", "/account"): MEMBERS,
    ("POST", "/account/sessions/{session_id}/end"): OWNED,  # another of A's sessions
    ("GET", "/admin"): ADMIN_PAGES,
    ("POST", "/admin/signup-policy"): ADMIN_PAGES,
    ("POST", "/admin/users"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/approve"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/reject"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/disable"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/enable"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/promote"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/demote"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/reset-password"): ADMIN_PAGES,
    ("POST", "/admin/invites"): ADMIN_PAGES,
    ("POST", "/admin/invites/{invite_id}/revoke"): ADMIN_PAGES,
    ("POST", "/admin/sessions/{session_id}/end"): ADMIN_PAGES,
    ("POST", "/admin/limits"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/limits"): ADMIN_PAGES,
    ("POST", "/admin/users/{user_id}/limits/remove"): ADMIN_PAGES,
    ("GET", "/account/keys"): MEMBERS,
    ("POST", "/account/keys"): MEMBERS,
    ("POST", "/account/keys/{key_id}/revoke"): OWNED,
    ("GET", "/admin/api-keys"): ADMIN_PAGES,
    ("POST", "/admin/api-keys/{key_id}/revoke"): ADMIN_PAGES,
    ("GET", "/v1/models"): API_KEY_ONLY,  # the keys' own rows: test_v1_takes_only_a_live_key
    ("GET", "/v1/models/{name:path}"): API_KEY_ONLY,
    ("POST", "/v1/chat/completions"): API_KEY_ONLY,
    # The Load page: the instance's load runs, an admin's whoever started them.
    ("GET", "/load"): ADMIN_PAGES,
    ("POST", "/load"): ADMIN_PAGES,  # an empty form: refused (422) once past the check
    ("GET", "/load/compare"): ADMIN_PAGES,
    ("GET", "/load/runs/{load_id}"): ADMIN_PAGES,
    ("GET", "/load/runs/{load_id}/progress"): ADMIN_PAGES,
    ("POST", "/load/runs/{load_id}/stop"): ADMIN_PAGES,
    ("GET", "/load/runs/{load_id}/charts/{chart}.svg"): ADMIN_PAGES,
    ("GET", "/load/runs/{load_id}/export.{extension}"): ADMIN_PAGES,
    ("GET", "/load/runs/{load_id}/requests.jsonl"): ADMIN_PAGES,
}


@dataclass
class Team:
    app: FastAPI
    client: TestClient
    db: sqlite3.Connection
    ids: dict[str, int]
    cookies: dict[str, str]


def add_user(db: sqlite3.Connection, name: str, role: users.Role) -> tuple[int, str]:
    """A user with a session; returns their id and the session's cookie token. (The hash is
    never checked here: these actors come with their sessions.)"""
    user = users.create_user(db, name, "not-checked", role)
    return user.id, new_session(db, user.id)


def new_session(db: sqlite3.Connection, user_id: int) -> str:
    token = secrets.token_urlsafe(16)
    sessions.create_session(db, user_id, token_hash(token), "9999-01-01T00:00:00", "test", "")
    return token


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    app = create_app(Settings(mode="accounts"), engines=engines, database=tmp_path / "duet.sqlite3")  # type: ignore[arg-type]
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        db: sqlite3.Connection = app.state.db
        ids, cookies = {}, {}
        for role, name, kind in (
            ("pending", "penny", "pending"),
            ("owner", "alice", "user"),
            ("other", "bob", "user"),
            ("admin", "ada", "admin"),
        ):
            ids[role], cookies[role] = add_user(db, name, kind)  # type: ignore[arg-type]
        yield Team(app, client, db, ids, cookies)


def owners_objects(team: Team) -> dict[str, int]:
    """A fresh conversation of A's (a question and a finished answer) and a finished run."""
    db, owner = team.db, team.ids["owner"]
    conversation = conversations.create_conversation(db, owner, f"A's {SECRET}")
    question = messages.add_user_message(db, conversation.id, f"What is {SECRET}?")
    answer = messages.start_assistant_message(
        db, conversation.id, engine="vllm", model="m", thinking=False, parameters={}
    )
    messages.save_assistant(db, answer.id, AnswerRecord("complete", content="An answer."))
    run = runs.create_run(
        db, owner, prompt=f"Compare {SECRET}", system_prompt="", mode="concurrent",
        thinking=False, parameters={}, engines=[("vllm", "m")],
    )  # fmt: skip
    runs.finish_unstarted(db, run.answers[0].id, "failed", "not started")
    shared = conversations.create_conversation(db, owner, "A shares this one")
    messages.add_user_message(db, shared.id, "A question anyone may read")
    share = shares.create_share(db, owner, "conversation", shared.id)
    trashed = conversations.create_conversation(db, owner, f"A's deleted {SECRET}")
    trash.move_to_trash(db, owner, trashed.id)
    # What the admin page acts on: someone waiting for approval (not one of the actors), an
    # invite, and another session of A's.
    newcomer = users.create_user(db, f"newcomer {secrets.token_hex(4)}", "not-checked", "pending")
    invite = invites.create_invite(
        db, token_hash(secrets.token_urlsafe(16)), team.ids["admin"], "user",
        iso(datetime.now(UTC)), iso(datetime.now(UTC) + timedelta(days=1)),
    )  # fmt: skip
    owners_session = sessions.find_session(db, token_hash(new_session(db, owner)))
    assert owners_session is not None
    key = create_key(db, owner, "A's key", None, None, datetime.now(UTC)).key
    load = load_runs.create_load_run(db, team.ids["admin"], {"routes": ["vllm"]})
    load_runs.finish_load_run(db, load.id, "complete", None, charts={"ttft": "<svg/>"})
    return {
        "load_id": load.id,
        "chart": "ttft",  # type: ignore[dict-item]
        "key_id": key.id,
        "user_id": newcomer.id,
        "invite_id": invite.id,
        "session_id": owners_session.id,
        "share_id": share.id,
        "token": share.token,
        "conversation_id": conversation.id,
        "trashed_id": trashed.id,
        "message_id": answer.id,
        "user_message_id": question.id,
        "run_id": run.id,
        "answer_id": run.answers[0].id,
    }


def request_for(method: str, path: str, objects: dict[str, int]) -> dict[str, Any]:
    """The path with A's objects in it, and a body that would be accepted from A."""
    filled = path.replace("{extension}", "json").replace("/static", "/static/duet.css")
    filled = filled.replace("{name:path}", "vllm/qwen3-test")
    if "/edit" in path:
        filled = filled.replace("{message_id}", str(objects["user_message_id"]))
    filled = re.sub(r"\{(\w+)\}", lambda m: str(objects[m.group(1)]), filled)
    body: dict[str, Any] = {}
    if path == "/chat/send":
        body["data"] = {**FORM, "conversation_id": str(objects["conversation_id"])}
    elif path.endswith("/again"):  # the other engine than the one that answered
        body["data"] = {"engine": "ollama"}
    elif path.startswith("/messages/") and method == "POST":
        body["data"] = FORM
    elif path.endswith("/rename") and method == "POST":
        body["data"] = {"title": "Renamed"}
    elif path == "/compare" and method == "POST":
        body["data"] = {**FORM, "engines": "vllm", "mode": "concurrent"}
    elif path.endswith("/browser"):
        body["json"] = {"arrivals": []}
    elif path == "/account/keys" and method == "POST":
        body["data"] = {"name": "a key"}
    elif path == "/v1/chat/completions":
        body["json"] = {"model": "vllm/qwen3-test", "messages": [{"role": "user", "content": "Hi"}]}
    return {"method": method, "url": filled, **body}


def test_every_route_answers_each_actor_as_the_matrix_says(team: Team) -> None:
    routes = {
        (sorted(set(getattr(r, "methods", None) or {"GET"}) - {"HEAD"})[0], r.path): r
        for r in route_table(team.app.router.routes)
    }
    unlisted = sorted(set(routes) - set(MATRIX))
    assert unlisted == [], f"routes missing from the authorization matrix: {unlisted}"
    stale = sorted(set(MATRIX) - set(routes))
    assert stale == [], f"the matrix lists routes the app does not have: {stale}"
    wrong = []
    for (method, path), expected in MATRIX.items():
        objects = owners_objects(team)
        # Fresh sessions too: signing out (one of the routes) ends the one it is asked with.
        for role, user_id in team.ids.items():
            team.cookies[role] = new_session(team.db, user_id)
        for role in ("anonymous", "pending", "other", "admin", "owner"):
            request = request_for(method, path, objects)
            cookies = {COOKIE: team.cookies[role]} if role in team.cookies else {}
            team.client.cookies.clear()
            response = team.client.request(
                **request, cookies=cookies, headers={"Accept": "text/html"},
                follow_redirects=False,
            )  # fmt: skip
            if not expected[role](response):
                wrong.append(
                    f"{method} {path} as {role}: {response.status_code} {location(response)}"
                )
            if role != "owner" and response.status_code < 400 and SECRET in response.text:
                wrong.append(f"{method} {path} as {role}: the owner's content was shown")
    assert wrong == [], "\n".join(wrong)


def test_listings_and_search_show_only_ones_own(team: Team) -> None:
    objects = owners_objects(team)
    link = f"/c/{objects['conversation_id']}"
    for role in ("other", "admin"):
        cookies = {COOKIE: team.cookies[role]}
        for url in ("/", "/conversations", "/trash", "/runs", "/runs.json", "/runs.csv"):
            response = team.client.get(url, cookies=cookies)
            assert response.status_code == 200, (role, url)
            assert SECRET not in response.text, f"{url} showed A's content to {role}"
        found = team.client.get(f"/conversations?q={SECRET}", cookies=cookies)
        assert found.status_code == 200 and link not in found.text, f"search showed {role} A's"
    cookies = {COOKIE: team.cookies["owner"]}
    assert link in team.client.get(f"/conversations?q={SECRET}", cookies=cookies).text


def test_a_session_cookie_is_httponly_lax_and_secure_over_https(tmp_path: Path) -> None:
    for base_url, secure_setting, secure in (
        (LOCAL, "auto", False),
        ("https://127.0.0.1:8443", "auto", True),
        (LOCAL, "on", True),
    ):
        settings = Settings(mode="accounts", secure_cookies=secure_setting)
        app = create_app(settings, engines={}, database=tmp_path / f"{secure_setting}{secure}.db")
        with TestClient(app, base_url=base_url) as client:
            db: sqlite3.Connection = app.state.db
            users.create_user(db, "alice", PASSWORD_HASH, "user")
            response = client.post(
                "/signin", data={"name": "alice", "password": PASSWORD}, follow_redirects=False
            )
            assert response.status_code == 303, response.text
            cookie = response.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}=")
            assert "HttpOnly" in cookie and "SameSite=lax" in cookie
            assert ("Secure" in cookie) is secure, (base_url, secure_setting, cookie)
            stored = db.execute("SELECT token_hash FROM sessions").fetchone()[0]
            token = cookie.split(";")[0].split("=", 1)[1]
            assert stored == token_hash(token) and token not in stored, "only the hash is kept"


PASSWORD = "correct horse battery"
# Made once: hashing is slow on purpose.
PASSWORD_HASH = __import__("argon2").PasswordHasher().hash(PASSWORD)


def signed_in(client: TestClient, name: str = "alice", password: str = PASSWORD) -> str:
    response = client.post(
        "/signin", data={"name": name, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    client.cookies.clear()  # each request below says whose it is
    return response.cookies[COOKIE]


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app(
        Settings(mode="accounts", signin_attempts=3), engines={}, database=tmp_path / "a.db"
    )
    with TestClient(app, base_url=LOCAL) as client:
        users.create_user(app.state.db, "alice", PASSWORD_HASH, "user")
        yield app, client


def test_sessions_expire_when_idle_and_at_their_end(accounts: tuple[FastAPI, TestClient]) -> None:
    app, client = accounts
    db: sqlite3.Connection = app.state.db
    for column, stale in (("last_seen_at", "2000-01-01T00:00:00"), ("expires_at", iso_past())):
        token = signed_in(client)
        assert client.get("/", cookies={COOKIE: token}, follow_redirects=False).status_code == 200
        db.execute(f"UPDATE sessions SET {column} = ?", (stale,))
        expired = client.get("/", cookies={COOKIE: token}, follow_redirects=False)
        assert signin(expired), column
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


def iso_past() -> str:
    from datetime import UTC, datetime, timedelta

    return iso(datetime.now(UTC) - timedelta(seconds=1))


def test_signing_out_revokes_the_session_on_the_server(
    accounts: tuple[FastAPI, TestClient],
) -> None:
    _, client = accounts
    token = signed_in(client)
    client.post("/signout", cookies={COOKIE: token}, follow_redirects=False)
    client.cookies.clear()
    # The old cookie, replayed (as a stolen one would be), no longer works.
    replayed = client.get("/", cookies={COOKIE: token}, follow_redirects=False)
    assert signin(replayed)


def test_a_password_change_ends_the_other_sessions(accounts: tuple[FastAPI, TestClient]) -> None:
    _, client = accounts
    laptop, phone = signed_in(client), signed_in(client)
    new = "another long password"
    changed = client.post(
        "/account/password",
        data={"current": PASSWORD, "password": new, "repeat": new},
        cookies={COOKIE: laptop},
        follow_redirects=False,
    )
    assert changed.status_code == 303, changed.text
    client.cookies.clear()
    assert client.get("/", cookies={COOKIE: laptop}, follow_redirects=False).status_code == 200
    assert signin(client.get("/", cookies={COOKIE: phone}, follow_redirects=False))
    signed_in(client, password=new)


def test_a_disabled_account_is_signed_out_everywhere(accounts: tuple[FastAPI, TestClient]) -> None:
    app, client = accounts
    token = signed_in(client)
    users.set_disabled(app.state.db, users.find_user(app.state.db, "alice").id, True)  # type: ignore[union-attr]
    assert signin(client.get("/", cookies={COOKIE: token}, follow_redirects=False))
    refused = client.post("/signin", data={"name": "alice", "password": PASSWORD})
    assert refused.status_code == 401


def test_no_user_enumeration(accounts: tuple[FastAPI, TestClient], monkeypatch: Any) -> None:
    """An unknown name and a wrong password get the same answer, and both cost one password
    verification (so the same time, give or take the machine)."""
    from duet.auth import passwords

    verified: list[str | None] = []
    real = passwords.verify_sync

    def counting(password_hash: str | None, password: str) -> bool:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "verify_sync", counting)
    _, client = accounts
    unknown = client.post("/signin", data={"name": "nobody", "password": "whatever it is"})
    wrong = client.post("/signin", data={"name": "alice", "password": "whatever it is"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.text.replace("nobody", "alice") == wrong.text
    assert len(verified) == 2 and verified[0] is None and verified[1] == PASSWORD_HASH


def test_wrong_passwords_are_throttled_with_a_clear_wait(
    accounts: tuple[FastAPI, TestClient],
) -> None:
    _, client = accounts
    for _ in range(3):
        assert client.post("/signin", data={"name": "alice", "password": "nope"}).status_code == 401
    throttled = client.post("/signin", data={"name": "alice", "password": PASSWORD})
    assert throttled.status_code == 429
    assert "Too many wrong passwords. Wait 5 minutes" in throttled.text


def test_local_mode_is_refused_where_other_machines_could_reach_it() -> None:
    from duet.auth.mode import ModeError, check_mode

    for host, published in (("0.0.0.0", ""), ("192.168.1.20", ""), ("0.0.0.0", "0.0.0.0")):
        with pytest.raises(ModeError, match="DUET_MODE=accounts"):
            create_app(
                Settings(host=host, published_host=published), engines={}, database=":memory:"
            )
    for host, published in (("127.0.0.1", ""), ("::1", ""), ("0.0.0.0", "127.0.0.1")):
        check_mode(Settings(host=host, published_host=published))
    check_mode(Settings(mode="accounts", host="0.0.0.0"))
    with pytest.raises(ModeError, match="local or accounts"):
        check_mode(Settings(mode="team"))


def test_a_local_database_upgrades_and_its_history_belongs_to_the_first_admin(
    tmp_path: Path,
) -> None:
    """A database used in local mode (its conversations belong to the local user) opened in
    accounts mode: the setup link's admin takes them over."""
    database = tmp_path / "duet.sqlite3"
    local = create_app(Settings(), engines={}, database=database)
    with TestClient(local, base_url=LOCAL) as client:
        conversation = conversations.create_conversation(local.state.db, 1, "From before")
        assert client.get(f"/c/{conversation.id}").status_code == 200
    team = create_app(Settings(mode="accounts"), engines={}, database=database)
    with TestClient(team, base_url=LOCAL) as client:
        from duet.views.auth import new_setup_token

        token = new_setup_token(team.state.db)
        made = client.post(
            "/setup",
            data={"token": token, "name": "ada", "password": PASSWORD, "repeat": PASSWORD},
            follow_redirects=False,
        )
        assert made.status_code == 303, made.text
        page = client.get(f"/c/{conversation.id}", cookies={COOKIE: made.cookies[COOKIE]})
        assert page.status_code == 200 and "From before" in page.text
        second = {"token": token, "name": "eve", "password": PASSWORD, "repeat": PASSWORD}
        again = client.post("/setup", data=second, follow_redirects=False)
        assert again.status_code == 404, "a setup link works once"
        assert users.find_user(team.state.db, "eve") is None


def test_v1_takes_only_a_live_bearer_key(team: Team) -> None:
    """/v1's rows of the matrix: only `Authorization: Bearer` with a live key of a user who may
    use Duet gets in; everything else is 401 in OpenAI's error shape (a key in another header
    included: it is never read), and a key restricted to some models gets 403 for the others."""
    db, now = team.db, datetime.now(UTC)

    def key_of(role: str, models: tuple[str, ...] | None = None) -> str:
        return create_key(db, team.ids[role], role, models, None, now).token

    live, revoked, expired = key_of("owner"), key_of("owner"), key_of("owner")
    api_keys.revoke_key(db, api_keys.find_key(db, token_hash(revoked)).id, iso(now), None)  # type: ignore[union-attr]
    db.execute(
        "UPDATE api_keys SET expires_at = ? WHERE key_hash = ?",
        (iso(now - timedelta(seconds=1)), token_hash(expired)),
    )
    disabled = users.create_user(db, "dora", "not-checked", "user")
    disabled_key = create_key(db, disabled.id, "k", None, None, now).token
    users.set_disabled(db, disabled.id, True)
    reset = users.create_user(db, "rita", "not-checked", "user")
    reset_key = create_key(db, reset.id, "k", None, None, now).token
    users.set_password(db, reset.id, "not-checked", must_change=True)
    vllm_only = key_of("owner", ("vllm/qwen3-test",))

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    cases: list[tuple[str, dict[str, str], dict[str, str], str, int]] = [
        ("a live key", bearer(live), {}, "vllm/qwen3-test", 503),  # in, to a down engine
        ("no key", {}, {}, "vllm/qwen3-test", 401),
        ("a revoked key", bearer(revoked), {}, "vllm/qwen3-test", 401),
        ("an expired key", bearer(expired), {}, "vllm/qwen3-test", 401),
        ("a disabled user's key", bearer(disabled_key), {}, "vllm/qwen3-test", 401),
        ("a pending user's key", bearer(key_of("pending")), {}, "vllm/qwen3-test", 401),
        ("a reset password's key", bearer(reset_key), {}, "vllm/qwen3-test", 401),
        ("an unknown key", bearer("duet-" + "x" * 43), {}, "vllm/qwen3-test", 401),
        ("a cookie, no key", {}, {COOKIE: team.cookies["owner"]}, "vllm/qwen3-test", 401),
        ("an admin's cookie", {}, {COOKIE: team.cookies["admin"]}, "vllm/qwen3-test", 401),
        ("X-Api-Key", {"X-Api-Key": live}, {}, "vllm/qwen3-test", 401),
        ("api-key", {"api-key": live}, {}, "vllm/qwen3-test", 401),
        ("Basic", {"Authorization": f"Basic {live}"}, {}, "vllm/qwen3-test", 401),
        ("the bare key", {"Authorization": live}, {}, "vllm/qwen3-test", 401),
        ("an allowed model", bearer(vllm_only), {}, "vllm/qwen3-test", 503),
        ("a model not allowed", bearer(vllm_only), {}, "ollama/qwen3-test", 403),
        ("a model of no engine", bearer(live), {}, "qwen3-test", 404),
    ]
    wrong = []
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    for label, headers, cookies, model, status in cases:
        team.client.cookies.clear()
        for method, path, json in (
            ("GET", "/v1/models", None),
            ("POST", "/v1/chat/completions", {**body, "model": model}),
        ):
            expected = 200 if method == "GET" and status in {403, 404, 503} else status
            got = team.client.request(method, path, headers=headers, cookies=cookies, json=json)
            error = got.json().get("error") if got.status_code != 200 else None
            shaped = error is None or {"message", "type", "code"} <= set(error)
            if got.status_code != expected or not shaped:
                wrong.append(f"{method} {path} with {label}: {got.status_code} {got.text[:200]}")
            if expected == 401 and got.headers.get("www-authenticate") != "Bearer":
                wrong.append(f"{method} {path} with {label}: no WWW-Authenticate: Bearer")
    assert wrong == [], "\n".join(wrong)
