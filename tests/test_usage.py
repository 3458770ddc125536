"""Usage per request (store/api_usage.py) and the admin's chart of it (duet/usage_chart.py):
rows without content, how an answer's end and a stopped server close them, the sums per day,
user and engine, and the chart's series, bars and totals."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from duet.app import build_templates
from duet.limits import admit, admit_answer
from duet.store import api_usage, conversations, messages, open_database, users
from duet.store.api_usage import DailyUsage, Outcome
from duet.store.messages import AnswerRecord
from duet.usage_chart import build_chart, nice_ceiling

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    database = open_database(tmp_path / "duet.sqlite3")
    yield database
    database.close()


def user(db: sqlite3.Connection, name: str) -> int:
    return users.create_user(db, name, "a hash", "user").id


def request(db: sqlite3.Connection, user_id: int, engine: str, at: datetime, tokens: int) -> None:
    request_id = admit(db, user_id, key_id=None, engine=engine, model="qwen3", now=at)
    api_usage.finish_request(db, request_id, Outcome("completed", 100, tokens, 5.0, 50.0))


def test_a_usage_row_holds_counts_and_timings_never_text(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(api_requests)")}
    assert columns == {
        "id", "user_id", "key_id", "message_id", "engine", "model", "prompt_tokens",
        "completion_tokens", "ttft_ms", "duration_ms", "status", "created_at",
    }  # fmt: skip


def test_a_web_answer_gets_its_row_once_it_has_ended(db: sqlite3.Connection) -> None:
    ada = user(db, "ada")
    conversation = conversations.create_conversation(db, ada, "a chat")
    admit_answer(db, conversation.id, NOON)
    answer = messages.start_assistant_message(
        db, conversation.id, engine="ollama", model="qwen3:tiny", thinking=True, parameters={}
    )
    # Streaming, it is counted from its message; no row is written for it yet.
    assert api_usage.running(db, ada) == 1
    streaming = AnswerRecord(status="streaming", content="secret words", completion_tokens=3)
    assert api_usage.record_answer(db, answer.id, streaming) is False
    ended = AnswerRecord(
        status="complete",
        content="secret words",
        prompt_tokens=12,
        completion_tokens=30,
        ttft_ms=40.5,
        total_ms=900.0,
    )
    messages.save_assistant(db, answer.id, ended)
    assert api_usage.record_answer(db, answer.id, ended) is True
    assert api_usage.record_answer(db, answer.id, AnswerRecord(status="failed")) is False
    row = db.execute("SELECT * FROM api_requests").fetchone()
    assert dict(row) == {
        "id": row["id"], "user_id": ada, "key_id": None, "message_id": answer.id,
        "engine": "ollama", "model": "qwen3:tiny", "prompt_tokens": 12,
        "completion_tokens": 30, "ttft_ms": 40.5, "duration_ms": 900.0,
        "status": "completed", "created_at": answer.created_at,
    }  # fmt: skip
    counted = (api_usage.running(db, ada), api_usage.started_since(db, ada, ""))
    assert counted == (0, 1) and api_usage.tokens_since(db, ada, "") == 30
    # Usage outlives the conversation.
    conversations.delete_conversation(db, ada, conversation.id)
    kept = db.execute("SELECT message_id, completion_tokens FROM api_requests").fetchone()
    assert tuple(kept) == (None, 30)


def test_requests_a_stopped_server_left_streaming_are_interrupted_at_start(tmp_path: Path) -> None:
    path = tmp_path / "duet.sqlite3"
    db = open_database(path)
    ada = user(db, "ada")
    admit(db, ada, key_id=None, engine="vllm", model="qwen3", now=NOON)
    db.close()
    db = open_database(path)
    assert [tuple(r) for r in db.execute("SELECT status FROM api_requests")] == [("interrupted",)]
    assert api_usage.running(db, ada) == 0
    db.close()


def test_usage_per_day_user_and_engine_and_the_totals(db: sqlite3.Connection) -> None:
    ada, bob = user(db, "ada"), user(db, "bob")
    request(db, ada, "vllm", NOON, 10)
    request(db, ada, "vllm", NOON.replace(hour=13), 5)
    request(db, ada, "ollama", NOON, 7)
    request(db, bob, "vllm", NOON.replace(day=2), 20)
    request(db, bob, "vllm", NOON.replace(month=11, day=1), 1000)  # before `since`
    api_usage.record_refused(
        db, bob, key_id=None, engine="vllm", model="q", created_at=NOON.replace(day=2).isoformat()
    )
    rows = api_usage.daily_usage(db, "2026-11-15")
    got = [(r.day, r.user_name, r.engine, r.requests, r.refused, r.completion_tokens) for r in rows]
    assert got == [
        ("2026-12-01", "ada", "ollama", 1, 0, 7),
        ("2026-12-01", "ada", "vllm", 2, 0, 15),
        ("2026-12-02", "bob", "vllm", 1, 1, 20),
    ]  # fmt: skip
    totals = api_usage.totals_since(db, "2026-11-15")
    summed = [
        (t.user_name, t.engine, t.requests, t.refused, t.prompt_tokens, t.completion_tokens)
        for t in totals
    ]
    assert summed == [
        ("ada", "ollama", 1, 0, 100, 7),
        ("ada", "vllm", 2, 0, 200, 15),
        ("bob", "vllm", 1, 1, 100, 20),
        ("everyone", "", 4, 1, 400, 42),
    ]  # fmt: skip
    assert totals[-1].user_id is None
    assert api_usage.totals_since(db, "2027-01-01") == []


def daily(day: str, name: str, engine: str, tokens: int) -> DailyUsage:
    return DailyUsage(day, 0, name, engine, 1, 0, 0, tokens)


def test_the_chart_has_a_stacked_series_per_user_and_engine() -> None:
    rows = [
        daily("2026-11-28", "bob", "vllm", 300),
        daily("2026-11-30", "ada", "vllm", 100),
        daily("2026-11-30", "Ada", "ollama", 50),
        daily("2026-11-30", "bob", "vllm", 250),
        daily("2026-11-01", "ada", "vllm", 9999),  # outside the chart's days
    ]
    chart = build_chart(rows, date(2026, 11, 25), 7, {"vllm": "vLLM"})
    assert [(e.label, e.tokens) for e in chart.legend] == [
        ("Ada · ollama", 50),
        ("ada · vLLM", 100),
        ("bob · vLLM", 550),
    ]
    assert [(b.series, b.day, b.tokens) for b in chart.bars] == [
        (0, "2026-11-30", 50),
        (1, "2026-11-30", 100),
        (2, "2026-11-28", 300),
        (2, "2026-11-30", 250),
    ]
    # Stacked: on the 30th each bar starts where the one below it ends.
    day_30 = [b for b in chart.bars if b.day == "2026-11-30"]
    assert day_30[0].y + day_30[0].height == chart.bottom
    assert day_30[1].y + day_30[1].height == pytest.approx(day_30[0].y)
    assert day_30[2].y + day_30[2].height == pytest.approx(day_30[1].y)
    # The tallest day (400 tokens) fits under the top tick, which is a round number.
    assert chart.y_ticks[-1].label == "400"
    assert min(b.y for b in chart.bars) >= chart.top
    assert day_30[2].title == "bob · vLLM, 2026-11-30: 250 tokens"


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 4), (3, 4), (400, 400), (401, 800), (12_345, 20_000), (99, 100), (101, 200)],
)
def test_the_top_tick_is_a_round_number_at_or_above_the_tallest_day(value: int, top: int) -> None:
    assert nice_ceiling(value) == top


def test_the_chart_renders_as_svg_without_inline_style() -> None:
    chart = build_chart(
        [daily("2026-11-30", "<b>mallory</b>", "vllm", 5)], date(2026, 11, 1), 30, {}
    )
    html = build_templates().get_template("_usage_chart.html").render(chart=chart)
    assert re.findall(r'<rect id="(bar-[^"]+)"', html) == ["bar-0-2026-11-30"]
    assert "&lt;b&gt;mallory&lt;/b&gt; · vllm: 5 tokens" in html
    assert "<b>" not in html
    assert "style" not in html  # the CSP allows no inline style
    empty = build_chart([], date(2026, 11, 1), 30, {})
    assert "No requests in these days" in (
        build_templates().get_template("_usage_chart.html").render(chart=empty)
    )
