"""Queries about compare runs: one prompt, several engines, every answer's arrival times.

A run is written when it is sent; each answer starts `queued`, becomes `streaming` when its engine
request goes out, and ends `complete`, `stopped`, `failed` or `interrupted`. An answer is kept in
its own row, text and server arrival times included, saved as it streams (`save_answer`); the
browser's arrival times arrive later, posted by the page that watched the stream. No
conversation holds it until the user continues it in the chat (`continue_in_chat`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from duet.store import conversations
from duet.store.db import now_iso, transaction
from duet.store.messages import AnswerRecord, Arrival, arrivals_from_json, arrivals_json

Mode = Literal["concurrent", "sequential"]
MODES: tuple[Mode, ...] = ("concurrent", "sequential")
AnswerStatus = Literal["queued", "streaming", "complete", "stopped", "failed", "interrupted"]
OPEN_STATUSES: tuple[AnswerStatus, ...] = ("queued", "streaming")


@dataclass(frozen=True, slots=True)
class CompareAnswer:
    id: int
    run_id: int
    position: int
    engine: str
    model: str
    # The conversation the user continued this answer in, and the answer's copy there.
    conversation_id: int | None
    message_id: int | None
    status: AnswerStatus
    error: str | None
    started_ms: float | None
    prompt_tokens: int | None
    output_tokens: int | None
    engine_timings: dict[str, float]
    server_arrivals: list[Arrival]
    browser_arrivals: list[Arrival] | None
    created_at: str
    updated_at: str
    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    # As a chat answer's: ms from the engine request on the wire to the first text of any
    # kind, to the first answer text, and to the end.
    ttft_ms: float | None = None
    ttfa_ms: float | None = None
    total_ms: float | None = None

    @property
    def finished(self) -> bool:
        return self.status not in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class CompareRun:
    id: int
    user_id: int
    prompt: str
    system_prompt: str
    mode: Mode
    thinking: bool
    parameters: dict[str, Any]
    created_at: str
    answers: tuple[CompareAnswer, ...] = field(default=())

    @property
    def finished(self) -> bool:
        return all(answer.finished for answer in self.answers)


def _arrivals(raw: str | None) -> list[Arrival] | None:
    if raw is None:
        return None
    return arrivals_from_json(raw)


def answer_from_row(row: sqlite3.Row) -> CompareAnswer:
    return CompareAnswer(
        id=row["id"],
        run_id=row["run_id"],
        position=row["position"],
        engine=row["engine"],
        model=row["model"],
        conversation_id=row["conversation_id"],
        message_id=row["message_id"],
        status=row["status"],
        error=row["error"],
        started_ms=row["started_ms"],
        prompt_tokens=row["prompt_tokens"],
        output_tokens=row["output_tokens"],
        engine_timings=json.loads(row["engine_timings"]),
        server_arrivals=_arrivals(row["server_arrivals"]) or [],
        browser_arrivals=_arrivals(row["browser_arrivals"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        content=row["content"],
        reasoning=row["reasoning"],
        finish_reason=row["finish_reason"],
        ttft_ms=row["ttft_ms"],
        ttfa_ms=row["ttfa_ms"],
        total_ms=row["total_ms"],
    )


def run_from_row(row: sqlite3.Row, answers: Sequence[CompareAnswer]) -> CompareRun:
    return CompareRun(
        id=row["id"],
        user_id=row["user_id"],
        prompt=row["prompt"],
        system_prompt=row["system_prompt"],
        mode=row["mode"],
        thinking=bool(row["thinking"]),
        parameters=json.loads(row["parameters"]),
        created_at=row["created_at"],
        answers=tuple(answers),
    )


def create_run(
    db: sqlite3.Connection,
    user_id: int,
    *,
    prompt: str,
    system_prompt: str,
    mode: Mode,
    thinking: bool,
    parameters: dict[str, Any],
    engines: Sequence[tuple[str, str]],
) -> CompareRun:
    """Write a run and one queued answer per (engine, model), in column order."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not engines:
        raise ValueError("a compare run needs at least one engine")
    stamp = now_iso()
    with transaction(db):
        cursor = db.execute(
            "INSERT INTO compare_runs"
            " (user_id, prompt, system_prompt, mode, thinking, parameters, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user_id, prompt, system_prompt, mode, int(thinking), json.dumps(parameters), stamp),
        )
        run_id = int(cursor.lastrowid or 0)
        for position, (engine, model) in enumerate(engines):
            db.execute(
                "INSERT INTO compare_answers"
                " (run_id, position, engine, model, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, position, engine, model, stamp, stamp),
            )
    run = get_run(db, user_id, run_id)
    assert run is not None
    return run


def mark_streaming(db: sqlite3.Connection, answer_id: int, started_ms: float) -> None:
    """The answer's engine request went out `started_ms` after the run was received. A short
    answer may have ended (and been saved) before this is called: its status stays."""
    db.execute(
        "UPDATE compare_answers SET started_ms = ?, updated_at = ?,"
        " status = CASE status WHEN 'queued' THEN 'streaming' ELSE status END WHERE id = ?",
        (started_ms, now_iso(), answer_id),
    )


def save_answer(db: sqlite3.Connection, answer_id: int, record: AnswerRecord) -> None:
    """Write the answer as it stands: at save points while it streams, and once at its end."""
    db.execute(
        """
        UPDATE compare_answers SET
            status = ?, content = ?, reasoning = ?, error = ?, finish_reason = ?,
            prompt_tokens = ?, output_tokens = ?, ttft_ms = ?, ttfa_ms = ?, total_ms = ?,
            engine_timings = ?, server_arrivals = ?, updated_at = ?
        WHERE id = ?
        """,
        (
            record.status,
            record.content,
            record.reasoning,
            record.error,
            record.finish_reason,
            record.prompt_tokens,
            record.completion_tokens,
            record.ttft_ms,
            record.ttfa_ms,
            record.total_ms,
            json.dumps(record.engine_timings),
            arrivals_json(record.arrivals),
            now_iso(),
            answer_id,
        ),
    )


def finish_unstarted(
    db: sqlite3.Connection, answer_id: int, status: AnswerStatus, error: str
) -> None:
    """End an answer that never reached its engine (stopped while queued, refused, the server
    shut down)."""
    db.execute(
        "UPDATE compare_answers SET status = ?, error = ?, updated_at = ?"
        " WHERE id = ? AND status IN ('queued', 'streaming')",
        (status, error, now_iso(), answer_id),
    )


def save_browser_arrivals(
    db: sqlite3.Connection, answer_id: int, arrivals: Sequence[Arrival]
) -> None:
    db.execute(
        "UPDATE compare_answers SET browser_arrivals = ?, updated_at = ? WHERE id = ?",
        (arrivals_json(arrivals), now_iso(), answer_id),
    )


def mark_interrupted(db: sqlite3.Connection) -> int:
    """Close answers a previous run of the app left open; return how many."""
    cursor = db.execute(
        "UPDATE compare_answers SET status = 'interrupted',"
        " error = COALESCE(error, 'The server stopped before this answer finished.'),"
        " updated_at = ? WHERE status IN ('queued', 'streaming')",
        (now_iso(),),
    )
    return cursor.rowcount


def get_answer(db: sqlite3.Connection, user_id: int, answer_id: int) -> CompareAnswer | None:
    row = db.execute(
        "SELECT compare_answers.* FROM compare_answers"
        " JOIN compare_runs ON compare_runs.id = compare_answers.run_id"
        " WHERE compare_answers.id = ? AND compare_runs.user_id = ?",
        (answer_id, user_id),
    ).fetchone()
    return None if row is None else answer_from_row(row)


def _answers_of(db: sqlite3.Connection, run_ids: Sequence[int]) -> dict[int, list[CompareAnswer]]:
    by_run: dict[int, list[CompareAnswer]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return by_run
    marks = ",".join("?" * len(run_ids))
    rows = db.execute(
        f"SELECT * FROM compare_answers WHERE run_id IN ({marks}) ORDER BY run_id, position",
        tuple(run_ids),
    )
    for row in rows:
        by_run[row["run_id"]].append(answer_from_row(row))
    return by_run


def get_run(db: sqlite3.Connection, user_id: int, run_id: int) -> CompareRun | None:
    row = db.execute(
        "SELECT * FROM compare_runs WHERE id = ? AND user_id = ?", (run_id, user_id)
    ).fetchone()
    if row is None:
        return None
    return run_from_row(row, _answers_of(db, [run_id])[run_id])


def list_runs(
    db: sqlite3.Connection, user_id: int, limit: int | None = None, offset: int = 0
) -> list[CompareRun]:
    """A user's runs, newest first, each with its answers."""
    rows = db.execute(
        "SELECT * FROM compare_runs WHERE user_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        (user_id, -1 if limit is None else limit, offset),
    ).fetchall()
    answers = _answers_of(db, [row["id"] for row in rows])
    return [run_from_row(row, answers[row["id"]]) for row in rows]


def count_runs(db: sqlite3.Connection, user_id: int) -> int:
    row = db.execute("SELECT COUNT(*) FROM compare_runs WHERE user_id = ?", (user_id,)).fetchone()
    return int(row[0])


def delete_run(db: sqlite3.Connection, user_id: int, run_id: int) -> bool:
    cursor = db.execute("DELETE FROM compare_runs WHERE id = ? AND user_id = ?", (run_id, user_id))
    return cursor.rowcount > 0


def continue_in_chat(db: sqlite3.Connection, user_id: int, answer_id: int, title: str) -> int:
    """The conversation that continues a finished answer: the one made for it before if it still
    exists, else a new one holding the run's prompt and a copy of the answer with its numbers
    (as a chat answer of the same engine would have them). Returns its id; LookupError if the
    user has no such answer."""
    answer = get_answer(db, user_id, answer_id)
    if answer is None:
        raise LookupError(f"no compare answer {answer_id}")
    continued = answer.conversation_id
    if continued is not None and conversations.get_conversation(db, user_id, continued):
        return continued
    run = get_run(db, user_id, answer.run_id)
    assert run is not None
    with transaction(db):
        conversation = conversations.create_conversation(db, user_id, title, run.system_prompt)
        # Stamped when they were asked and answered, so they sit in the chat (and in the usage
        # counts, by day) where the run does.
        db.execute(
            "INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at)"
            " VALUES (?, 'user', ?, 'complete', ?, ?)",
            (conversation.id, run.prompt, run.created_at, run.created_at),
        )
        copy = db.execute(
            """
            INSERT INTO messages (
                conversation_id, role, content, reasoning, engine, model, thinking, parameters,
                status, error, finish_reason, prompt_tokens, completion_tokens, ttft_ms, ttfa_ms,
                total_ms, engine_timings, arrivals, created_at, updated_at
            ) VALUES (?, 'assistant', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            RETURNING id
            """,
            (
                conversation.id,
                answer.content,
                answer.reasoning,
                answer.engine,
                answer.model,
                int(run.thinking),
                json.dumps(run.parameters),
                answer.status,
                answer.error,
                answer.finish_reason,
                answer.prompt_tokens,
                answer.output_tokens,
                answer.ttft_ms,
                answer.ttfa_ms,
                answer.total_ms,
                json.dumps(answer.engine_timings),
                arrivals_json(answer.server_arrivals),
                answer.created_at,
                answer.updated_at,
            ),
        ).fetchone()
        db.execute(
            "UPDATE compare_answers SET conversation_id = ?, message_id = ?, updated_at = ?"
            " WHERE id = ?",
            (conversation.id, copy[0], now_iso(), answer_id),
        )
    return conversation.id
