"""What a `duet bench load` run leaves: the terminal table, the JSON document (every run's
numbers under `vllm bench serve`'s field names, each point's median of its repeats with their
spread, and the whole configuration) and every request as a line of JSONL.

A series is an engine route on a path; a point is a load (a concurrency or a rate). For each
series through Duet, `added_ttft_ms` is its median TTFT minus the straight series' median TTFT
at the same point, on the same engine route (both the median of their repeats): what Duet
adds when that many people use it at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from duet.bench.load_metrics import run_metrics, spread
from duet.bench.load_run import LoadPoint, RunOutcome
from duet.bench.load_send import Series

# The numbers the table shows, as (heading, key in a point's medians, format).
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("TTFT p50", "median_ttft_ms", "{:.0f}"),
    ("TTFT p99", "p99_ttft_ms", "{:.0f}"),
    ("TPOT p50", "median_tpot_ms", "{:.1f}"),
    ("ITL p50", "median_itl_ms", "{:.1f}"),
    ("E2EL p50", "median_e2el_ms", "{:.0f}"),
    ("out tok/s", "output_throughput", "{:.1f}"),
    ("user tok/s", "output_throughput_per_user", "{:.1f}"),
    ("peak conc", "peak_concurrency", "{:.0f}"),
    ("probe TTFT", "probe_ttft_ms", "{:.0f}"),
)
DUET_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("+TTFT Duet", "added_ttft_ms", "{:+.1f}"),
    ("CPU ms/chunk", "duet_cpu_ms_per_chunk", "{:.3f}"),
    ("MiB/stream", "duet_mib_per_open_stream", "{:.2f}"),
)


@dataclass
class PointResult:
    """One series at one point: each repeat's numbers, and the point's medians and spread."""

    series: Series
    point: LoadPoint
    runs: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def spread(self) -> dict[str, dict[str, float]]:
        return spread(self.runs) if self.runs else {}

    @property
    def medians(self) -> dict[str, float]:
        return {key: values["median"] for key, values in self.spread.items()}

    def stopped_early(self) -> list[str]:
        return [
            f"repeat {run['repeat']}: {run['stopped_early']}"
            for run in self.runs
            if run["stopped_early"]
        ]


def run_numbers(
    outcome: RunOutcome, slos_ms: dict[str, float], cost: dict[str, Any] | None
) -> dict[str, Any]:
    """One run's numbers: vLLM's fields, the counts, the probe, Duet's cost."""
    numbers = run_metrics(outcome.records, outcome.duration, slos_ms)
    probe = outcome.probe
    return {
        "repeat": outcome.repeat,
        "sent": len(outcome.records),
        **numbers,
        "probe_ttft_ms": probe.ttft * 1000 if probe and probe.success and probe.ttft else None,
        "probe_failed": probe.cause if probe and not probe.success else None,
        "stopped_early": outcome.stopped_early,
        **(cost or {}),
    }


# What a run through Duet adds, as (its key, the number it is the difference of).
ADDED_TTFT: tuple[tuple[str, str], ...] = (("added_ttft_ms", "median_ttft_ms"),)


def add_duet_overhead(
    results: Sequence[PointResult], added: Sequence[tuple[str, str]] = ADDED_TTFT
) -> None:
    """Each run through Duet gets, for each (key, metric) of `added` (by default
    `added_ttft_ms`), its metric minus the straight series' median of that metric at the same
    point and route (the median of that series' repeats)."""
    for key, metric in added:
        straight = {
            (r.series.route, r.point): r.medians.get(metric)
            for r in results
            if r.series.path == "direct"
        }
        for result in results:
            if result.series.path != "duet":
                continue
            base = straight.get((result.series.route, result.point))
            for run in result.runs:
                value = run.get(metric)
                run[key] = value - base if value is not None and base is not None else None


def fmt(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def counts_cell(result: PointResult) -> str:
    sent = sum(run["sent"] for run in result.runs)
    done = sum(run["completed"] for run in result.runs)
    causes: dict[str, int] = {}
    for run in result.runs:
        for cause, count in run["failed_by_cause"].items():
            causes[cause] = causes.get(cause, 0) + count
    cell = f"{done}/{sent}"
    if causes:
        cell += " (" + ", ".join(f"{n} {cause}" for cause, n in causes.items()) + ")"
    return cell


def table_cells(results: Sequence[PointResult]) -> tuple[list[str], list[list[str]]]:
    """The table's heading and rows, as text: the terminal's table and the Load page's."""
    duet = any(r.series.path == "duet" for r in results)
    columns = TABLE_COLUMNS + (DUET_COLUMNS if duet else ())
    heading = ["series", "point", "done/sent", *(title for title, _, _ in columns)]
    rows = []
    for result in results:
        medians = result.medians
        rows.append(
            [
                result.series.name,
                result.point.label,
                counts_cell(result),
                *(fmt(medians.get(key), pattern) for _, key, pattern in columns),
            ]
        )
    return heading, rows


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines of left-aligned columns, with a rule under the first (the
    heading)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def format_table(results: Sequence[PointResult]) -> str:
    """Medians of each point's repeats (ms, tokens/s); done/sent over all repeats."""
    heading, cells = table_cells(results)
    rows = [heading, *cells]
    lines = aligned(rows)
    notes = [
        f"{r.series.name}, {r.point.label}: {note}" for r in results for note in r.stopped_early()
    ]
    if notes:
        lines += ["", "stopped early:", *(f"  {note}" for note in notes)]
    return "\n".join(lines)


def point_document(result: PointResult) -> dict[str, Any]:
    return {
        "series": result.series.name,
        "route": result.series.route,
        "path": result.series.path,
        "point": asdict(result.point),
        "x": result.point.x,
        "label": result.point.label,
        "runs": result.runs,
        "median": result.medians,
        "spread": result.spread,
    }


def point_from_document(document: dict[str, Any]) -> PointResult:
    """A point again from its `point_document` (its runs' numbers; the requests are not in it),
    for what is drawn or tabled from a stored run."""
    return PointResult(
        Series(document["route"], document["path"]),
        LoadPoint(**document["point"]),
        runs=list(document["runs"]),
    )


def results_document(config: dict[str, Any], results: Sequence[PointResult]) -> dict[str, Any]:
    return {
        "benchmark": "duet bench load",
        **config,
        "results": [point_document(result) for result in results],
    }


def write_documents(
    out: Path, config: dict[str, Any], results: Sequence[PointResult]
) -> tuple[Path, Path]:
    """load.json and requests.jsonl in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "load.json"
    summary.write_text(json.dumps(results_document(config, results), indent=2) + "\n", "utf-8")
    raw = out / "requests.jsonl"
    # A run that says what its source is (a replay source) says it on every line too.
    tags = {"source": config["source"]} if "source" in config else {}
    with raw.open("w", encoding="utf-8") as lines:
        for result in results:
            for outcome in result.outcomes:
                for line in record_lines(outcome):
                    lines.write(json.dumps({**tags, **line}) + "\n")
    return summary, raw


def record_lines(outcome: RunOutcome) -> Iterable[dict[str, Any]]:
    """Every request of a run, then its probe (`"probe": true`, outside the run's counts)."""
    where = {"point": outcome.point.label, "repeat": outcome.repeat}
    for record in outcome.records:
        yield {**where, "probe": False, **asdict(record)}
    if outcome.probe is not None:
        yield {**where, "probe": True, **asdict(outcome.probe)}
