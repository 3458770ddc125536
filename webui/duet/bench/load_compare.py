"""Duet's load numbers against `vllm bench serve`'s, on the same vLLM and the same workload.

    python -m duet.bench.load_compare --repeats 5 --concurrency 2 --requests 20

runs, `repeats` times and alternating which goes first, vLLM's own benchmark client
(`vllm bench serve --backend openai-chat --dataset-name random --ignore-eos`, from the vLLM
virtualenv: its `vllm` script does not start in the CPU build, so its module is called) and
`duet bench load --routes vllm --paths direct --fixed-output --no-probe` with the same
concurrency,
request count, input and output lengths, greedy, thinking off, each repeat with a new seed.
On a shared machine two runs of one tool can differ by more than 5 %, so it compares the
medians of the repeats of TTFT p50, TPOT p50 and output throughput, and says whether each
agrees within `TOLERANCE`. Every run's own numbers are kept beside the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TOLERANCE = 0.05
# The numbers compared: the same field names in both tools' results.
COMPARED = ("median_ttft_ms", "median_tpot_ms", "output_throughput")
VLLM_BENCH = (
    "import sys; from vllm.benchmarks.serve import add_cli_args, main; "
    "from vllm.utils.argparse_utils import FlexibleArgumentParser; "
    "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"
)


def vllm_command(args: argparse.Namespace, seed: int, out: Path) -> list[str]:
    return [
        str(args.vllm_python), "-c", VLLM_BENCH,
        "--backend", "openai-chat", "--base-url", args.vllm_url,
        "--endpoint", "/v1/chat/completions", "--model", args.model,
        "--tokenizer", str(args.tokenizer),
        "--dataset-name", "random", "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len), "--ignore-eos",
        "--num-prompts", str(args.requests), "--max-concurrency", str(args.concurrency),
        "--temperature", "0",
        "--extra-body", json.dumps({"chat_template_kwargs": {"enable_thinking": False}}),
        "--seed", str(seed), "--num-warmups", str(args.warmup), "--disable-tqdm",
        "--save-result", "--result-dir", str(out.parent), "--result-filename", out.name,
    ]  # fmt: skip


def duet_command(args: argparse.Namespace, seed: int, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "duet.cli", "bench", "load",
        "--routes", "vllm", "--paths", "direct", "--fixed-output",
        "--concurrency", str(args.concurrency), "--requests", str(args.requests),
        "--input-len", str(args.input_len), "--output-len", str(args.output_len),
        "--repeats", "1", "--warmup", str(args.warmup), "--seed", str(seed),
        "--tokenizer", str(args.tokenizer), "--out", str(out), "--no-progress", "--no-probe",
    ]  # fmt: skip


def duet_numbers(out: Path) -> dict[str, Any]:
    document = json.loads((out / "load.json").read_text())
    return document["results"][0]["runs"][0]


def vllm_numbers(out: Path) -> dict[str, Any]:
    return json.loads(out.read_text())


def compare(duet: Sequence[dict[str, Any]], vllm: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """For each compared number: both tools' repeats, their medians, Duet's relative
    difference from vLLM's, and whether it is within TOLERANCE."""
    rows = {}
    for key in COMPARED:
        ours = [run[key] if run.get("completed") else None for run in duet]
        theirs = [run[key] if run.get("completed") else None for run in vllm]
        ours_median, theirs_median = median_of_completed(ours), median_of_completed(theirs)
        difference = None
        if ours_median is not None and theirs_median:
            difference = ours_median / theirs_median - 1
        rows[key] = {
            "duet": ours,
            "vllm": theirs,
            "duet_median": ours_median,
            "vllm_median": theirs_median,
            "difference": difference,
            "within_tolerance": difference is not None and abs(difference) <= TOLERANCE,
        }
    return rows


def median_of_completed(values: Sequence[float | None]) -> float | None:
    """The median of the repeats that completed requests (None stands for one that did not:
    vLLM's client writes 0 for its numbers then, Duet's writes None); None when none did."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def report(rows: dict[str, Any]) -> list[str]:
    lines = [f"{'':18}{'duet (median)':>15}{'vllm (median)':>15}{'difference':>12}"]
    for key, row in rows.items():
        if row["difference"] is None:
            lines.append(f"{key:18}  not measured by both (see each run's log)")
            continue
        verdict = "ok" if row["within_tolerance"] else f"over {TOLERANCE:.0%}"
        lines.append(
            f"{key:18}{row['duet_median']:>15.2f}{row['vllm_median']:>15.2f}"
            f"{row['difference']:>+12.1%}  {verdict}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    duet_runs, vllm_runs = [], []
    env = os.environ | {
        "DUET_VLLM_URL": args.vllm_url,
        "DUET_VLLM_MODEL": args.model,
        "PYTHONUNBUFFERED": "1",
    }
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        duet_out, vllm_out = args.out / f"duet-{repeat}", args.out / f"vllm-{repeat}.json"
        steps = [
            ("duet", duet_command(args, seed, duet_out)),
            ("vllm", vllm_command(args, seed, vllm_out)),
        ]
        if repeat % 2:
            steps.reverse()
        for name, command in steps:
            print(f"repeat {repeat + 1}/{args.repeats}: {name}", file=sys.stderr, flush=True)
            with open(args.out / f"{name}-{repeat}.log", "wb") as log:
                subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        duet_runs.append(duet_numbers(duet_out))
        vllm_runs.append(vllm_numbers(vllm_out))
    rows = compare(duet_runs, vllm_runs)
    setting = {k: str(v) for k, v in vars(args).items()}
    document = {"setting": setting, "tolerance": TOLERANCE, "compared": rows}
    (args.out / "compare.json").write_text(json.dumps(document, indent=2) + "\n")
    print("\n".join(report(rows)))
    return 0 if all(row["within_tolerance"] for row in rows.values()) else 1


def parser() -> argparse.ArgumentParser:
    from duet.devstack import CachePaths
    from duet.settings import default_cache

    cache = CachePaths(default_cache())
    parse = argparse.ArgumentParser(prog="python -m duet.bench.load_compare", description=__doc__)
    add = parse.add_argument
    add("--vllm-url", default="http://127.0.0.1:8000")
    add("--model", default="qwen3-duet-tiny", help="the model vLLM serves")
    add("--tokenizer", type=Path, default=cache.tiny_model, help="its folder or tokenizer.json")
    add("--vllm-python", type=Path, default=cache.vllm_python, help="the vLLM venv's python")
    add("--concurrency", type=int, default=2)
    add("--requests", type=int, default=20)
    add("--input-len", type=int, default=128)
    add("--output-len", type=int, default=64)
    add("--warmup", type=int, default=2)
    add("--repeats", type=int, default=5)
    add("--seed", type=int, default=1)
    add("--out", type=Path, default=Path("duet-load-compare"))
    return parse


if __name__ == "__main__":
    sys.exit(run(parser().parse_args()))
