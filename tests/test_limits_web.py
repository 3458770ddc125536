"""The web UI obeys the limits (duet/limits.py): a send, regenerate or edit over a limit is
answered 429 in the page's flash region with Retry-After, and nothing of it is stored, so the
composer keeps what was typed (duet.js empties it only after a send that succeeded); the answer's
end frees its place and records its usage.

The engine is a real adapter pointed at a loopback server that takes the request and never
answers, so an answer streams for as long as the test needs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from duet.app import create_app
from duet.engines.openai import OllamaOpenAIEngine, VllmEngine
from duet.limits import stamp
from duet.settings import Settings
from duet.store import api_usage, user_limits
from duet.store.user_limits import LimitValues
from fastapi.testclient import TestClient
from test_accounts import HX, Team, build_app
from test_bad_input import COMPARE_FORM, SilentEngineServer
from test_views import LOCAL, VALID_FORM


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    server = SilentEngineServer()
    engine = VllmEngine(
        "vllm",
        "vLLM",
        f"http://127.0.0.1:{server.port}",
        "qwen3-test",
        connect_timeout=60.0,
        read_timeout=60.0,
    )
    # A second engine on the same server, for compare runs.
    other = OllamaOpenAIEngine(
        "ollama-openai", "Ollama /v1", engine.url, "qwen3-test", connect_timeout=60.0,
        read_timeout=60.0,
    )  # fmt: skip
    engines = {"vllm": engine, "ollama-openai": other}
    app = create_app(Settings(mode="accounts"), engines=engines, database=tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
        yield Team(app, client, app.state.db)
    server.close()


def send(team: Team, content: str, **extra: str) -> tuple[int, str, dict[str, str]]:
    response = team.client.post(
        "/chat/send", data={**VALID_FORM, "content": content, **extra}, headers=HX
    )
    return response.status_code, response.text, dict(response.headers)


def streaming_answers(team: Team, user_id: int) -> list[int]:
    rows = team.db.execute(
        "SELECT messages.id FROM messages JOIN conversations ON conversations.id = "
        "messages.conversation_id WHERE conversations.user_id = ? AND status = 'streaming'",
        (user_id,),
    )
    return [row[0] for row in rows]


def stored_user_texts(team: Team) -> list[str]:
    rows = team.db.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id")
    return [row[0] for row in rows]


def test_a_send_over_the_limit_is_429_in_the_flash_and_stores_nothing(team: Team) -> None:
    team.add("ada", "admin")
    bob = team.add("bob", "user")
    user_limits.set_defaults(team.db, LimitValues(max_concurrent=1))
    team.as_(bob)
    status, _, _ = send(team, "The first question")
    assert status == 200
    [running] = streaming_answers(team, bob.id)

    status, text, headers = send(team, "A second question, typed with care")
    assert status == 429
    assert "You have 1 answer running; the limit is 1. Try again when one ends." in text
    assert headers["retry-after"] == "5"
    assert headers["hx-retarget"] == "#flash"
    assert stored_user_texts(team) == ["The first question"]
    assert team.count("conversations") == 1
    # Other clients are told the same, in their own form.
    plain = team.client.post("/chat/send", data={**VALID_FORM, "content": "again"})
    assert plain.status_code == 429 and plain.headers["retry-after"] == "5"
    assert plain.json() == {
        "error": "You have 1 answer running; the limit is 1. Try again when one ends."
    }

    # The answer's end frees the place (Stop here) and records how it ended.
    assert team.client.post(f"/messages/{running}/stop", headers=HX).status_code == 200
    row = team.db.execute(
        "SELECT status, key_id FROM api_requests WHERE message_id = ?", (running,)
    )
    assert tuple(row.fetchone()) == ("stopped", None)
    status, _, _ = send(team, "A second question, typed with care")
    assert status == 200
    assert stored_user_texts(team) == ["The first question", "A second question, typed with care"]


def test_one_users_limit_is_theirs_alone(team: Team) -> None:
    ada = team.add("ada", "admin")
    bob = team.add("bob", "user")
    user_limits.set_override(team.db, bob.id, LimitValues(max_concurrent=0))
    team.as_(bob)
    status, text, _ = send(team, "Hello")
    assert status == 429 and "its limit is 0 at a time" in text
    team.as_(ada)
    assert send(team, "Hello")[0] == 200


def test_regenerate_and_edit_over_the_limit_change_nothing(team: Team) -> None:
    team.add("ada", "admin")
    bob = team.add("bob", "user")
    team.as_(bob)
    assert send(team, "Question one")[0] == 200
    [first] = streaming_answers(team, bob.id)
    team.client.post(f"/messages/{first}/stop", headers=HX)
    conversation_id = team.db.execute(
        "SELECT conversation_id FROM messages WHERE id = ?", (first,)
    ).fetchone()[0]
    question = team.db.execute(
        "SELECT id FROM messages WHERE role = 'user' AND conversation_id = ?", (conversation_id,)
    ).fetchone()[0]
    assert send(team, "Question two, elsewhere")[0] == 200  # keeps a place taken
    user_limits.set_defaults(team.db, LimitValues(max_concurrent=1))
    before = list(team.db.iterdump())
    regenerated = team.client.post(f"/messages/{first}/regenerate", data=VALID_FORM, headers=HX)
    assert regenerated.status_code == 429, regenerated.text
    edited = team.client.post(
        f"/messages/{question}/edit",
        data={**VALID_FORM, "content": "Question one, again"},
        headers=HX,
    )
    assert edited.status_code == 429, edited.text
    assert list(team.db.iterdump()) == before


def test_a_spent_token_budget_refuses_a_send_until_midnight_utc(team: Team) -> None:
    team.add("ada", "admin")
    bob = team.add("bob", "user")
    user_limits.set_defaults(team.db, LimitValues(tokens_per_day=1000))
    now = datetime.now(UTC)
    spent = api_usage.start_request(
        team.db, bob.id, key_id=None, engine="vllm", model="qwen3-test", created_at=stamp(now)
    )
    api_usage.finish_request(team.db, spent, api_usage.Outcome("completed", 10, 1000))
    team.as_(bob)
    status, text, headers = send(team, "One more")
    assert status == 429
    assert "You have used 1,000 tokens today (UTC); the limit is 1,000 a day." in text
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
    assert abs(int(headers["retry-after"]) - (midnight - now.timestamp())) < 60
    assert stored_user_texts(team) == []


def test_every_web_answer_is_recorded_with_its_outcome_and_no_text(tmp_path: Path) -> None:
    """An engine that is down: the answer fails at once, and its request says so."""
    app = build_app(Settings(mode="accounts"), tmp_path / "duet.sqlite3")
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
        team = Team(app, client, app.state.db)
        team.add("ada", "admin")
        bob = team.add("bob", "user")
        team.as_(bob)
        assert send(team, "What is the capital of France?")[0] == 200
        deadline = time.monotonic() + 10
        while streaming_answers(team, bob.id):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rows = [dict(row) for row in team.db.execute("SELECT * FROM api_requests")]
    assert len(rows) == 1
    row = rows[0]
    assert (row["user_id"], row["key_id"], row["engine"], row["model"], row["status"]) == (
        bob.id, None, "vllm", "qwen3-test", "failed",
    )  # fmt: skip
    assert row["duration_ms"] is not None and row["completion_tokens"] is None
    assert "France" not in repr(rows)


def test_a_compare_run_starts_the_answers_it_has_room_for(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    team.add("ada", "admin")
    bob = team.add("bob", "user")
    user_limits.set_defaults(team.db, LimitValues(max_concurrent=1))
    team.as_(bob)
    form = {**COMPARE_FORM, "engines": ["vllm", "ollama-openai"], "content": "Compare this"}
    started = team.client.post("/compare", data=form, headers=HX)
    assert started.status_code == 200, started.text
    deadline = time.monotonic() + 10
    while True:
        rows = team.db.execute(
            "SELECT engine, status, error FROM compare_answers ORDER BY position"
        )
        answers = [tuple(row) for row in rows]
        if answers[1][1] != "queued":
            break
        assert time.monotonic() < deadline, answers
        time.sleep(0.01)
    assert answers[0][:2] == ("vllm", "streaming")
    assert answers[1][:2] == ("ollama-openai", "failed")
    assert answers[1][2] == (
        "Did not start: You have 1 answer running; the limit is 1. Try again when one ends."
    )
    # A limit is not a failure of Duet's: nothing is logged as an error.
    assert not [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}], caplog.text
