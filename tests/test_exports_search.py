"""Exports of conversations with any title, and a search that takes any text (issue 11):
a title in Cyrillic or CJK broke the export's Content-Disposition, `?q=%00` broke search."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.settings import Settings
from duet.store import conversations, messages
from duet.store.users import LOCAL_USER_ID
from duet.views.downloads import ascii_filename, content_disposition
from fastapi.testclient import TestClient

# Titles as the first message gives them; each has broken or could break a header.
TITLES = [
    "Что такое vLLM?",
    "你好\uff0c世界",  # with a full-width comma
    "Qwen3 の思考モード",
    "café crème",
    "🦙 vs ⚡",
    'quote " and back\\slash',
]

# What people may type into the search box, FTS5 syntax and control characters included.
SEARCHES = [
    "\x00",
    "cats\x00",
    "\x00cats",
    "\x01\x1f\x7f",
    '"',
    '"cats',
    "*",
    "cats*",
    "NEAR",
    "NEAR(cats dogs",
    "cats AND",
    "AND OR NOT",
    "(((",
    "cats)",
    "a:b",
    "-cats",
    "^cats",
    "{cats}",
    "'; DROP TABLE messages; --",
    "Что",
    "\ud800",
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    port = closed_port()
    engines = {
        "vllm": DownEngine("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    app = create_app(Settings(), engines=engines, database=tmp_path / "duet.sqlite3")
    # A loopback name, as a browser on this machine sends it (the Host check refuses others).
    with TestClient(app, base_url="http://127.0.0.1:8080") as test_client:
        yield test_client


@pytest.fixture
def db(client: TestClient) -> sqlite3.Connection:
    return client.app.state.db  # type: ignore[attr-defined, no-any-return]


def add_conversation(db: sqlite3.Connection, text: str) -> int:
    conversation = conversations.create_conversation(
        db, LOCAL_USER_ID, conversations.title_from_text(text)
    )
    messages.add_user_message(db, conversation.id, text)
    return conversation.id


def saved_as(disposition: str) -> tuple[str, str]:
    """The name a browser saves as (`filename*`, RFC 8187's charset''percent-encoded, when
    given) and the plain `filename` an older client falls back to."""
    kind, *params = (part.strip() for part in disposition.split(";"))
    assert kind == "attachment"
    values = dict(param.split("=", 1) for param in params)
    plain = values["filename"]
    assert plain.startswith('"') and plain.endswith('"')
    encoded = values.get("filename*")
    if encoded is None:
        return plain[1:-1], plain[1:-1]
    charset, _, text = encoded.partition("''")
    assert charset == "UTF-8"
    return unquote(text, encoding="utf-8", errors="strict"), plain[1:-1]


@pytest.mark.parametrize("title", TITLES)
@pytest.mark.parametrize("extension", ["md", "json"])
def test_a_conversation_with_any_title_is_exported(
    client: TestClient, db: sqlite3.Connection, title: str, extension: str
) -> None:
    conversation_id = add_conversation(db, title)
    response = client.get(f"/conversations/{conversation_id}/export.{extension}")
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert disposition.isascii()
    full, plain = saved_as(disposition)
    assert full.startswith(f"duet-{conversation_id}-") and full.endswith(f".{extension}")
    # The name keeps the title's own letters; the fallback is safe ASCII.
    first_word = "".join(c if c.isalnum() else " " for c in title).split()[0]
    assert first_word.lower() in full
    assert plain.startswith(f"duet-{conversation_id}") and plain.endswith(f".{extension}")
    assert all(c.isalnum() or c in "._-" for c in plain)
    if extension == "json":
        assert response.json()["conversation"]["title"] == conversations.title_from_text(title)


def test_run_exports_are_named_the_same_way(client: TestClient) -> None:
    for path, name in [("/runs.csv", "duet-runs.csv"), ("/runs.json", "duet-runs.json")]:
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'


def test_content_disposition_gives_an_ascii_name_and_the_utf8_one() -> None:
    assert content_disposition("duet-runs.csv") == 'attachment; filename="duet-runs.csv"'
    name = "duet-5-что-такое-vllm.md"
    assert content_disposition(name) == (
        f"attachment; filename=\"duet-5-vllm.md\"; filename*=UTF-8''{quote(name, safe='')}"
    )
    assert saved_as(content_disposition(name)) == (name, "duet-5-vllm.md")
    assert ascii_filename("duet-7-你好.json") == "duet-7.json"
    assert ascii_filename("duet-3-café.md") == "duet-3-cafe.md"
    assert ascii_filename('a"b\\c\r\n.md') == "a-b-c.md"
    assert ascii_filename("你好") == "download"


@pytest.mark.parametrize("text", SEARCHES)
def test_search_takes_any_text(db: sqlite3.Connection, text: str) -> None:
    about_cats = add_conversation(db, "Cats and dogs. Что такое vLLM?")
    # Must not raise (SQLite read a NUL as the query's end; a surrogate cannot be encoded).
    hits = conversations.search_conversations(db, LOCAL_USER_ID, text)
    assert all(hit.conversation.id == about_cats for hit in hits)


def test_control_characters_separate_words(db: sqlite3.Connection) -> None:
    about_cats = add_conversation(db, "Cats and dogs")
    for text in ("cats\x00dogs", "\x00cats", "cats\x1f", "dogs\ud800 cats"):
        hits = conversations.search_conversations(db, LOCAL_USER_ID, text)
        assert [hit.conversation.id for hit in hits] == [about_cats], repr(text)


@pytest.mark.parametrize("text", [t for t in SEARCHES if t != "\ud800"])
def test_the_sidebar_search_answers_any_text(
    client: TestClient, db: sqlite3.Connection, text: str
) -> None:
    add_conversation(db, "Cats and dogs")
    response = client.get("/conversations", params={"q": text}, headers={"HX-Request": "true"})
    assert response.status_code == 200


def test_the_sidebar_search_answers_a_raw_nul(client: TestClient, db: sqlite3.Connection) -> None:
    about_cats = add_conversation(db, "Cats and dogs")
    response = client.get("/conversations?q=cats%00", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert f"/c/{about_cats}" in response.text
