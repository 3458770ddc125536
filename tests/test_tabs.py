"""Two tabs on one conversation (issue 16, defect 16): a send from a tab that has not seen the
conversation's latest turns is refused with 409 and shown them; nothing is stored.

Local mode, a temporary database and engines that are down (the answer fails at once; what is
tested is what the send stores or refuses).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.settings import Settings
from duet.store import messages
from fastapi.testclient import TestClient
from test_views import HX, LOCAL, VALID_FORM, read_events, seed_conversation


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    port = closed_port()
    engines = {"vllm": DownEngine("vllm", "vLLM", port)}
    app = create_app(Settings(), engines=engines, database=tmp_path / "duet.sqlite3")  # type: ignore[arg-type]
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def db(client: TestClient) -> sqlite3.Connection:
    return client.app.state.db  # type: ignore[attr-defined, no-any-return]


def shown_last_id(page: str) -> str:
    """The last message id a page (or fragment) tells its composer to send."""
    found = re.search(
        r'id="last-message-id" name="last_message_id" form="composer"\s+value="(\d*)"', page
    )
    assert found is not None, page
    return found.group(1)


def send(client: TestClient, conversation_id: int, content: str, shown: str) -> httpx.Response:
    form = {**VALID_FORM, "content": content, "conversation_id": str(conversation_id)}
    return client.post("/chat/send", data={**form, "last_message_id": shown}, headers=HX)


def test_the_page_and_each_send_tell_the_composer_the_last_message_shown(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(db, "q1", "a1")
    history = messages.list_messages(db, conversation_id)
    assert shown_last_id(client.get(f"/c/{conversation_id}").text) == str(history[-1].id)
    assert shown_last_id(client.get("/").text) == ""
    sent = send(client, conversation_id, "q2", str(history[-1].id))
    assert sent.status_code == 200
    answer = messages.list_messages(db, conversation_id)[-1]
    # The send's answer moves the composer's id on to its own new answer, out of band.
    assert 'hx-swap-oob="true"' in sent.text
    assert shown_last_id(sent.text) == str(answer.id)


def test_a_send_from_a_tab_behind_is_refused_and_shown_the_missing_turns(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(db, "first question", "first answer")
    stale = str(messages.list_messages(db, conversation_id)[-1].id)
    # Another tab goes on with the conversation.
    assert send(client, conversation_id, "from the other tab", stale).status_code == 200
    before = messages.list_messages(db, conversation_id)
    refused = send(client, conversation_id, "from this tab", stale)
    assert refused.status_code == 409
    # The tab's messages are replaced by the conversation as it is now, with the reason.
    assert refused.headers["HX-Retarget"] == "#messages"
    assert "from the other tab" in refused.text and "first question" in refused.text
    assert "moved on in another tab" in refused.text and "still in the box" in refused.text
    assert shown_last_id(refused.text) == str(before[-1].id)
    assert "from this tab" not in refused.text
    assert messages.list_messages(db, conversation_id) == before  # nothing stored
    # Sent again from the list it now shows (once the other tab's answer has ended), it goes
    # through.
    read_events(client, f"/messages/{before[-1].id}/stream")
    again = send(client, conversation_id, "from this tab", str(before[-1].id))
    assert again.status_code == 200
    assert messages.list_messages(db, conversation_id)[-2].content == "from this tab"


def test_a_tab_whose_last_message_was_replaced_is_behind_too(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(db, "q1", "a1")
    history = messages.list_messages(db, conversation_id)
    messages.delete_messages_from(db, conversation_id, history[-1].id)  # as a regenerate does
    assert send(client, conversation_id, "q2", str(history[-1].id)).status_code == 409


def test_a_client_that_does_not_say_what_it_shows_is_not_refused(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(db, "q1", "a1")
    form = {**VALID_FORM, "conversation_id": str(conversation_id)}
    assert client.post("/chat/send", data=form, headers=HX).status_code == 200
    bad = send(client, conversation_id, "q", "12x")
    assert bad.status_code == 422


def test_the_page_is_told_when_the_conversation_has_moved_on(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = seed_conversation(db, "q1", "a1")
    last = str(messages.list_messages(db, conversation_id)[-1].id)
    page = client.get(f"/c/{conversation_id}").text
    assert f'hx-get="/conversations/{conversation_id}/news" hx-trigger="every 15s"' in page
    url = f"/conversations/{conversation_id}/news"
    assert client.get(url, params={"last_message_id": last}, headers=HX).text == ""
    assert client.get(url, headers=HX).text == ""  # a client that does not say: nothing
    assert send(client, conversation_id, "elsewhere", last).status_code == 200
    news = client.get(url, params={"last_message_id": last}, headers=HX)
    assert news.status_code == 200 and "has new turns from" in news.text
    assert f'hx-get="/c/{conversation_id}" hx-select="#messages"' in news.text
    assert client.get("/conversations/999999/news", headers=HX).status_code == 404
