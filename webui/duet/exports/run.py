"""Compare runs as files: CSV with one row per answer (the numbers), JSON with everything
(the numbers, both hops' raw arrival times, the engines' own timings) to recompute them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from duet.metrics.answers import AnswerMetrics, answer_metrics
from duet.metrics.stream import stream_metrics
from duet.store.runs import CompareAnswer, CompareRun

EXPORT_FORMAT_VERSION = 1

RUN_COLUMNS = ("run_id", "created_at", "mode", "thinking", "prompt")
ANSWER_COLUMNS = (
    "position",
    "engine",
    "model",
    "status",
    "error",
    "started_ms",
    "prompt_tokens",
    "output_tokens",
    "engine_eval_tokens_per_s",
)


def engine_eval_rate(answer: CompareAnswer) -> float | None:
    """Ollama's own decode speed, eval_count / eval_duration; None for engines without it."""
    duration = answer.engine_timings.get("eval_duration")
    if not duration or answer.output_tokens is None:
        return None
    return round(answer.output_tokens / duration, 2)


def answer_row(run: CompareRun, answer: CompareAnswer) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run.id,
        "created_at": run.created_at,
        "mode": run.mode,
        "thinking": run.thinking,
        "prompt": run.prompt,
    }
    row.update({name: getattr(answer, name) for name in ANSWER_COLUMNS[:-1]})
    row["engine_eval_tokens_per_s"] = engine_eval_rate(answer)
    row.update(answer_metrics(answer).as_dict())
    return row


def runs_csv(runs: Sequence[CompareRun]) -> str:
    rows = [answer_row(run, answer) for run in runs for answer in run.answers]
    # The metric columns come from the metrics themselves, so a new figure reaches the CSV
    # without a second list to keep in step; an empty export still gets its header.
    no_data = AnswerMetrics(server=stream_metrics(0.0, []), browser=None, hops=None)
    metric_columns = list(no_data.as_dict())
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=[*RUN_COLUMNS, *ANSWER_COLUMNS, *metric_columns], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def runs_json(runs: Sequence[CompareRun]) -> str:
    document = {
        "format": "duet-compare-runs",
        "version": EXPORT_FORMAT_VERSION,
        "runs": [
            {
                **{key: value for key, value in asdict(run).items() if key != "answers"},
                "answers": [
                    {**asdict(answer), "metrics": answer_metrics(answer).as_dict()}
                    for answer in run.answers
                ],
            }
            for run in runs
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
