"""Past compare runs: a summary table, one run's columns, exports as CSV or JSON, and
deleting a run."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from duet.exports.run import engine_eval_rate, runs_csv, runs_json
from duet.metrics.answers import answer_metrics
from duet.store import runs, shares
from duet.store.db import transaction
from duet.store.runs import CompareRun
from duet.views.compare import Compares, engine_labels, run_view
from duet.views.deps import MEMBERS_ONLY, Db, Engines, UserId, render
from duet.views.downloads import download
from duet.views.errors import not_found
from duet.views.params import PageNumber, RunId

router = APIRouter(dependencies=MEMBERS_ONLY)


RUNS_PER_PAGE = 50


def summary_rows(run: CompareRun, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per answer of a run, for the summary table (server hop, plus Duet's added TTFT)."""
    rows = []
    for answer in run.answers:
        numbers = answer_metrics(answer).as_dict()
        rows.append(
            {
                "answer": answer,
                "label": labels.get(answer.engine, answer.engine),
                "numbers": numbers,
                "engine_eval_tokens_per_s": engine_eval_rate(answer),
            }
        )
    return rows


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(
    request: Request, db: Db, user_id: UserId, engines: Engines, page: PageNumber = 1
) -> HTMLResponse:
    labels = engine_labels(engines)
    listed = runs.list_runs(db, user_id, RUNS_PER_PAGE, (page - 1) * RUNS_PER_PAGE)
    total = runs.count_runs(db, user_id)
    return render(
        request,
        "runs.html",
        {
            "runs": [(run, summary_rows(run, labels)) for run in listed],
            "page": page,
            "has_next": page * RUNS_PER_PAGE < total,
            "total": total,
        },
    )


@router.get("/runs.csv")
async def export_csv(db: Db, user_id: UserId) -> Response:
    return download(
        runs_csv(runs.list_runs(db, user_id)), "text/csv; charset=utf-8", "duet-runs.csv"
    )


@router.get("/runs.json")
async def export_json(db: Db, user_id: UserId) -> Response:
    return download(runs_json(runs.list_runs(db, user_id)), "application/json", "duet-runs.json")


def owned_run(db: sqlite3.Connection, user_id: int, run_id: int) -> CompareRun:
    run = runs.get_run(db, user_id, run_id)
    if run is None:
        raise not_found("That compare run")
    return run


@router.get("/runs/{run_id}.json")
async def export_run_json(run_id: RunId, db: Db, user_id: UserId) -> Response:
    run = owned_run(db, user_id, run_id)
    return download(runs_json([run]), "application/json", f"duet-run-{run_id}.json")


# After the .json route: `{run_id}` alone would also take "5.json" and refuse it.
@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    run_id: RunId, request: Request, db: Db, user_id: UserId, engines: Engines
) -> HTMLResponse:
    run = owned_run(db, user_id, run_id)
    return render(request, "run.html", run_view(run, engine_labels(engines)))


@router.delete("/runs/{run_id}")
async def delete_run(
    run_id: RunId, request: Request, db: Db, user_id: UserId, compares: Compares
) -> Response:
    """Delete a run and its answers, and revoke its share links. A run still answering is
    stopped first, as deleting a conversation stops its answer: the person asked for it gone.
    Conversations continued from its answers are the user's own and stay."""
    owned_run(db, user_id, run_id)
    await compares.stop_run(run_id)
    with transaction(db):
        shares.revoke_shares_of(db, user_id, "run", run_id)
        runs.delete_run(db, user_id, run_id)
    # Deleted from its own page, there is nothing left to show: go to the list.
    page = urlsplit(request.headers.get("HX-Current-URL", "")).path
    if page == f"/runs/{run_id}":
        return Response(status_code=200, headers={"HX-Redirect": "/runs"})
    return Response(status_code=200)
