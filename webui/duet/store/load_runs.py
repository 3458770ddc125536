"""Queries about load runs: sweeps started from the Load page, their points, every request and
the charts drawn at the end.

A load run belongs to the instance, not to one person: only admins start and read them (the
views ask), and `started_by` only says who started one. A run is written `running` when it
starts; each point's document (the one `duet bench load` writes into load.json's "results")
is stored as the point ends, so a run stopped halfway keeps what it measured; the requests and
the charts are stored when it ends. What a document holds is the benchmark's business: the
store keeps it as JSON text and gives it back as it was.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from duet.store.db import now_iso, transaction

LoadStatus = Literal["running", "complete", "stopped", "failed", "interrupted"]


@dataclass(frozen=True, slots=True)
class LoadRun:
    id: int
    started_by: int | None
    status: LoadStatus
    request: dict[str, Any]  # what the form asked for
    config: dict[str, Any] | None  # the benchmark's configuration, once it has read it
    error: str | None
    created_at: str
    finished_at: str | None

    @property
    def running(self) -> bool:
        return self.status == "running"


def from_row(row: sqlite3.Row) -> LoadRun:
    return LoadRun(
        id=row["id"],
        started_by=row["started_by"],
        status=row["status"],
        request=json.loads(row["request"]),
        config=json.loads(row["config"]) if row["config"] is not None else None,
        error=row["error"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


def create_load_run(db: sqlite3.Connection, started_by: int, request: dict[str, Any]) -> LoadRun:
    row = db.execute(
        "INSERT INTO load_runs (started_by, status, request, created_at)"
        " VALUES (?, 'running', ?, ?) RETURNING *",
        (started_by, json.dumps(request), now_iso()),
    ).fetchone()
    return from_row(row)


def get_load_run(db: sqlite3.Connection, load_id: int) -> LoadRun | None:
    row = db.execute("SELECT * FROM load_runs WHERE id = ?", (load_id,)).fetchone()
    return from_row(row) if row is not None else None


def list_load_runs(db: sqlite3.Connection, limit: int = 100) -> list[LoadRun]:
    rows = db.execute("SELECT * FROM load_runs ORDER BY id DESC LIMIT ?", (limit,))
    return [from_row(row) for row in rows]


def save_points(
    db: sqlite3.Connection,
    load_id: int,
    config: dict[str, Any],
    documents: Sequence[dict[str, Any]],
) -> None:
    """The configuration and every point so far (each time in full: a point's repeats and
    Duet's added TTFT are settled only once the point has ended)."""
    with transaction(db):
        db.execute("UPDATE load_runs SET config = ? WHERE id = ?", (json.dumps(config), load_id))
        db.execute("DELETE FROM load_points WHERE load_run_id = ?", (load_id,))
        db.executemany(
            "INSERT INTO load_points (load_run_id, position, series, label, document)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (load_id, position, doc["series"], doc["label"], json.dumps(doc))
                for position, doc in enumerate(documents)
            ],
        )


def points_of(db: sqlite3.Connection, load_id: int) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT document FROM load_points WHERE load_run_id = ? ORDER BY position", (load_id,)
    )
    return [json.loads(row["document"]) for row in rows]


def finish_load_run(
    db: sqlite3.Connection,
    load_id: int,
    status: LoadStatus,
    error: str | None,
    records: Iterable[dict[str, Any]] = (),
    charts: dict[str, str] | None = None,
) -> None:
    """The run's end: its status, every request (`duet bench load`'s requests.jsonl lines)
    and its charts (SVG text by name), in one transaction."""
    with transaction(db):
        db.execute(
            "UPDATE load_runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
            (status, error, now_iso(), load_id),
        )
        db.executemany(
            "INSERT INTO load_requests (load_run_id, record) VALUES (?, ?)",
            [(load_id, json.dumps(record)) for record in records],
        )
        db.executemany(
            "INSERT INTO load_charts (load_run_id, name, svg) VALUES (?, ?, ?)",
            [(load_id, name, svg) for name, svg in (charts or {}).items()],
        )


def requests_of(db: sqlite3.Connection, load_id: int) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT record FROM load_requests WHERE load_run_id = ? ORDER BY id", (load_id,)
    )
    return [json.loads(row["record"]) for row in rows]


def chart_names(db: sqlite3.Connection, load_id: int) -> list[str]:
    rows = db.execute(
        "SELECT name FROM load_charts WHERE load_run_id = ? ORDER BY rowid", (load_id,)
    )
    return [row["name"] for row in rows]


def chart_svg(db: sqlite3.Connection, load_id: int, name: str) -> str | None:
    row = db.execute(
        "SELECT svg FROM load_charts WHERE load_run_id = ? AND name = ?", (load_id, name)
    ).fetchone()
    return row["svg"] if row is not None else None


def mark_interrupted(db: sqlite3.Connection) -> int:
    """Close the runs a previous run of the server left running; return how many."""
    cursor = db.execute(
        "UPDATE load_runs SET status = 'interrupted', finished_at = ?,"
        " error = COALESCE(error, 'The server stopped before this sweep finished.')"
        " WHERE status = 'running'",
        (now_iso(),),
    )
    return cursor.rowcount
