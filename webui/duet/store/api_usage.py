"""Usage per answer request, from the web UI and /v1 alike (table `api_requests`).

One row per request: who (user, and the API key, NULL for the web UI), which engine and model,
prompt and completion tokens, TTFT and duration in ms, and the status. Never any text: admins see
how much each person used, not what they asked.

A row is written when `duet.limits` admits the request, as `streaming`, in the same transaction
as the check, so the rows still streaming are exactly the requests running now; the request's
end gives it its outcome (`finish_request`, or `finish_answer` for a web UI answer, found by
its message). Rows a stopped server left streaming are marked `interrupted` at start-up.
Requests refused over a limit are recorded as `refused` (only from /v1: the web UI's refusal
rolls back the send's transaction with everything else it wrote) and count towards nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from duet.store.messages import AnswerRecord

EndStatus = Literal["completed", "stopped", "failed", "interrupted"]
# A web UI answer's status as stored with its message, as an ended request's status here.
FROM_ANSWER: dict[str, EndStatus] = {
    "complete": "completed",
    "stopped": "stopped",
    "failed": "failed",
    "interrupted": "interrupted",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a request ended."""

    status: EndStatus
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None


def start_request(
    db: sqlite3.Connection,
    user_id: int,
    *,
    key_id: int | None,
    engine: str,
    model: str,
    created_at: str,
    message_id: int | None = None,
) -> int:
    """A `streaming` row for a request just admitted; returns its id."""
    row = db.execute(
        "INSERT INTO api_requests (user_id, key_id, message_id, engine, model, status, "
        "created_at) VALUES (?, ?, ?, ?, ?, 'streaming', ?) RETURNING id",
        (user_id, key_id, message_id, engine, model, created_at),
    ).fetchone()
    return int(row[0])


def record_refused(
    db: sqlite3.Connection,
    user_id: int,
    *,
    key_id: int | None,
    engine: str,
    model: str,
    created_at: str,
) -> None:
    db.execute(
        "INSERT INTO api_requests (user_id, key_id, engine, model, status, created_at) "
        "VALUES (?, ?, ?, ?, 'refused', ?)",
        (user_id, key_id, engine, model, created_at),
    )


ENDING = (
    "UPDATE api_requests SET status = :status, prompt_tokens = :prompt_tokens, "
    "completion_tokens = :completion_tokens, ttft_ms = :ttft_ms, duration_ms = :duration_ms "
    "WHERE status = 'streaming' AND "
)


def finish_request(db: sqlite3.Connection, request_id: int, outcome: Outcome) -> bool:
    """Give a streaming request its outcome. False if it had one already."""
    values = {**outcome_values(outcome), "id": request_id}
    return db.execute(ENDING + "id = :id", values).rowcount == 1


def finish_answer(db: sqlite3.Connection, message_id: int, record: AnswerRecord) -> bool:
    """Give a web UI answer's request the answer's outcome, once the answer has ended (nothing
    happens while it streams, or once it has one). False if nothing changed."""
    status = FROM_ANSWER.get(record.status)
    if status is None:
        return False
    outcome = Outcome(
        status, record.prompt_tokens, record.completion_tokens, record.ttft_ms, record.total_ms
    )
    values = {**outcome_values(outcome), "message_id": message_id}
    return db.execute(ENDING + "message_id = :message_id", values).rowcount == 1


def outcome_values(outcome: Outcome) -> dict[str, object]:
    return {
        "status": outcome.status,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "ttft_ms": outcome.ttft_ms,
        "duration_ms": outcome.duration_ms,
    }


def mark_interrupted(db: sqlite3.Connection) -> int:
    """Requests left streaming by a server that stopped (run at start-up, like the answers')."""
    cursor = db.execute("UPDATE api_requests SET status = 'interrupted' WHERE status = 'streaming'")
    return cursor.rowcount


@dataclass(frozen=True, slots=True)
class Load:
    """What a user has running and has used, as the limits count it."""

    running: int  # requests streaming now
    recent: int  # requests admitted after the minute's start (60 s ago)
    tokens_today: int  # completion tokens of requests admitted since the day's start


LOAD = """
    SELECT
        (SELECT count(*) FROM api_requests
         WHERE user_id = :user_id AND status = 'streaming') AS running,
        (SELECT count(*) FROM api_requests
         WHERE user_id = :user_id AND created_at > :minute AND status != 'refused') AS recent,
        (SELECT coalesce(sum(completion_tokens), 0) FROM api_requests
         WHERE user_id = :user_id AND created_at >= :day) AS tokens_today
"""


def load_of(db: sqlite3.Connection, user_id: int, minute: str, day: str) -> Load:
    """The user's load: `minute` and `day` are where the window and the day start (ISO 8601)."""
    row = db.execute(LOAD, {"user_id": user_id, "minute": minute, "day": day}).fetchone()
    return Load(int(row["running"]), int(row["recent"]), int(row["tokens_today"]))


def nth_recent_start(db: sqlite3.Connection, user_id: int, minute: str, n: int) -> str | None:
    """When the n-th oldest (from 0) request admitted after `minute` was admitted."""
    row = db.execute(
        "SELECT created_at FROM api_requests WHERE user_id = ? AND created_at > ? "
        "AND status != 'refused' ORDER BY created_at LIMIT 1 OFFSET ?",
        (user_id, minute, n),
    ).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class DailyUsage:
    day: str  # YYYY-MM-DD, UTC
    user_id: int
    user_name: str
    engine: str
    requests: int  # admitted: streaming or ended
    refused: int
    prompt_tokens: int
    completion_tokens: int


DAILY = """
    SELECT substr(api_requests.created_at, 1, 10) AS day, api_requests.user_id,
           users.name AS user_name, api_requests.engine,
           sum(api_requests.status != 'refused') AS requests,
           sum(api_requests.status = 'refused') AS refused,
           coalesce(sum(api_requests.prompt_tokens), 0) AS prompt_tokens,
           coalesce(sum(api_requests.completion_tokens), 0) AS completion_tokens
    FROM api_requests JOIN users ON users.id = api_requests.user_id
    WHERE api_requests.created_at >= :since
    GROUP BY day, api_requests.user_id, api_requests.engine
    ORDER BY day, lower(users.name), api_requests.engine
"""


def daily_usage(db: sqlite3.Connection, since: str) -> list[DailyUsage]:
    """Requests and tokens per day, user and engine, for requests admitted at or after `since`,
    oldest day first."""
    return [
        DailyUsage(
            day=row["day"],
            user_id=row["user_id"],
            user_name=row["user_name"],
            engine=row["engine"],
            requests=int(row["requests"]),
            refused=int(row["refused"]),
            prompt_tokens=int(row["prompt_tokens"]),
            completion_tokens=int(row["completion_tokens"]),
        )
        for row in db.execute(DAILY, {"since": since})
    ]


@dataclass(frozen=True, slots=True)
class UsageTotal:
    user_id: int | None  # None: every user's requests together
    user_name: str
    engine: str  # "" with user_id None: every engine
    requests: int
    refused: int
    prompt_tokens: int
    completion_tokens: int


TOTALS = """
    SELECT api_requests.user_id, users.name AS user_name, api_requests.engine,
           sum(api_requests.status != 'refused') AS requests,
           sum(api_requests.status = 'refused') AS refused,
           coalesce(sum(api_requests.prompt_tokens), 0) AS prompt_tokens,
           coalesce(sum(api_requests.completion_tokens), 0) AS completion_tokens
    FROM api_requests JOIN users ON users.id = api_requests.user_id
    WHERE api_requests.created_at >= :since
    GROUP BY api_requests.user_id, api_requests.engine
    ORDER BY lower(users.name), api_requests.engine
"""


def totals_since(db: sqlite3.Connection, since: str) -> list[UsageTotal]:
    """Requests and tokens per user and engine since `since`, then one row of everything."""
    rows = [
        UsageTotal(
            user_id=row["user_id"],
            user_name=row["user_name"],
            engine=row["engine"],
            requests=int(row["requests"]),
            refused=int(row["refused"]),
            prompt_tokens=int(row["prompt_tokens"]),
            completion_tokens=int(row["completion_tokens"]),
        )
        for row in db.execute(TOTALS, {"since": since})
    ]
    if not rows:
        return []
    everything = UsageTotal(
        user_id=None,
        user_name="everyone",
        engine="",
        requests=sum(row.requests for row in rows),
        refused=sum(row.refused for row in rows),
        prompt_tokens=sum(row.prompt_tokens for row in rows),
        completion_tokens=sum(row.completion_tokens for row in rows),
    )
    return [*rows, everything]
