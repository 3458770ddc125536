"""Queries about compare runs: one prompt, several engines, every answer's arrival times.

A run is written when it is sent; each answer starts `queued`, becomes `streaming` when its engine
request goes out, and ends with the status of its assistant message. The server's arrival times
are copied in at the end; the browser's arrive later, posted by the page that watched the stream.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from duet.store.db import now_iso
from duet.store.messages import Arrival, Message, arrivals_from_json, arrivals_json

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
    cursor = db.execute(
        "INSERT INTO compare_runs"
        " (user_id, prompt, system_prompt, mode, thinking, parameters, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, prompt, system_prompt, mode, int(thinking), json.dumps(parameters), stamp),
    )
    run_id = int(cursor.lastrowid or 0)
    for position, (engine, model) in enumerate(engines):
        db.execute(
            "INSERT INTO compare_answers (run_id, position, engine, model, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, position, engine, model, stamp, stamp),
        )
    run = get_run(db, user_id, run_id)
    assert run is not None
    return run


def set_conversation(db: sqlite3.Connection, answer_id: int, conversation_id: int) -> None:
    db.execute(
        "UPDATE compare_answers SET conversation_id = ?, updated_at = ? WHERE id = ?",
        (conversation_id, now_iso(), answer_id),
    )


def mark_streaming(
    db: sqlite3.Connection, answer_id: int, message_id: int, started_ms: float
) -> None:
    db.execute(
        "UPDATE compare_answers SET status = 'streaming', message_id = ?, started_ms = ?,"
        " updated_at = ? WHERE id = ?",
        (message_id, started_ms, now_iso(), answer_id),
    )


def finish_from_message(db: sqlite3.Connection, answer_id: int, message: Message) -> None:
    """Copy an ended answer's status, token counts and server arrival times from its message."""
    db.execute(
        """
        UPDATE compare_answers SET
            status = ?, error = ?, prompt_tokens = ?, output_tokens = ?, engine_timings = ?,
            server_arrivals = ?, updated_at = ?
        WHERE id = ?
        """,
        (
            message.status,
            message.error,
            message.prompt_tokens,
            message.completion_tokens,
            json.dumps(message.engine_timings),
            arrivals_json(message.arrivals),
            now_iso(),
            answer_id,
        ),
    )


def finish_without_message(
    db: sqlite3.Connection, answer_id: int, status: AnswerStatus, error: str
) -> None:
    """End an answer that never reached its engine (stopped while queued, server shut down)."""
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
