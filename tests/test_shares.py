"""Sharing (issue 12): an owner gives signed-in teammates a read-only link to a conversation or
compare run, and can revoke it.

Accounts mode with real parts (a temporary database, engines that are down, real sign-in
through POST /signin): alice owns the objects, bob is a teammate, anonymous holds only the link.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.auth.sessions import COOKIE
from duet.markdown import render_markdown
from duet.metrics.timeline import build_timeline
from duet.settings import Settings
from duet.store import conversations, messages, open_database, runs, shares, users
from duet.store.messages import AnswerRecord
from duet.store.runs import CompareRun
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_request_path import route_table
from test_runs import SERVER, finish_answer, new_run

LOCAL = "http://127.0.0.1:8080"
PASSWORD = "a long enough password"
PAGE = {"Accept": "text/html"}
HX = {"HX-Request": "true"}

USER_TEXT = "<script>alert('user')</script> what is 2+2?"
ANSWER_TEXT = (
    "It is **4**. <b>raw</b> <img src=x onerror=alert(1)> <script>x()</script>\n\n"
    "[click me](javascript:alert(2))\n\n```python\nprint(4)\n```\n"
)
REASONING_TEXT = "<script>think()</script> adding two and two"

GONE = "This link was revoked or never existed."


def serves_shares(app: FastAPI) -> bool:
    return any(
        getattr(route, "path", None) == "/shared/{token}" for route in route_table(app.routes)
    )


def build_app(database: Path) -> FastAPI:
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    return create_app(Settings(mode="accounts"), engines=engines, database=database)  # type: ignore[arg-type]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    app = build_app(tmp_path / "duet.sqlite3")
    # This client runs the app's lifespan (the database lives as long as it); the members'
    # clients below send their requests to the same app, each with its own cookie jar.
    with TestClient(app, base_url=LOCAL):
        password_hash = PasswordHasher().hash(PASSWORD)
        for name in ("alice", "bob"):
            users.create_user(app.state.db, name, password_hash, "user")
        yield app


@pytest.fixture
def db(app: FastAPI) -> sqlite3.Connection:
    return app.state.db  # type: ignore[no-any-return]


def signed_in(app: FastAPI, name: str) -> TestClient:
    client = TestClient(app, base_url=LOCAL)
    response = client.post(
        "/signin", data={"name": name, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert COOKIE in client.cookies
    return client


@pytest.fixture
def alice(app: FastAPI) -> TestClient:
    return signed_in(app, "alice")


@pytest.fixture
def bob(app: FastAPI) -> TestClient:
    return signed_in(app, "bob")


@pytest.fixture
def anonymous(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=LOCAL)


def user_id(db: sqlite3.Connection, name: str) -> int:
    user = users.find_user(db, name)
    assert user is not None
    return user.id


def seed_conversation(db: sqlite3.Connection, owner: str = "alice") -> int:
    conversation = conversations.create_conversation(db, user_id(db, owner), "Sums, shared")
    messages.add_user_message(db, conversation.id, USER_TEXT)
    answer = messages.start_assistant_message(
        db, conversation.id, engine="vllm", model="qwen3-test", thinking=True, parameters={}
    )
    record = AnswerRecord(
        "complete",
        content=ANSWER_TEXT,
        reasoning=REASONING_TEXT,
        completion_tokens=7,
        ttft_ms=42.0,
        ttfa_ms=61.0,
        total_ms=180.0,
    )
    messages.save_assistant(db, answer.id, record)
    return conversation.id


def seed_run(db: sqlite3.Connection, owner: str = "alice") -> CompareRun:
    """A run whose first answer finished with its text and the server's arrival times; the
    second is still queued."""
    run = new_run(db, "Compare <script>p()</script> please", user_id(db, owner))
    finish_answer(db, run.answers[0].id, SERVER)
    found = runs.get_run(db, user_id(db, owner), run.id)
    assert found is not None
    return found


def share(client: TestClient, path: str) -> tuple[str, str]:
    """Share through the owner's control; the link it shows and its token."""
    response = client.post(path, headers=HX)
    assert response.status_code == 200, response.text
    link = re.search(r'value="(http://127\.0\.0\.1:8080/shared/([A-Za-z0-9_-]+))"', response.text)
    assert link is not None, response.text
    assert "Revoke" in response.text
    return link.group(1), link.group(2)


def assert_no_controls(page: str) -> None:
    """Nothing on the page acts on the owner's objects or reaches their other data. (The site's
    navigation is the reader's own: their sign-out, their pages.)"""
    page = re.sub(r'<nav class="(site|pages)-nav".*?</nav>', "", page, flags=re.DOTALL)
    assert "hx-" not in page  # no htmx request of any kind: no send, edit, stop, delete…
    for tag in ("<form", "<textarea", "<input", "<select"):
        assert tag not in page
    buttons = re.findall(r"<button[^>]*>", page)
    assert all('class="copy-code"' in button for button in buttons), buttons
    assert "data-stream" not in page and "data-compare-stream" not in page
    for word in ("Regenerate", "Edit", "Stop", "Delete", "Rename", "Share", "Revoke"):
        assert f">{word}<" not in page
    assert "export" not in page and ".json" not in page
    assert 'href="/c/' not in page and 'href="/runs/' not in page.replace('href="/runs"', "")
    assert "chat.js" not in page and "compare.js" not in page


def assert_no_inline_script_or_style(page: str) -> None:
    """The CSP forbids them, and hostile model output must not have made any."""
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert "<style" not in page and "style=" not in page
    assert re.findall(r"<[a-z][^>]*\son[a-z]+\s*=", page) == []  # no handler on any tag
    assert "<img" not in page and 'href="javascript:' not in page


def test_a_teammate_reads_a_shared_conversation_with_no_controls(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    own_page = alice.get(f"/c/{conversation_id}").text
    # The owner's page has what the shared one must not: the checks below can fail.
    assert "Regenerate" in own_page and "<textarea" in own_page and "hx-post" in own_page
    assert f'hx-get="/conversations/{conversation_id}/shares"' in own_page

    _, token = share(alice, f"/conversations/{conversation_id}/share")
    response = bob.get(f"/shared/{token}", headers=PAGE)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert "Sums, shared" in page and "Shared read-only by alice" in page
    assert page.count('class="message user') == 1 and page.count('class="message assistant') == 1
    assert render_markdown(ANSWER_TEXT) in page
    # Reasoning is there, folded; the numbers are there.
    assert re.search(r'<details class="reasoning"\s*>', page)
    assert "adding two and two" in page
    for number in ("TTFT 42 ms", "answer 61 ms", "total 180 ms", "7 tokens"):
        assert number in page
    assert_no_controls(page)


def test_a_teammate_reads_a_shared_run_with_its_columns_and_timeline(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    run = seed_run(db)
    own_page = alice.get(f"/runs/{run.id}").text
    assert f"/runs/{run.id}.json" in own_page and ">Continue in chat<" in own_page
    assert f'hx-delete="/runs/{run.id}"' in own_page and ">Delete<" in own_page
    assert "data-compare-stream" in own_page
    assert f'hx-get="/runs/{run.id}/shares"' in own_page

    _, token = share(alice, f"/runs/{run.id}/share")
    response = bob.get(f"/shared/{token}", headers=PAGE)
    assert response.status_code == 200
    page = response.text
    assert "Compare run shared read-only by alice" in page
    assert page.count('class="compare-answer') == 2
    assert "data-metrics-panel" in page and 'class="timeline"' in page
    server_ticks = build_timeline(run.answers[0]).rows[0].ticks
    assert len(server_ticks) > 0 and page.count('class="tick answer"') == len(server_ticks)
    assert render_markdown("abcdefghijklmnopqr") in page
    assert "Still queued when this page was loaded." in page
    assert "&lt;script&gt;p()&lt;/script&gt;" in page
    assert_no_controls(page)
    assert_no_inline_script_or_style(page)


def test_deleting_a_run_revokes_its_links(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    run = seed_run(db)
    _, token = share(alice, f"/runs/{run.id}/share")
    assert bob.get(f"/shared/{token}", headers=PAGE).status_code == 200
    assert bob.delete(f"/runs/{run.id}", headers=HX).status_code == 404  # not bob's to delete
    assert bob.get(f"/shared/{token}", headers=PAGE).status_code == 200
    assert alice.delete(f"/runs/{run.id}", headers=HX).status_code == 200
    gone = bob.get(f"/shared/{token}", headers=PAGE)
    assert gone.status_code == 404 and "revoked or never existed" in gone.text
    assert shares.live_shares_of(db, user_id(db, "alice"), "run", run.id) == []
    assert runs.get_run(db, user_id(db, "alice"), run.id) is None


def test_anyone_not_signed_in_is_sent_to_sign_in_and_sees_nothing(
    db: sqlite3.Connection, alice: TestClient, anonymous: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    _, token = share(alice, f"/conversations/{conversation_id}/share")

    page = anonymous.get(f"/shared/{token}", headers=PAGE, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == f"/signin?next=%2Fshared%2F{token}"
    other = anonymous.get(f"/shared/{token}")
    assert other.status_code == 401 and "Sums" not in other.text
    assert anonymous.post(f"/conversations/{conversation_id}/share").status_code == 401
    assert anonymous.post("/shares/1/revoke").status_code == 401
    assert anonymous.get(f"/conversations/{conversation_id}/shares").status_code == 401


def test_only_the_owner_shares_lists_and_revokes(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    run = seed_run(db)
    _, token = share(alice, f"/conversations/{conversation_id}/share")
    share(alice, f"/runs/{run.id}/share")
    (alice_share,) = shares.live_shares_of(
        db, user_id(db, "alice"), "conversation", conversation_id
    )
    before = [tuple(row) for row in db.execute("SELECT * FROM shares ORDER BY id")]

    for method, path in [
        ("POST", f"/conversations/{conversation_id}/share"),
        ("POST", f"/runs/{run.id}/share"),
        ("GET", f"/conversations/{conversation_id}/shares"),
        ("GET", f"/runs/{run.id}/shares"),
        ("POST", f"/shares/{alice_share.id}/revoke"),
        ("POST", "/shares/999/revoke"),
    ]:
        response = bob.request(method, path, headers=HX)
        assert response.status_code == 404, (method, path)
        assert token not in response.text and "Sums" not in response.text
    assert [tuple(row) for row in db.execute("SELECT * FROM shares ORDER BY id")] == before
    assert bob.get(f"/shared/{token}").status_code == 200


def test_a_revoked_link_answers_404_and_sharing_again_makes_a_new_one(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    path = f"/conversations/{conversation_id}/share"
    link, token = share(alice, path)
    assert share(alice, path) == (link, token)  # one live link per object
    (live,) = shares.live_shares_of(db, user_id(db, "alice"), "conversation", conversation_id)

    control = alice.post(f"/shares/{live.id}/revoke", headers=HX)
    assert control.status_code == 200
    assert token not in control.text and f'hx-post="{path}"' in control.text
    for viewer in (bob, alice):
        gone = viewer.get(f"/shared/{token}", headers=PAGE)
        assert gone.status_code == 404
        assert GONE in gone.text and "Sums" not in gone.text
    assert bob.get("/shared/never-made-this-one").json() == {"error": GONE}

    _, new_token = share(alice, path)
    assert new_token != token
    assert bob.get(f"/shared/{new_token}").status_code == 200
    assert bob.get(f"/shared/{token}").status_code == 404


def test_a_link_to_a_deleted_conversation_answers_404(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    _, token = share(alice, f"/conversations/{conversation_id}/share")
    assert alice.delete(f"/conversations/{conversation_id}").status_code == 200
    response = bob.get(f"/shared/{token}", headers=PAGE)
    assert response.status_code == 404
    assert "Sums" not in response.text and "what is 2+2" not in response.text


def test_the_shared_page_escapes_hostile_content_as_the_chat_page_does(
    db: sqlite3.Connection, alice: TestClient, bob: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    _, token = share(alice, f"/conversations/{conversation_id}/share")
    shared = bob.get(f"/shared/{token}").text
    own = alice.get(f"/c/{conversation_id}").text
    for page in (shared, own):
        assert "&lt;script&gt;alert(&#39;user&#39;)&lt;/script&gt;" in page
        assert "&lt;script&gt;think()&lt;/script&gt;" in page
        # The answer's HTML comes out of the same Markdown pipeline on both pages.
        assert render_markdown(ANSWER_TEXT) in page
        assert "&lt;b&gt;raw&lt;/b&gt;" in page
        assert_no_inline_script_or_style(page)


def test_state_changing_share_routes_refuse_other_sites(
    db: sqlite3.Connection, alice: TestClient
) -> None:
    conversation_id = seed_conversation(db)
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    response = alice.post(f"/conversations/{conversation_id}/share", headers=cross_site)
    assert response.status_code == 403
    assert db.execute("SELECT count(*) FROM shares").fetchone()[0] == 0


def test_the_store_names_the_owner_in_every_query_but_the_links(tmp_path: Path) -> None:
    db = open_database(tmp_path / "duet.sqlite3")
    owner = users.create_user(db, "carol", "not-a-hash", "user").id
    other = users.create_user(db, "dave", "not-a-hash", "user").id
    made = shares.create_share(db, owner, "run", 7)
    assert len(made.token) == 32 and made.revoked_at is None
    assert shares.find_live_share(db, made.token) == made
    assert shares.live_shares_of(db, other, "run", 7) == []
    assert shares.live_shares_of(db, owner, "conversation", 7) == []
    assert shares.revoke_share(db, other, made.id) is None
    assert shares.find_live_share(db, made.token) == made

    revoked = shares.revoke_share(db, owner, made.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert shares.find_live_share(db, made.token) is None
    assert shares.live_shares_of(db, owner, "run", 7) == []
    again = shares.revoke_share(db, owner, made.id)
    assert again is not None and again.revoked_at == revoked.revoked_at
    db.close()


def test_the_app_serves_the_share_routes(tmp_path: Path) -> None:
    port = closed_port()
    engines = {"vllm": DownEngine("vllm", "vLLM", port)}
    app = create_app(Settings(mode="accounts"), engines=engines, database=tmp_path / "d.sqlite3")  # type: ignore[arg-type]
    assert serves_shares(app)
