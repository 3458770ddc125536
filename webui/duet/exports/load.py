"""Load runs as files: JSON in the shape of `duet bench load`'s load.json (the configuration,
then every point with each repeat's numbers, their medians and spread), CSV with one row per
series and point (the medians), and every request as JSONL (requests.jsonl's lines)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from duet.store.load_runs import LoadRun

POINT_COLUMNS = ("series", "route", "path", "point", "x", "sent", "completed", "failed")


def load_run_json(run: LoadRun, documents: Sequence[dict[str, Any]]) -> str:
    document = {
        "benchmark": "duet bench load",
        **(run.config or {}),
        "load_run": {
            "id": run.id,
            "status": run.status,
            "error": run.error,
            "created_at": run.created_at,
            "finished_at": run.finished_at,
            "asked": run.request,
        },
        "results": list(documents),
    }
    return json.dumps(document, indent=2) + "\n"


def load_run_csv(documents: Sequence[dict[str, Any]]) -> str:
    """A row per series and point: its counts over every repeat, then the median of the
    repeats of every number any point has (vLLM's field names)."""
    numbers = [
        key
        for key in dict.fromkeys(key for doc in documents for key in doc["median"])
        if key not in POINT_COLUMNS and key != "repeat"  # counted above; a repeat's number
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*POINT_COLUMNS, *numbers])
    for doc in documents:
        runs = doc["runs"]
        writer.writerow(
            [
                doc["series"],
                doc["route"],
                doc["path"],
                doc["label"],
                doc["x"],
                sum(run["sent"] for run in runs),
                sum(run["completed"] for run in runs),
                sum(run["failed"] for run in runs),
                *(doc["median"].get(key, "") for key in numbers),
            ]
        )
    return out.getvalue()


def requests_jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)
