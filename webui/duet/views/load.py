"""The Load page: start a `duet bench load` sweep, watch it, read its table and charts, export
it, and set two runs side by side.

Admins only (`Admin` on every route: in local mode the local user is one; in accounts mode
anyone else gets 403, and the router's MEMBERS_ONLY sends those not signed in or not approved
where they can go on). A sweep runs in this server's process (`duet.load_sweeps`); one at a
time, so a second start is a 409. The running sweep's section polls its progress with htmx
every second and is replaced by the results when the sweep ends.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from duet.bench.load_report import PointResult, point_from_document, table_cells
from duet.engines.routes import DESCRIPTIONS
from duet.exports.load import load_run_csv, load_run_json, requests_jsonl
from duet.load_sweeps import (
    CHARTS,
    PATHS,
    LoadSweeps,
    SweepBusy,
    SweepRequest,
    SweepUnavailable,
    unavailable_reason,
)
from duet.store import load_runs
from duet.store.load_runs import LoadRun
from duet.views.deps import MEMBERS_ONLY, Admin, Db, Engines, render
from duet.views.downloads import download
from duet.views.errors import UserError, not_found
from duet.views.forms import FormData, parse_checkbox, parse_integer, read_form, text_field
from duet.views.params import MAX_ID, AsciiDigits

router = APIRouter(prefix="/load", dependencies=MEMBERS_ONLY)

LoadId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="a load run's id")]
ChartName = Literal["ttft", "tpot", "throughput", "per_user"]

# Bounds of the form: a sweep from the page stays one a shared box can take; larger ones are
# for `duet bench load`.
MAX_CONCURRENCY = 64
MAX_POINTS = 8
MAX_INPUT_LEN = 4096
MAX_OUTPUT_LEN = 2048
MAX_REQUESTS = 256
MAX_REPEATS = 5
MAX_TOTAL_REQUESTS = 2000
DEFAULTS = SweepRequest(
    routes=("vllm", "ollama"),
    paths=("direct", "duet"),
    concurrency=(1, 2, 4),
    input_len=128,
    output_len=32,
    requests=8,
    repeats=1,
    thinking=False,
)
PATH_LABELS = {
    "direct": "straight to the engine",
    "duet": "through Duet (a Duet the sweep starts for itself)",
}
CHART_TITLES = {
    "ttft": "Time to first token, p50 and p99",
    "tpot": "Time per output token, p50",
    "throughput": "Output throughput",
    "per_user": "Per-user speed against total throughput",
}
# The numbers set side by side in a comparison: (heading, key in a point's medians, format).
COMPARED = (
    ("TTFT p50 (ms)", "median_ttft_ms", "{:.0f}"),
    ("TTFT p99 (ms)", "p99_ttft_ms", "{:.0f}"),
    ("TPOT p50 (ms)", "median_tpot_ms", "{:.1f}"),
    ("out tok/s", "output_throughput", "{:.1f}"),
)
# Configuration entries that differ between any two runs, and say nothing about the setup.
NOT_COMPARED = ("date", "load_average", "duet", "command", "complete", "tokenizer")


async def get_load_sweeps(request: Request) -> LoadSweeps:
    return request.app.state.load_sweeps  # type: ignore[no-any-return]


Sweeps = Annotated[LoadSweeps, Depends(get_load_sweeps)]


def choices(form: FormData, name: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The boxes ticked among `allowed`, in `allowed`'s order; 422 for none or an unknown."""
    getlist = getattr(form, "getlist", None)
    given = getlist(name) if getlist is not None else [text_field(form, name)]
    ticked = [value for value in given if isinstance(value, str)]  # not a file upload
    unknown = [value for value in ticked if value not in allowed]
    if unknown:
        raise UserError(
            422, f"Unknown {what} {unknown[0][:40]!r}: choose from {', '.join(allowed)}."
        )
    chosen = tuple(value for value in allowed if value in ticked)
    if not chosen:
        raise UserError(422, f"Choose at least one {what}.")
    return chosen


def parse_concurrency(form: FormData) -> tuple[int, ...]:
    raw = text_field(form, "concurrency")
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise UserError(422, "Concurrency: give one or more numbers, comma-separated (1,2,4).")
    if len(parts) > MAX_POINTS:
        raise UserError(422, f"Concurrency: at most {MAX_POINTS} points (got {len(parts)}).")
    values = [
        parse_integer({"value": part}, "value", "Each concurrency", 1, MAX_CONCURRENCY)
        for part in parts
    ]
    twice = next((value for value in values if values.count(value) > 1), None)
    if twice is not None:
        raise UserError(422, f"Concurrency: each number once (got {twice} twice).")
    return tuple(sorted(values))


def parse_sweep(form: FormData, routes: tuple[str, ...]) -> SweepRequest:
    """The form's sweep, every value within the page's bounds, or a 422 that says which is not.
    `routes`: the engine routes this instance has configured."""
    sweep = SweepRequest(
        routes=choices(form, "routes", routes, "engine route"),
        paths=choices(form, "paths", PATHS, "path"),
        concurrency=parse_concurrency(form),
        input_len=parse_integer(form, "input_len", "Input length", 1, MAX_INPUT_LEN),
        output_len=parse_integer(form, "output_len", "Output length", 1, MAX_OUTPUT_LEN),
        requests=parse_integer(form, "requests", "Requests per point", 1, MAX_REQUESTS),
        repeats=parse_integer(form, "repeats", "Repeats", 1, MAX_REPEATS),
        thinking=parse_checkbox(form, "thinking"),
    )
    if sweep.total_requests > MAX_TOTAL_REQUESTS:
        raise UserError(
            422,
            f"This sweep would send {sweep.total_requests:,} requests; the page runs at most"
            f" {MAX_TOTAL_REQUESTS:,} (fewer routes, points, requests or repeats; or run"
            " duet bench load).",
        )
    return sweep


def found_run(db: sqlite3.Connection, load_id: int) -> LoadRun:
    run = load_runs.get_load_run(db, load_id)
    if run is None:
        raise not_found("That load run")
    return run


def results_of(db: sqlite3.Connection, load_id: int) -> list[PointResult]:
    return [point_from_document(document) for document in load_runs.points_of(db, load_id)]


def engine_facts(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What the run recorded of the engines' setup, as (name, value) for the page."""
    engines = (config or {}).get("engines") or {}
    facts = []
    for name, label in (("vllm", "vLLM"), ("ollama", "Ollama")):
        engine = engines.get(name)
        if not engine:
            continue
        facts.append((f"{label} version", str(engine.get("version") or "?")))
        for setting, value in (engine.get("settings") or {}).items():
            if setting in ("--max-num-seqs", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_QUEUE"):
                facts.append((setting, str(value)))
    return facts


def flattened(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flattened(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: str(value)}


def differences(first: dict[str, Any] | None, second: dict[str, Any] | None) -> list[list[str]]:
    """The configuration entries that differ between two runs: [entry, first's, second's]."""
    a, b = (
        flattened({k: v for k, v in (c or {}).items() if k not in NOT_COMPARED})
        for c in (first, second)
    )
    return [
        [key, a.get(key, "-"), b.get(key, "-")]
        for key in dict.fromkeys([*a, *b])
        if a.get(key) != b.get(key)
    ]


def change(first: float | None, second: float | None) -> str:
    if first is None or second is None or first == 0:
        return "-"
    return f"{(second - first) / first * 100:+.0f} %"


def compared_rows(first: list[PointResult], second: list[PointResult]) -> list[dict[str, Any]]:
    """One row per series and point of either run: each compared number in both, and how far
    the second is from the first."""
    by_key = {(r.series.name, r.point.label): r for r in first}
    others = {(r.series.name, r.point.label): r for r in second}
    rows = []
    for key in dict.fromkeys([*by_key, *others]):
        a, b = by_key.get(key), others.get(key)
        cells = []
        for _, metric, pattern in COMPARED:
            x = a.medians.get(metric) if a else None
            y = b.medians.get(metric) if b else None
            cells.append(
                (
                    "-" if x is None else pattern.format(x),
                    "-" if y is None else pattern.format(y),
                    change(x, y),
                )
            )
        rows.append({"series": key[0], "point": key[1], "cells": cells})
    return rows


def run_context(db: sqlite3.Connection, run: LoadRun, sweeps: LoadSweeps) -> dict[str, Any]:
    results = results_of(db, run.id)
    heading, rows = table_cells(results)
    return {
        "run": run,
        "progress": sweeps.progress(run.id) if run.running else None,
        "heading": heading,
        "rows": rows,
        "notes": [
            f"{r.series.name}, {r.point.label}: {note}"
            for r in results
            for note in r.stopped_early()
        ],
        "charts": [(name, CHART_TITLES[name]) for name in load_runs.chart_names(db, run.id)],
        "facts": engine_facts(run.config),
        "route_labels": DESCRIPTIONS,
    }


def wants_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


@router.get("", response_class=HTMLResponse)
async def load_page(
    request: Request, db: Db, engines: Engines, sweeps: Sweeps, _: Admin
) -> HTMLResponse:
    return render(
        request,
        "load.html",
        {
            "current_page": "load",
            "runs": load_runs.list_load_runs(db),
            "running": sweeps.running(),
            "defaults": DEFAULTS,
            "routes": {name: DESCRIPTIONS[name] for name in engines},
            "paths": PATH_LABELS,
            "limits": {
                "concurrency": MAX_CONCURRENCY,
                "points": MAX_POINTS,
                "input_len": MAX_INPUT_LEN,
                "output_len": MAX_OUTPUT_LEN,
                "requests": MAX_REQUESTS,
                "repeats": MAX_REPEATS,
                "total": MAX_TOTAL_REQUESTS,
            },
            "engine_models": {engine.label: engine.model for engine in engines.values()},
            "unavailable": unavailable_reason(),
        },
    )


@router.post("")
async def start_sweep(request: Request, engines: Engines, sweeps: Sweeps, admin: Admin) -> Response:
    sweep = parse_sweep(await read_form(request), tuple(engines))
    assert admin.user_id is not None
    try:
        load_id = sweeps.start(admin.user_id, sweep)
    except SweepBusy as busy:
        raise UserError(
            409,
            f"A sweep is running already (load run #{busy.load_id}): one at a time, as each"
            " loads the engines fully. Wait for it to end, or stop it on its page.",
        ) from None
    except SweepUnavailable as unavailable:
        raise UserError(503, str(unavailable)) from None
    go_to = f"/load/runs/{load_id}"
    if wants_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": go_to})
    return RedirectResponse(go_to, status_code=303)


@router.get("/compare", response_class=HTMLResponse)
async def compare_runs(
    request: Request,
    db: Db,
    _: Admin,
    a: Annotated[int, AsciiDigits, Query(ge=1, le=MAX_ID, description="a load run's id")],
    b: Annotated[int, AsciiDigits, Query(ge=1, le=MAX_ID, description="another load run's id")],
) -> HTMLResponse:
    if a == b:
        raise UserError(422, "Choose two different load runs to compare.")
    first, second = found_run(db, a), found_run(db, b)
    first_results, second_results = results_of(db, a), results_of(db, b)
    charts = [
        (name, CHART_TITLES[name])
        for name in CHARTS
        if name in load_runs.chart_names(db, a) or name in load_runs.chart_names(db, b)
    ]
    return render(
        request,
        "load_compare.html",
        {
            "current_page": "load",
            "first": first,
            "second": second,
            "facts_of": [engine_facts(first.config), engine_facts(second.config)],
            "differences": differences(first.config, second.config),
            "compared": COMPARED,
            "rows": compared_rows(first_results, second_results),
            "charts": charts,
            "has_chart": {
                run.id: set(load_runs.chart_names(db, run.id)) for run in (first, second)
            },
        },
    )


@router.get("/runs/{load_id}", response_class=HTMLResponse)
async def run_page(
    load_id: LoadId, request: Request, db: Db, sweeps: Sweeps, _: Admin
) -> HTMLResponse:
    run = found_run(db, load_id)
    return render(
        request, "load_run.html", {"current_page": "load", **run_context(db, run, sweeps)}
    )


@router.get("/runs/{load_id}/progress", response_class=HTMLResponse)
async def run_progress(
    load_id: LoadId, request: Request, db: Db, sweeps: Sweeps, _: Admin
) -> HTMLResponse:
    """The run's live section: its progress while it runs; its results once it has ended
    (without the polling, which stops there)."""
    run = found_run(db, load_id)
    return render(request, "_load_live.html", run_context(db, run, sweeps))


@router.post("/runs/{load_id}/stop")
async def stop_sweep(
    load_id: LoadId, request: Request, db: Db, sweeps: Sweeps, _: Admin
) -> Response:
    found_run(db, load_id)
    if not sweeps.stop(load_id):
        raise UserError(409, "This sweep is not running (or is drawing its charts).")
    if wants_htmx(request):
        return Response(status_code=204)
    return RedirectResponse(f"/load/runs/{load_id}", status_code=303)


@router.get("/runs/{load_id}/charts/{chart}.svg")
async def chart(load_id: LoadId, chart: ChartName, db: Db, _: Admin) -> Response:
    svg = load_runs.chart_svg(db, found_run(db, load_id).id, chart)
    if svg is None:
        raise not_found("That chart")
    return Response(svg, media_type="image/svg+xml")


@router.get("/runs/{load_id}/export.{extension}")
async def export_run(
    load_id: LoadId, extension: Literal["csv", "json"], db: Db, _: Admin
) -> Response:
    run = found_run(db, load_id)
    documents = load_runs.points_of(db, load_id)
    if extension == "csv":
        return download(
            load_run_csv(documents), "text/csv; charset=utf-8", f"duet-load-{load_id}.csv"
        )
    return download(load_run_json(run, documents), "application/json", f"duet-load-{load_id}.json")


@router.get("/runs/{load_id}/requests.jsonl")
async def export_requests(load_id: LoadId, db: Db, _: Admin) -> Response:
    found_run(db, load_id)
    return download(
        requests_jsonl(load_runs.requests_of(db, load_id)),
        "application/x-ndjson",
        f"duet-load-{load_id}-requests.jsonl",
    )
