"""Versions of an answer (store/answer_versions.py, views/answer_versions.py): regenerate
keeps every answer, the n/m switcher shows another and is remembered, "Answer again with"
another engine keeps both side by side, and the next turn is answered from the answer shown.
Against the real app with engines that are down (they record what they were asked), and a
second user who may not touch any of it."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.auth.sessions import COOKIE
from duet.engines.base import ChatRequest, OnSent
from duet.engines.events import EngineName, StreamEvent
from duet.settings import Settings
from duet.store import answer_versions, conversations, messages, open_database, shares
from duet.store.answer_versions import arrange
from duet.store.messages import AnswerRecord, Message
from duet.store.users import LOCAL_USER_ID
from fastapi.testclient import TestClient
from test_authorization import add_user
from test_bad_input import SilentEngineServer
from test_views import HX, LOCAL, VALID_FORM, count, read_events

OPTIONS = {k: v for k, v in VALID_FORM.items() if k != "content"}


class RecordingEngine(DownEngine):
    """A down engine that keeps every request it was sent (the conversation the answer was
    asked from), then fails to connect as DownEngine does."""

    def __init__(self, name: EngineName, label: str, port: int) -> None:
        super().__init__(name, label, port)
        self.asked: list[ChatRequest] = []

    async def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]:
        self.asked.append(request)
        async for event in super().stream_chat(request, on_sent):
            yield event


@pytest.fixture
def engines() -> dict[str, RecordingEngine]:
    port = closed_port()
    return {
        "vllm": RecordingEngine("vllm", "vLLM", port),
        "ollama": RecordingEngine("ollama", "Ollama", port),
    }


@pytest.fixture
def client(tmp_path: Path, engines: dict[str, RecordingEngine]) -> Iterator[TestClient]:
    app = create_app(Settings(), engines=engines, database=tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def db(client: TestClient) -> sqlite3.Connection:
    return client.app.state.db  # type: ignore[attr-defined, no-any-return]


def answered(db: sqlite3.Connection, conversation_id: int, text: str, engine: str = "vllm") -> int:
    """A finished answer in the conversation, asked with thinking off at temperature 0.3."""
    answer = messages.start_assistant_message(
        db,
        conversation_id,
        engine=engine,
        model="qwen3-test",
        thinking=False,
        parameters={"temperature": 0.3, "top_p": 0.8, "top_k": 20, "max_tokens": 99},
    )
    messages.save_assistant(
        db, answer.id, AnswerRecord("complete", content=text, ttft_ms=12.0, total_ms=90.0)
    )
    return answer.id


def conversation_of(db: sqlite3.Connection, *turns: str, user_id: int = LOCAL_USER_ID) -> int:
    """A conversation of questions and answers, alternating, starting with a question."""
    conversation = conversations.create_conversation(db, user_id, turns[0])
    for index, text in enumerate(turns):
        if index % 2 == 0:
            messages.add_user_message(db, conversation.id, text)
        else:
            answered(db, conversation.id, text)
    return conversation.id


def finish(client: TestClient, answer_id: int, content: str) -> None:
    """Wait for a started answer to end (its engine is down), then store it as if it had
    answered `content`."""
    read_events(client, f"/messages/{answer_id}/stream")
    db: sqlite3.Connection = client.app.state.db  # type: ignore[attr-defined]
    messages.save_assistant(db, answer_id, AnswerRecord("complete", content=content))


def newest_answer(db: sqlite3.Connection, conversation_id: int) -> Message:
    return [m for m in messages.list_messages(db, conversation_id) if m.role == "assistant"][-1]


def sent_texts(request: ChatRequest) -> list[str]:
    return [message.content for message in request.messages]


def snapshot(db: sqlite3.Connection) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    return tuple(
        db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in ("messages", "answer_sides", "chosen_answers")
    )


def test_turns_group_answers_into_versions_and_sides(tmp_path: Path) -> None:
    db = open_database(tmp_path / "arrange.sqlite3")
    conversation_id = conversation_of(db, "q1", "a1", "q2", "a2")
    answered(db, conversation_id, "a2, again")
    answered(db, conversation_id, "a2 from Ollama", engine="ollama")
    history = messages.list_messages(db, conversation_id)
    q1, a1, q2, a2, again, ollama = (m.id for m in history)
    plain = arrange(history, {}, {})
    assert [len(turn.versions) for turn in plain.turns] == [1, 3]
    # No recorded choice: the newest version's first answer.
    assert [m.id for m in plain.path] == [q1, a1, q2, ollama]
    with_side = arrange(history, {ollama: a2}, {q2: ollama})
    last = with_side.turns[-1]
    assert [version.ids for version in last.versions] == [(a2, ollama), (again,)]
    assert last.shown_index == 0 and last.shown is not None and last.shown.ids == (a2, ollama)
    assert [m.id for m in with_side.path] == [q1, a1, q2, ollama]
    assert [m.id for m in with_side.asked_from(last)] == [q1, a1, q2]
    # A choice naming an answer of another question is not this question's.
    assert arrange(history, {}, {q2: a1}).turns[-1].chosen.id == ollama  # type: ignore[union-attr]
    db.close()


def test_regenerate_keeps_every_version_and_the_switch_is_remembered(
    client: TestClient, db: sqlite3.Connection, engines: dict[str, RecordingEngine]
) -> None:
    conversation_id = conversation_of(db, "q1", "a1", "q2", "a2")
    first = newest_answer(db, conversation_id)
    regenerated = client.post(f"/messages/{first.id}/regenerate", data=OPTIONS, headers=HX)
    assert regenerated.status_code == 200
    second = newest_answer(db, conversation_id)
    assert second.id != first.id
    assert messages.get_message(db, first.id) == first, "the earlier answer is kept as it was"
    # Asked from the conversation before the question, and the question.
    assert sent_texts(engines["vllm"].asked[-1]) == ["q1", "a1", "q2"]
    finish(client, second.id, "a2, again")

    page = client.get(f"/c/{conversation_id}").text
    assert 'class="version-number"' in page and ">2/2<" in page
    assert "a2, again" in page and "<p>a2</p>" not in page
    previous = f'hx-post="/messages/{first.id}/choose"'
    assert previous in page

    shown = client.post(f"/messages/{first.id}/choose", headers=HX)
    assert shown.status_code == 200 and shown.headers["HX-Trigger"] == "duet:answer-chosen"
    assert shown.text.lstrip().startswith('<section id="answers-')
    assert ">1/2<" in shown.text and "<p>a2</p>" in shown.text
    assert f'hx-post="/messages/{second.id}/choose"' in shown.text
    reloaded = client.get(f"/c/{conversation_id}").text
    assert ">1/2<" in reloaded and "<p>a2</p>" in reloaded and "a2, again" not in reloaded

    # The next turn is answered from the version shown.
    sent = client.post(
        "/chat/send",
        data={**VALID_FORM, "content": "q3", "conversation_id": str(conversation_id)},
        headers=HX,
    )
    assert sent.status_code == 200
    assert sent_texts(engines["vllm"].asked[-1]) == ["q1", "a1", "q2", "a2", "q3"]
    # Earlier turns keep the version they went on from: a number, no buttons.
    read_events(client, f"/messages/{newest_answer(db, conversation_id).id}/stream")
    page = client.get(f"/c/{conversation_id}").text
    assert ">1/2<" in page and previous not in page
    assert f'hx-post="/messages/{second.id}/choose"' not in page


def test_answer_again_with_the_other_engine_keeps_both_side_by_side(
    client: TestClient, db: sqlite3.Connection, engines: dict[str, RecordingEngine]
) -> None:
    conversation_id = conversation_of(db, "q1", "a1", "q2", "a2 from vLLM")
    first = newest_answer(db, conversation_id)
    page = client.get(f"/c/{conversation_id}").text
    assert f'hx-post="/messages/{first.id}/again"' in page
    assert 'name="engine" value="ollama"' in page and 'name="engine" value="vllm"' not in page

    again = client.post(f"/messages/{first.id}/again", data={"engine": "ollama"}, headers=HX)
    assert again.status_code == 200
    beside = newest_answer(db, conversation_id)
    assert beside.engine == "ollama" and beside.id != first.id
    # The same question with the same settings, from the same conversation.
    assert beside.thinking is False
    assert beside.parameters == {**first.parameters, "thinking": False}
    assert sent_texts(engines["ollama"].asked[-1]) == ["q1", "a1", "q2"]
    assert 'class="answers side-by-side"' in again.text
    assert f'id="message-{first.id}"' in again.text and f'id="message-{beside.id}"' in again.text
    # The new answer as it stands: streaming in its column, or (its engine is down) failed.
    assert re.search(f'id="message-{beside.id}" class="[^"]*status-(streaming|failed)', again.text)
    finish(client, beside.id, "a2 from Ollama")

    page = client.get(f"/c/{conversation_id}").text
    assert "a2 from vLLM" in page and "a2 from Ollama" in page
    # The first goes on, until the other is picked.
    assert page.count("✓ The conversation goes on from this answer") == 1
    pick = f'hx-post="/messages/{beside.id}/choose"'
    assert pick in page
    # Both engines have answered: nothing left to offer.
    assert f'hx-post="/messages/{first.id}/again"' not in page

    picked = client.post(f"/messages/{beside.id}/choose", headers=HX)
    assert picked.status_code == 200 and f'hx-post="/messages/{first.id}/choose"' in picked.text
    assert picked.text.count('class="stats"') == 2, "each answer with its own numbers"
    client.post(
        "/chat/send",
        data={**VALID_FORM, "content": "q3", "conversation_id": str(conversation_id)},
        headers=HX,
    )
    assert sent_texts(engines["vllm"].asked[-1]) == ["q1", "a1", "q2", "a2 from Ollama", "q3"]


def test_refused_requests_say_why_and_change_nothing(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = conversation_of(db, "q1", "a1", "q2", "a2")
    question, earlier, q2, last = messages.list_messages(db, conversation_id)
    hidden = answered(db, conversation_id, "a2, again")
    answer_versions.choose(db, q2.id, last.id)
    before = snapshot(db)
    cases = [
        ("/messages/999999/choose", {}, 404, "was not found"),
        ("/messages/999999/again", {"engine": "ollama"}, 404, "was not found"),
        (f"/messages/{question.id}/choose", {}, 409, "Only an answer"),
        (f"/messages/{question.id}/again", {"engine": "ollama"}, 409, "Only an answer"),
        (f"/messages/{earlier.id}/choose", {}, 409, "Only the last answer"),
        (f"/messages/{earlier.id}/again", {"engine": "ollama"}, 409, "Only the last answer"),
        (f"/messages/{earlier.id}/regenerate", OPTIONS, 409, "Only the last answer"),
        (f"/messages/{last.id}/again", {"engine": "ollama-openai"}, 422, "Unknown engine"),
        (f"/messages/{last.id}/again", {"engine": "llama.cpp"}, 422, "Unknown engine"),
        (f"/messages/{last.id}/again", {}, 422, "Unknown engine"),
        (f"/messages/{last.id}/again", {"engine": "vllm"}, 409, "vLLM has answered this"),
        (f"/messages/{hidden}/again", {"engine": "ollama"}, 409, "Only the version shown"),
        ("/messages/abc/choose", {}, 422, ""),
    ]
    for url, form, status, reason in cases:
        response = client.post(url, data=form, headers=HX)
        assert response.status_code == status, (url, form, response.text)
        assert reason in response.text, (url, form, response.text)
        assert "Traceback" not in response.text
    assert snapshot(db) == before


def test_nothing_changes_a_turn_while_an_answer_streams(tmp_path: Path) -> None:
    silent = SilentEngineServer()  # takes the request and never answers
    engines = {"vllm": DownEngine("vllm", "vLLM", silent.port)}
    app = create_app(Settings(), engines=engines, database=tmp_path / "duet.sqlite3")
    try:
        with TestClient(app, base_url=LOCAL) as client:
            db: sqlite3.Connection = app.state.db
            conversation_id = conversation_of(db, "q1", "a1")
            first = newest_answer(db, conversation_id)
            client.post(f"/messages/{first.id}/regenerate", data=OPTIONS, headers=HX)
            streaming = newest_answer(db, conversation_id)
            assert streaming.status == "streaming"
            before = snapshot(db)
            for url in (f"/messages/{first.id}/choose", f"/messages/{streaming.id}/again"):
                refused = client.post(url, data={"engine": "vllm"}, headers=HX)
                assert refused.status_code == 409 and "still streaming" in refused.text
            assert snapshot(db) == before
            client.post(f"/messages/{streaming.id}/stop", headers=HX)
    finally:
        silent.close()


def test_exports_keep_every_version_marked(client: TestClient, db: sqlite3.Connection) -> None:
    conversation_id = conversation_of(db, "q1", "a1")
    question_id = messages.list_messages(db, conversation_id)[0].id
    second = answered(db, conversation_id, "a1, again")
    beside = answered(db, conversation_id, "a1 from Ollama", engine="ollama")
    answer_versions.add_beside(db, beside, second)
    answer_versions.choose(db, question_id, beside)

    document = client.get(f"/conversations/{conversation_id}/export.json").json()
    assert document["version"] == 2
    found = {m["content"]: m.get("answer_version") for m in document["messages"]}
    assert found["q1"] is None
    assert found["a1"] == {
        "question_id": question_id, "version": 1, "versions": 2, "beside_id": None,
        "chosen": False,
    }  # fmt: skip
    assert found["a1, again"] == {
        "question_id": question_id, "version": 2, "versions": 2, "beside_id": None,
        "chosen": False,
    }  # fmt: skip
    assert found["a1 from Ollama"] == {
        "question_id": question_id, "version": 2, "versions": 2, "beside_id": second,
        "chosen": True,
    }  # fmt: skip

    markdown = client.get(f"/conversations/{conversation_id}/export.md").text
    assert "## vLLM · qwen3-test · no thinking (version 1 of 2)\n\na1\n" in markdown
    assert "## vLLM · qwen3-test · no thinking (version 2 of 2)\n\na1, again\n" in markdown
    assert (
        "## Ollama · qwen3-test · no thinking (version 2 of 2, beside vLLM's answer,"
        " the conversation goes on from this one)\n\na1 from Ollama\n"
    ) in markdown

    # Deleting the conversation deletes every version and what was recorded of them.
    conversations.delete_conversation(db, LOCAL_USER_ID, conversation_id)
    assert count(db, "messages") == count(db, "answer_sides") == count(db, "chosen_answers") == 0


def test_editing_an_earlier_question_forks_with_its_versions(
    client: TestClient, db: sqlite3.Connection, engines: dict[str, RecordingEngine]
) -> None:
    conversation_id = conversation_of(db, "q1", "a1")
    question, first = messages.list_messages(db, conversation_id)
    answered(db, conversation_id, "a1, again")
    answer_versions.choose(db, question.id, first.id)  # back to the first version
    for text in ("q2", "q3"):
        messages.add_user_message(db, conversation_id, text)
        answered(db, conversation_id, text.replace("q", "a"))
    q2 = next(m for m in messages.list_messages(db, conversation_id) if m.content == "q2")
    edited = client.post(
        f"/messages/{q2.id}/edit", data={**VALID_FORM, "content": "q2, edited"}, headers=HX
    )
    fork_id = int(edited.headers["HX-Redirect"].removeprefix("/c/"))
    assert sent_texts(engines["vllm"].asked[-1]) == ["q1", "a1", "q2, edited"]
    fork = answer_versions.load(db, fork_id)
    assert [len(turn.versions) for turn in fork.turns] == [2, 1]
    assert fork.turns[0].chosen is not None and fork.turns[0].chosen.content == "a1"


@pytest.fixture
def team_client(tmp_path: Path, engines: dict[str, RecordingEngine]) -> Iterator[TestClient]:
    app = create_app(Settings(mode="accounts"), engines=engines, database=tmp_path / "team.sqlite3")
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


def test_another_user_can_neither_switch_nor_ask_again(
    team_client: TestClient, engines: dict[str, RecordingEngine]
) -> None:
    db: sqlite3.Connection = team_client.app.state.db  # type: ignore[attr-defined]
    alice, alices = add_user(db, "alice", "user")
    _, bobs = add_user(db, "bob", "user")
    conversation_id = conversation_of(db, "q1", "alice's own answer", user_id=alice)
    answer = newest_answer(db, conversation_id)
    before = snapshot(db)
    for url, form in (
        (f"/messages/{answer.id}/choose", {}),
        (f"/messages/{answer.id}/again", {"engine": "ollama"}),
        (f"/messages/{answer.id}/regenerate", OPTIONS),
    ):
        refused = team_client.post(url, data=form, cookies={COOKIE: bobs}, headers=HX)
        assert refused.status_code == 404, (url, refused.text)
        assert "alice's own answer" not in refused.text
    assert snapshot(db) == before and engines["ollama"].asked == []
    mine = team_client.post(
        f"/messages/{answer.id}/again", data={"engine": "ollama"}, cookies={COOKIE: alices}
    )
    assert mine.status_code == 200 and len(engines["ollama"].asked) == 1


def test_a_share_link_shows_the_version_gone_on_from_and_no_control(
    team_client: TestClient,
) -> None:
    db: sqlite3.Connection = team_client.app.state.db  # type: ignore[attr-defined]
    alice, _ = add_user(db, "alice", "user")
    _, bobs = add_user(db, "bob", "user")
    conversation_id = conversation_of(db, "q1", "the first version", user_id=alice)
    second = answered(db, conversation_id, "the second version")
    beside = answered(db, conversation_id, "Ollama's, beside the second", engine="ollama")
    answer_versions.add_beside(db, beside, second)
    share = shares.create_share(db, alice, "conversation", conversation_id)
    page = team_client.get(f"/shared/{share.token}", cookies={COOKIE: bobs})
    assert page.status_code == 200
    assert ">2/2<" in page.text and 'class="answers side-by-side"' in page.text
    assert "the second version" in page.text and "Ollama's, beside the second" in page.text
    assert "the first version" not in page.text
    assert "hx-post" not in page.text and "Answer again with" not in page.text
