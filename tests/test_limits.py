"""Limits per user (duet/limits.py) over a real store: N+1 simultaneous requests against a limit
of N, the minute's sliding window, the day's token budget until the day turns (the clock
injected), overrides over defaults, and how requests end in the usage rows."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from duet.limits import CONCURRENT_RETRY_AFTER_SECONDS, Limits, OverLimit, admit_answer
from duet.store import api_usage, conversations, messages, open_database, user_limits, users
from duet.store.api_usage import Outcome
from duet.store.user_limits import NO_LIMITS, LimitValues


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    database = open_database(tmp_path / "duet.sqlite3")
    yield database
    database.close()


@pytest.fixture
def ada(db: sqlite3.Connection) -> int:
    return users.create_user(db, "ada", "a hash", "admin").id


@pytest.fixture
def bob(db: sqlite3.Connection) -> int:
    return users.create_user(db, "bob", "a hash", "user").id


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def limits(db: sqlite3.Connection, clock: Clock) -> Limits:
    return Limits(db, clock)


def statuses(db: sqlite3.Connection, user_id: int) -> list[str]:
    rows = db.execute("SELECT status FROM api_requests WHERE user_id = ? ORDER BY id", (user_id,))
    return [row[0] for row in rows]


def ask(limits: Limits, user_id: int) -> OverLimit | None:
    """One /v1-style request, ended at once; the refusal if there was one."""
    try:
        admitted = limits.admit(user_id, key_id=None, engine="vllm", model="qwen3")
    except OverLimit as refusal:
        return refusal
    admitted.finish(Outcome("completed", 10, 1))
    return None


async def test_n_plus_one_simultaneous_requests_against_a_limit_of_n_give_exactly_one_refusal(
    db: sqlite3.Connection, limits: Limits, ada: int
) -> None:
    n = 3
    user_limits.set_defaults(db, LimitValues(max_concurrent=n))
    release = asyncio.Event()
    all_in = asyncio.Barrier(n + 1)

    async def request() -> str:
        await all_in.wait()  # every request is underway before any is admitted
        try:
            with limits.hold(ada, key_id=None, engine="vllm", model="qwen3") as admitted:
                await release.wait()
                admitted.finish(Outcome("completed", 5, 2, 1.0, 2.0))
        except OverLimit as refusal:
            return refusal.message
        return "answered"

    tasks = [asyncio.create_task(request()) for _ in range(n + 1)]
    while sum(status == "streaming" for status in statuses(db, ada)) < n:
        await asyncio.sleep(0.001)
    refused = [task for task in tasks if task.done()]
    assert len(refused) == 1
    assert refused[0].result() == (
        "You have 3 answers running; the limit is 3. Try again when one ends."
    )
    release.set()
    answers = await asyncio.gather(*tasks)
    assert sorted(answers) == sorted(["answered"] * n + [refused[0].result()])
    assert sorted(statuses(db, ada)) == ["completed"] * n + ["refused"]
    # With every answer ended, there is room again.
    assert ask(limits, ada) is None


def test_web_ui_answers_and_api_requests_share_the_limit(
    db: sqlite3.Connection, limits: Limits, clock: Clock, ada: int
) -> None:
    user_limits.set_defaults(db, LimitValues(max_concurrent=2, requests_per_minute=3))
    conversation = conversations.create_conversation(db, ada, "a chat")
    # Web answers are stamped by the store's own clock, the real one: so is /v1's here, or the
    # minute's window would hold only one kind.
    clock.now = datetime.now(UTC)

    def web_answer() -> messages.Message:
        """What turns.store_answer_row does: the check, then the answer's streaming row."""
        admit_answer(db, conversation.id)
        return messages.start_assistant_message(
            db, conversation.id, engine="ollama", model="qwen3", thinking=False, parameters={}
        )

    answer = web_answer()
    api = limits.admit(ada, key_id=None, engine="vllm", model="qwen3")
    refusal = ask(limits, ada)
    assert refusal is not None and refusal.limit == "concurrent"
    assert refusal.retry_after == CONCURRENT_RETRY_AFTER_SECONDS
    assert "2 answers running; the limit is 2" in refusal.message
    with pytest.raises(OverLimit, match="2 answers running"):
        web_answer()
    api.finish(Outcome("completed"))
    web_answer()  # the API request's end made room
    # The web answers count in the minute's window too, streaming or ended.
    ended = messages.AnswerRecord(status="complete", completion_tokens=3)
    messages.save_assistant(db, answer.id, ended)
    api_usage.record_answer(db, answer.id, ended)
    with pytest.raises(OverLimit, match="started 3 answers in the last minute"):
        web_answer()


def test_requests_per_minute_is_a_sliding_window_that_refusals_do_not_fill(
    db: sqlite3.Connection, limits: Limits, clock: Clock, ada: int
) -> None:
    user_limits.set_defaults(db, LimitValues(requests_per_minute=2))
    assert ask(limits, ada) is None  # 12:00:00
    clock.advance(seconds=10)
    assert ask(limits, ada) is None  # 12:00:10
    clock.advance(seconds=10)
    refusal = ask(limits, ada)  # 12:00:20: the first leaves the window at 12:01:00
    assert refusal is not None and refusal.limit == "per_minute"
    assert refusal.retry_after == 40
    assert refusal.message == (
        "You have started 2 answers in the last minute; the limit is 2 a minute. Try again in 40 s."
    )
    clock.advance(seconds=39)
    assert ask(limits, ada) is not None  # refused again; refusals are not counted
    clock.advance(seconds=1)
    assert ask(limits, ada) is None  # 12:01:00: one place free
    refusal = ask(limits, ada)
    assert refusal is not None and refusal.retry_after == 10  # the 12:00:10 one leaves next


def test_a_spent_token_budget_refuses_until_the_day_turns(
    db: sqlite3.Connection, limits: Limits, clock: Clock, ada: int, bob: int
) -> None:
    clock.now = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
    user_limits.set_defaults(db, LimitValues(tokens_per_day=100))
    # Prompt tokens are not counted: only what the engines generated.
    limits.admit(ada, key_id=None, engine="vllm", model="q").finish(Outcome("completed", 5000, 60))
    assert ask(limits, ada) is None  # 61 tokens used
    limits.admit(ada, key_id=None, engine="vllm", model="q").finish(Outcome("completed", 1, 40))
    refusal = ask(limits, ada)
    assert refusal is not None and refusal.limit == "per_day"
    assert refusal.retry_after == 90 * 60
    assert refusal.message == (
        "You have used 101 tokens today (UTC); the limit is 100 a day. "
        "It starts again at midnight UTC, in 1 h 30 min."
    )
    assert ask(limits, bob) is None  # a budget is per user
    clock.now = datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=UTC)
    refusal = ask(limits, ada)
    assert refusal is not None and refusal.retry_after == 1
    clock.now = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert ask(limits, ada) is None


def test_a_users_own_limits_replace_the_defaults_whole(
    db: sqlite3.Connection, limits: Limits, ada: int, bob: int
) -> None:
    assert user_limits.limits_for(db, ada) == NO_LIMITS
    user_limits.set_defaults(db, LimitValues(max_concurrent=1, requests_per_minute=100))
    user_limits.set_override(db, bob, LimitValues(max_concurrent=None, requests_per_minute=1))
    assert user_limits.limits_for(db, ada) == LimitValues(1, 100, None)
    assert user_limits.limits_for(db, bob) == LimitValues(None, 1, None)
    first = limits.admit(ada, key_id=None, engine="vllm", model="q")
    assert ask(limits, ada) is not None  # ada: one at a time
    bobs = limits.admit(bob, key_id=None, engine="vllm", model="q")
    refusal = ask(limits, bob)  # bob: any number at once, but one a minute
    assert refusal is not None and refusal.limit == "per_minute"
    first.finish(Outcome("completed"))
    bobs.finish(Outcome("completed"))
    # Saving again changes the row, never adds one; removing brings the defaults back.
    user_limits.set_defaults(db, LimitValues(max_concurrent=2))
    user_limits.set_override(db, bob, LimitValues(tokens_per_day=5))
    assert db.execute("SELECT count(*) FROM user_limits").fetchone()[0] == 2
    assert user_limits.overrides(db) == {bob: LimitValues(None, None, 5)}
    assert user_limits.remove_override(db, bob) is True
    assert user_limits.remove_override(db, bob) is False
    assert user_limits.limits_for(db, bob) == LimitValues(max_concurrent=2)


def test_a_limit_of_zero_refuses_every_request_and_says_so(
    db: sqlite3.Connection, limits: Limits, ada: int
) -> None:
    user_limits.set_override(db, ada, LimitValues(tokens_per_day=0))
    refusal = ask(limits, ada)
    assert refusal is not None
    assert refusal.message == (
        "Your account may not start answers: its limit is 0 tokens a day. An admin can change it."
    )


async def test_hold_records_how_a_request_ended(
    db: sqlite3.Connection, limits: Limits, ada: int
) -> None:
    with limits.hold(ada, key_id=None, engine="vllm", model="q") as admitted:
        admitted.finish(Outcome("completed", 7, 3, 12.5, 40.0))
        admitted.finish(Outcome("failed"))  # the first outcome stays
    with pytest.raises(RuntimeError), limits.hold(ada, key_id=None, engine="vllm", model="q"):
        raise RuntimeError("the engine broke")

    async def cancelled() -> None:
        with limits.hold(ada, key_id=None, engine="vllm", model="q"):
            await asyncio.sleep(60)

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with limits.hold(ada, key_id=None, engine="vllm", model="q"):
        pass
    rows = db.execute(
        "SELECT status, prompt_tokens, completion_tokens, ttft_ms, duration_ms "
        "FROM api_requests ORDER BY id"
    ).fetchall()
    assert [tuple(row) for row in rows] == [
        ("completed", 7, 3, 12.5, 40.0),
        ("failed", None, None, None, None),
        ("stopped", None, None, None, None),
        ("completed", None, None, None, None),
    ]
