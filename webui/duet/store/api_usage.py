"""Usage per answer request, from the web UI and /v1 alike (table `api_requests`).

One row per request: who (user, and the API key, NULL for the web UI), which engine and model,
prompt and completion tokens, TTFT and duration in ms, and the status. Never any text: admins see
how much each person used, not what they asked.

A /v1 request's row is written when `duet.limits` admits it, as `streaming`, in the same
transaction as the check, and gets its outcome at the end (`finish_request`). A web UI answer
needs no row to be counted while it streams: its own message row is `streaming` (written in the
send's transaction, the check's), so nothing is added to the send's work; its request row is
written once the answer has ended (`record_answer`, from the message). So the requests running
now are the streaming rows here plus the streaming answers (`running` counts both). Rows a
stopped server left streaming are marked `interrupted` at start-up. Requests refused over a
limit are recorded as `refused` (only from /v1: the web UI's refusal rolls back the send's
transaction with everything else it wrote) and count towards nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
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
) -> int:
    """A `streaming` row for a /v1 request just admitted; returns its id."""
    row = db.execute(
        "INSERT INTO api_requests (user_id, key_id, engine, model, status, created_at) "
        "VALUES (?, ?, ?, ?, 'streaming', ?) RETURNING id",
        (user_id, key_id, engine, model, created_at),
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


def record_answer(db: sqlite3.Connection, message_id: int, record: AnswerRecord) -> bool:
    """The request row of a web UI answer that has ended, from its message (its user, engine,
    model and start) and `record` (its outcome), once: nothing happens while the answer streams,
    or once the row exists. False if nothing was written."""
    status = FROM_ANSWER.get(record.status)
    if status is None:
        return False
    outcome = Outcome(
        status, record.prompt_tokens, record.completion_tokens, record.ttft_ms, record.total_ms
    )
    cursor = db.execute(
        """
        INSERT INTO api_requests (
            user_id, key_id, message_id, engine, model, prompt_tokens, completion_tokens,
            ttft_ms, duration_ms, status, created_at
        )
        SELECT conversations.user_id, NULL, messages.id, coalesce(messages.engine, ''),
               coalesce(messages.model, ''), :prompt_tokens, :completion_tokens, :ttft_ms,
               :duration_ms, :status, messages.created_at
        FROM messages JOIN conversations ON conversations.id = messages.conversation_id
        WHERE messages.id = :message_id
          AND NOT EXISTS (SELECT 1 FROM api_requests WHERE message_id = :message_id)
        """,
        {**outcome_values(outcome), "message_id": message_id},
    )
    return cursor.rowcount == 1


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


# A web UI answer streaming now is counted from its message (see the module docstring); once it
# has ended, from its request row. The answer's end turns the one into the other in one
# synchronous step (Generations.save), so no check sees it in both or in neither.
STREAMING_ANSWERS = """
    FROM messages JOIN conversations ON conversations.id = messages.conversation_id
    WHERE messages.status = 'streaming' AND conversations.user_id = :user_id
"""


def running(db: sqlite3.Connection, user_id: int) -> int:
    """The user's requests streaming now: /v1 requests and web UI answers."""
    row = db.execute(
        f"""
        SELECT (SELECT count(*) FROM api_requests
                WHERE user_id = :user_id AND status = 'streaming')
               + (SELECT count(*) {STREAMING_ANSWERS})
        """,
        {"user_id": user_id},
    ).fetchone()
    return int(row[0])


def started_since(db: sqlite3.Connection, user_id: int, minute: str) -> int:
    """The user's requests admitted after `minute` (ISO 8601), refusals not counted."""
    row = db.execute(
        f"""
        SELECT (SELECT count(*) FROM api_requests
                WHERE user_id = :user_id AND created_at > :minute AND status != 'refused')
               + (SELECT count(*) {STREAMING_ANSWERS} AND messages.created_at > :minute)
        """,
        {"user_id": user_id, "minute": minute},
    ).fetchone()
    return int(row[0])


def tokens_since(db: sqlite3.Connection, user_id: int, day: str) -> int:
    """Completion tokens of the user's requests admitted at or after `day` that have ended."""
    row = db.execute(
        "SELECT coalesce(sum(completion_tokens), 0) FROM api_requests "
        "WHERE user_id = ? AND created_at >= ?",
        (user_id, day),
    ).fetchone()
    return int(row[0])


def nth_recent_start(db: sqlite3.Connection, user_id: int, minute: str, n: int) -> str | None:
    """When the n-th oldest (from 0) request admitted after `minute` was admitted."""
    row = db.execute(
        f"""
        SELECT created_at FROM api_requests
        WHERE user_id = :user_id AND created_at > :minute AND status != 'refused'
        UNION ALL
        SELECT messages.created_at {STREAMING_ANSWERS} AND messages.created_at > :minute
        ORDER BY created_at LIMIT 1 OFFSET :n
        """,
        {"user_id": user_id, "minute": minute, "n": n},
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


def totals_since(db: sqlite3.Connection, since: str) -> list[UsageTotal]:
    """Requests and tokens per user and engine since `since`, in name order, then one row of
    everything (none at all without requests)."""
    rows = daily_usage(db, since)
    if not rows:
        return []
    by_series: dict[tuple[int, str], UsageTotal] = {}
    everything = UsageTotal(None, "everyone", "", 0, 0, 0, 0)
    for row in rows:
        key = (row.user_id, row.engine)
        before = by_series.get(key) or UsageTotal(
            row.user_id, row.user_name, row.engine, 0, 0, 0, 0
        )
        by_series[key] = plus(before, row)
        everything = plus(everything, row)
    ordered = sorted(by_series.values(), key=lambda total: (total.user_name.lower(), total.engine))
    return [*ordered, everything]


def plus(total: UsageTotal, day: DailyUsage) -> UsageTotal:
    return replace(
        total,
        requests=total.requests + day.requests,
        refused=total.refused + day.refused,
        prompt_tokens=total.prompt_tokens + day.prompt_tokens,
        completion_tokens=total.completion_tokens + day.completion_tokens,
    )
