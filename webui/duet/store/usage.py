"""Usage for the admin page: answers and completion tokens per user, engine and day.

Counts only, never content: admins see how much each person used each engine, not what they
asked. Counted from the answers themselves: chat answers (messages joined to their
conversation, whose owner is the user) and compare answers (joined to their run). A compare
answer the user continued in the chat has a copy there (`compare_answers.message_id`), so it is
counted from `compare_answers` only while it has none (never continued, or that conversation
deleted). A deleted chat conversation or compare run takes its answers' usage with it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    day: str  # YYYY-MM-DD, in UTC like every stamp in the store
    user_id: int
    user_name: str
    engine: str
    answers: int  # finished answers: complete, stopped or interrupted
    failed: int
    completion_tokens: int


USAGE = """
    WITH answers (user_id, engine, day, status, tokens) AS (
        SELECT conversations.user_id, messages.engine, substr(messages.created_at, 1, 10),
               messages.status, messages.completion_tokens
        FROM messages JOIN conversations ON conversations.id = messages.conversation_id
        WHERE messages.role = 'assistant' AND messages.created_at >= :since
        UNION ALL
        SELECT compare_runs.user_id, compare_answers.engine,
               substr(compare_answers.created_at, 1, 10), compare_answers.status,
               compare_answers.output_tokens
        FROM compare_answers JOIN compare_runs ON compare_runs.id = compare_answers.run_id
        WHERE compare_answers.message_id IS NULL AND compare_answers.created_at >= :since
    )
    SELECT answers.day, answers.user_id, users.name AS user_name, answers.engine,
           sum(answers.status IN ('complete', 'stopped', 'interrupted')) AS answers,
           sum(answers.status = 'failed') AS failed,
           coalesce(sum(answers.tokens), 0) AS completion_tokens
    FROM answers JOIN users ON users.id = answers.user_id
    GROUP BY answers.day, answers.user_id, answers.engine
    ORDER BY answers.day DESC, lower(users.name), answers.engine
"""


def usage_since(db: sqlite3.Connection, since: str) -> list[Usage]:
    """Usage per day, user and engine for the answers created at or after `since` (ISO 8601)."""
    return [
        Usage(
            day=row["day"],
            user_id=row["user_id"],
            user_name=row["user_name"],
            engine=row["engine"] or "",
            answers=int(row["answers"]),
            failed=int(row["failed"]),
            completion_tokens=int(row["completion_tokens"]),
        )
        for row in db.execute(USAGE, {"since": since})
    ]
