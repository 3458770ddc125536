"""Compare answers belong to their run (issue 16, defect 10), and runs can be deleted, without
engines: a run's answers are saved in its own rows and add nothing to the chat; Continue in
chat makes one conversation of the prompt and that answer; Delete removes a run (stopping it
first if it is still answering) and revokes its links; the m012 migration moves the
conversations older runs made. Who may use these routes is in test_authorization.py.

The engine here is scripted: it plays a fixed stream of events (or waits until it is stopped),
for the app's own bookkeeping; what the real engines send is tested in test_compare_engines.py
and tests/test_browser_runs.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from duet.app import create_app
from duet.engines.base import ChatRequest, EngineHealth, OnSent
from duet.engines.events import AnswerDelta, Done, EngineName, ReasoningDelta, StreamEvent, Usage
from duet.settings import Settings
from duet.store import conversations, messages, runs, shares
from duet.store.db import connect, now_iso
from duet.store.migrations import MIGRATIONS, migrate
from duet.store.users import LOCAL_USER_ID
from fastapi.testclient import TestClient

LOCAL = "http://127.0.0.1:8080"
HX = {"HX-Request": "true"}
FORM = {
    "content": "Why is the sky blue?",
    "engines": ["vllm", "ollama"],
    "mode": "concurrent",
    "temperature": "0",
    "top_p": "1",
    "top_k": "0",
    "max_tokens": "8",
}


class ScriptedEngine:
    """Answers every request with `text` in three chunks after a little thinking, or, with
    `hold`, sends the request and then waits until the answer is stopped."""

    def __init__(self, name: EngineName, label: str, text: str, hold: bool = False) -> None:
        self.name = name
        self.label = label
        self.model = f"{name}-model"
        self.text = text
        self.hold = hold
        self.requests: list[ChatRequest] = []

    async def stream_chat(
        self, request: ChatRequest, on_sent: OnSent | None = None
    ) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        if on_sent is not None:
            on_sent(time.perf_counter())
        if self.hold:
            await asyncio.sleep(3600)
        yield ReasoningDelta("Hmm.", time.perf_counter(), 1)
        third = len(self.text) // 3
        pieces = (self.text[:third], self.text[third : 2 * third], self.text[2 * third :])
        for chunk, piece in enumerate(pieces, start=2):
            await asyncio.sleep(0.001)
            yield AnswerDelta(piece, time.perf_counter(), chunk)
        yield Usage(12, 5, time.perf_counter(), {"eval_duration": 0.25})
        yield Done("stop", time.perf_counter())

    async def health(self) -> EngineHealth:
        return EngineHealth(self.name, up=True, models=(self.model,))

    async def aclose(self) -> None:
        return None


def scripted_app(tmp_path: Path, hold: bool = False) -> Iterator[TestClient]:
    engines = {
        "vllm": ScriptedEngine("vllm", "vLLM", "Rayleigh scattering.", hold),
        "ollama": ScriptedEngine("ollama", "Ollama", "Short waves scatter more.", hold),
    }
    app = create_app(Settings(), engines=engines, database=tmp_path / "duet.sqlite3")  # type: ignore[arg-type]
    with TestClient(app, base_url=LOCAL) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from scripted_app(tmp_path)


@pytest.fixture
def holding(tmp_path: Path) -> Iterator[TestClient]:
    yield from scripted_app(tmp_path, hold=True)


def database(client: TestClient) -> sqlite3.Connection:
    return client.app.state.db  # type: ignore[attr-defined,no-any-return]


def count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def finished_run(client: TestClient) -> runs.CompareRun:
    """Send FORM from the compare page and read both columns to their end."""
    response = client.post("/compare", data=FORM, headers=HX)
    assert response.status_code == 200, response.text
    run_id = int(response.headers["HX-Push-Url"].rsplit("/", 1)[1])
    run = runs.get_run(database(client), LOCAL_USER_ID, run_id)
    assert run is not None
    for answer in run.answers:
        with client.stream("GET", f"/compare/answers/{answer.id}/stream") as stream:
            text = "".join(stream.iter_text())
        assert "event: end" in text
    deadline = time.monotonic() + 10
    while not (run := runs.get_run(database(client), LOCAL_USER_ID, run_id)).finished:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, run
        time.sleep(0.01)
    return run


def test_a_run_keeps_its_answers_in_its_own_rows_and_adds_nothing_to_the_chat(
    client: TestClient,
) -> None:
    db = database(client)
    run = finished_run(client)
    vllm, ollama = run.answers
    assert (vllm.status, vllm.content, vllm.reasoning) == (
        "complete", "Rayleigh scattering.", "Hmm.",
    )  # fmt: skip
    assert (ollama.status, ollama.content) == ("complete", "Short waves scatter more.")
    for answer in run.answers:
        assert (answer.prompt_tokens, answer.output_tokens, answer.finish_reason) == (12, 5, "stop")
        assert answer.ttft_ms is not None and answer.ttfa_ms is not None
        assert answer.total_ms is not None and answer.total_ms >= answer.ttfa_ms
        assert [kind for _, _, kind, _ in answer.server_arrivals] == ["r", "a", "a", "a"]
        assert (answer.conversation_id, answer.message_id) == (None, None)
    # The engines were asked the prompt alone (no other column's answer).
    engines = client.app.state.engines  # type: ignore[attr-defined]
    for engine in engines.values():
        [request] = engine.requests
        assert [(m.role, m.content) for m in request.messages] == [("user", FORM["content"])]
    assert (count(db, "conversations"), count(db, "messages")) == (0, 0)
    sidebar = client.get("/conversations", headers=HX).text
    assert 'class="conversation-item' not in sidebar
    assert "Nothing matches" in client.get("/conversations?q=Rayleigh", headers=HX).text
    # Each answer was admitted under the limits as a request, and its row has its outcome.
    rows = db.execute("SELECT engine, status, completion_tokens, message_id FROM api_requests")
    assert sorted(tuple(row) for row in rows) == [
        ("ollama", "completed", 5, None),
        ("vllm", "completed", 5, None),
    ]
    page = client.get(f"/runs/{run.id}").text
    assert "Rayleigh scattering." in page and "Short waves scatter more." in page
    for answer in run.answers:
        assert f'hx-post="/compare/answers/{answer.id}/continue"' in page
    assert f'hx-delete="/runs/{run.id}"' in page
    exported = json.loads(client.get(f"/runs/{run.id}.json").text)
    assert exported["runs"][0]["answers"][0]["content"] == "Rayleigh scattering."


def test_continue_in_chat_makes_one_conversation_and_opens_it(client: TestClient) -> None:
    db = database(client)
    run = finished_run(client)
    answer = run.answers[1]
    response = client.post(f"/compare/answers/{answer.id}/continue", headers=HX)
    assert response.status_code == 200
    target = response.headers["HX-Redirect"]
    conversation_id = int(target.rsplit("/", 1)[1])
    conversation = conversations.get_conversation(db, LOCAL_USER_ID, conversation_id)
    assert conversation is not None
    assert conversation.title == "Why is the sky blue? · Ollama"
    question, reply = messages.list_messages(db, conversation_id)
    assert (question.role, question.content) == ("user", FORM["content"])
    assert (reply.engine, reply.content, reply.completion_tokens) == (
        "ollama", "Short waves scatter more.", 5,
    )  # fmt: skip
    assert reply.ttft_ms == answer.ttft_ms and reply.arrivals == answer.server_arrivals
    # Listed in the sidebar, and its page shows the answer with its numbers.
    assert f"conversation-{conversation_id}" in client.get("/conversations", headers=HX).text
    chat = client.get(target).text
    assert "Short waves scatter more." in chat and "5 tokens" in chat
    # A second click, from a page without htmx too, opens the same conversation.
    again = client.post(f"/compare/answers/{answer.id}/continue", follow_redirects=False)
    assert (again.status_code, again.headers["location"]) == (303, target)
    assert count(db, "conversations") == 1
    # Continuing the other answer makes a conversation of its own.
    other = client.post(f"/compare/answers/{run.answers[0].id}/continue", headers=HX)
    assert other.headers["HX-Redirect"] != target
    assert count(db, "conversations") == 2


def test_continue_is_refused_while_an_answer_streams_and_for_unknown_answers(
    holding: TestClient,
) -> None:
    response = holding.post("/compare", data=FORM, headers=HX)
    assert response.status_code == 200
    run_id = int(response.headers["HX-Push-Url"].rsplit("/", 1)[1])
    run = runs.get_run(database(holding), LOCAL_USER_ID, run_id)
    assert run is not None
    refused = holding.post(f"/compare/answers/{run.answers[0].id}/continue", headers=HX)
    assert refused.status_code == 409 and "still streaming" in refused.text
    assert holding.post("/compare/answers/999/continue", headers=HX).status_code == 404
    assert count(database(holding), "conversations") == 0


def test_deleting_a_run_removes_it_and_its_answers_and_keeps_its_continuation(
    client: TestClient,
) -> None:
    db = database(client)
    run = finished_run(client)
    kept = finished_run(client)
    continued = client.post(f"/compare/answers/{run.answers[0].id}/continue", headers=HX)
    conversation_id = int(continued.headers["HX-Redirect"].rsplit("/", 1)[1])
    share = shares.create_share(db, LOCAL_USER_ID, "run", run.id)
    # From the list: the row goes (htmx removes it), no redirect.
    deleted = client.delete(f"/runs/{run.id}", headers={**HX, "HX-Current-URL": LOCAL + "/runs"})
    assert deleted.status_code == 200 and "HX-Redirect" not in deleted.headers
    assert runs.get_run(db, LOCAL_USER_ID, run.id) is None
    answers = db.execute("SELECT count(*) FROM compare_answers WHERE run_id = ?", (run.id,))
    assert answers.fetchone()[0] == 0
    assert shares.find_live_share(db, share.token) is None
    assert client.get(f"/runs/{run.id}").status_code == 404
    assert f'href="/runs/{run.id}"' not in client.get("/runs").text
    assert f'href="/runs/{kept.id}"' in client.get("/runs").text
    # The conversation continued from it is the user's own, and stays.
    assert conversations.get_conversation(db, LOCAL_USER_ID, conversation_id) is not None
    assert client.delete(f"/runs/{run.id}", headers=HX).status_code == 404
    # From the run's own page: there is nothing left to show, so back to the list.
    own_page = {**HX, "HX-Current-URL": f"{LOCAL}/runs/{kept.id}"}
    deleted = client.delete(f"/runs/{kept.id}", headers=own_page)
    assert (deleted.status_code, deleted.headers["HX-Redirect"]) == (200, "/runs")
    assert count(db, "compare_runs") == 0


def test_deleting_a_run_still_answering_stops_it_first(holding: TestClient) -> None:
    db = database(holding)
    response = holding.post("/compare", data={**FORM, "mode": "sequential"}, headers=HX)
    run_id = int(response.headers["HX-Push-Url"].rsplit("/", 1)[1])
    compares = holding.app.state.compare_runs  # type: ignore[attr-defined]
    assert run_id in compares.running
    [streaming] = db.execute(
        "SELECT status FROM compare_answers WHERE run_id = ? AND position = 0", (run_id,)
    ).fetchone()
    assert streaming == "streaming"
    deleted = holding.delete(f"/runs/{run_id}", headers=HX)
    assert deleted.status_code == 200
    assert run_id not in compares.running and not compares.generations.running
    assert count(db, "compare_runs") == 0
    # The answer that streamed was stopped (its request says so); the queued one never started.
    rows = db.execute("SELECT engine, status FROM api_requests").fetchall()
    assert [tuple(row) for row in rows] == [("vllm", "stopped")]
    engines = holding.app.state.engines  # type: ignore[attr-defined]
    assert (len(engines["vllm"].requests), len(engines["ollama"].requests)) == (1, 0)


# m012: the conversations older runs made, one per answer.


def old_compare_answer(
    db: sqlite3.Connection, run_id: int, position: int, title: str, turns: int = 1
) -> tuple[int, int]:
    """An answer as runs stored it before m012: a conversation of its own, holding the prompt
    and the answer (and `turns - 1` more questions and answers the user went on with); returns
    the conversation's and the answer message's ids."""
    stamp = now_iso()
    conversation_id = db.execute(
        "INSERT INTO conversations (user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?)"
        " RETURNING id",
        (LOCAL_USER_ID, title, stamp, stamp),
    ).fetchone()[0]
    message_id = 0
    for turn in range(turns):
        db.execute(
            "INSERT INTO messages (conversation_id, role, content, created_at, updated_at)"
            " VALUES (?, 'user', ?, ?, ?)",
            (conversation_id, f"Question {turn}", stamp, stamp),
        )
        answer_id = db.execute(
            "INSERT INTO messages (conversation_id, role, content, reasoning, engine, model,"
            " finish_reason, ttft_ms, ttfa_ms, total_ms, created_at, updated_at)"
            " VALUES (?, 'assistant', ?, 'thought', 'vllm', 'm', 'stop', 10, 20, 30, ?, ?)"
            " RETURNING id",
            (conversation_id, f"Answer {position}.{turn}", stamp, stamp),
        ).fetchone()[0]
        message_id = message_id or answer_id
    db.execute(
        "INSERT INTO compare_answers (run_id, position, engine, model, conversation_id,"
        " message_id, status, created_at, updated_at)"
        " VALUES (?, ?, 'vllm', 'm', ?, ?, 'complete', ?, ?)",
        (run_id, position, conversation_id, message_id, stamp, stamp),
    )
    return conversation_id, message_id


def test_m012_removes_the_conversations_nobody_touched_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    names = [migration.__name__ for migration in MIGRATIONS]
    at = names.index("m012_compare_answers_own_their_text")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for migration in MIGRATIONS[:at]:
        migration(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'before m012')", (migration.__name__,))
    stamp = now_iso()
    run_id = db.execute(
        "INSERT INTO compare_runs (user_id, prompt, mode, thinking, created_at)"
        " VALUES (?, 'Question 0', 'concurrent', 0, ?) RETURNING id",
        (LOCAL_USER_ID, stamp),
    ).fetchone()[0]
    old_compare_answer(db, run_id, 0, "Question 0 · vLLM (compare)")  # untouched: removed
    went_on, went_on_answer = old_compare_answer(db, run_id, 1, "Question 0 · vLLM (compare)", 2)
    renamed, _ = old_compare_answer(db, run_id, 2, "Sky colours")
    shared, _ = old_compare_answer(db, run_id, 3, "Question 0 · vLLM (compare)")
    db.execute(
        "INSERT INTO shares (token, user_id, kind, object_id, created_at)"
        " VALUES ('t', ?, 'conversation', ?, ?)",
        (LOCAL_USER_ID, shared, stamp),
    )
    revoked, _ = old_compare_answer(db, run_id, 4, "Question 0 · vLLM (compare)")
    db.execute(
        "INSERT INTO shares (token, user_id, kind, object_id, created_at, revoked_at)"
        " VALUES ('u', ?, 'conversation', ?, ?, ?)",
        (LOCAL_USER_ID, revoked, stamp, stamp),
    )
    chat = db.execute(
        "INSERT INTO conversations (user_id, title, created_at, updated_at)"
        " VALUES (?, 'A chat (compare)', ?, ?) RETURNING id",
        (LOCAL_USER_ID, stamp, stamp),
    ).fetchone()[0]
    db.close()

    db = connect(path)
    try:
        assert "m012_compare_answers_own_their_text" in migrate(db)
        left = {row[0] for row in db.execute("SELECT id FROM conversations")}
        assert left == {went_on, renamed, shared, chat}
        run = runs.get_run(db, LOCAL_USER_ID, run_id)
        assert run is not None
        # Every answer has its text in the run, whatever became of its conversation.
        assert [a.content for a in run.answers] == [f"Answer {n}.0" for n in range(5)]
        first = run.answers[0]
        assert (first.reasoning, first.finish_reason) == ("thought", "stop")
        assert (first.ttft_ms, first.ttfa_ms, first.total_ms) == (10, 20, 30)
        # The removed ones are detached; the kept ones stay linked as the answer's continuation.
        assert (first.conversation_id, first.message_id) == (None, None)
        assert (run.answers[1].conversation_id, run.answers[1].message_id) == (
            went_on, went_on_answer,
        )  # fmt: skip
        assert len(messages.list_messages(db, went_on)) == 4
        assert run.answers[4].conversation_id is None
        assert [tuple(row) for row in db.execute("PRAGMA foreign_key_check")] == []
    finally:
        db.close()
