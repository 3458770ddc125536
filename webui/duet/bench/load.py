"""`duet bench load`: both engines under load, straight and through Duet, in one run.

The same workload goes to each engine route (vLLM, Ollama's native API, Ollama's `/v1`) on
each path: straight to the engine through Duet's own adapter, and through a `duet serve` that
the benchmark starts in its own process (POST /chat/send, then the answer's event stream, as
the page does; `duet.bench.load_send`). For every load point (a concurrency, or a request rate
with its burstiness: `duet.bench.load_run`) each series runs `repeats` times, in rotating
order so that a drift in the machine's speed falls on every series alike, after a few warm-up
requests per series. Each run draws prompts of its own (`duet.bench.load_workload`).

Every run gets `vllm bench serve`'s numbers (`duet.bench.load_metrics`), the TTFT of one
extra interactive request sent while it runs (the probe), and, through Duet, Duet's own cost
from its process's counters (`duet.bench.load_cost`); each point, the median of its repeats
with their spread, and through Duet its added TTFT against the straight series at the same
point (`duet.bench.load_report`). The run writes load.json (with the whole configuration:
`duet.bench.load_config`), requests.jsonl and the plots (`duet.bench.load_plots`) to its
folder, and prints the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from duet.bench.load_config import engine_facts
from duet.bench.load_cost import CostWatch
from duet.bench.load_metrics import RequestRecord
from duet.bench.load_report import (
    PointResult,
    add_duet_overhead,
    format_table,
    run_numbers,
    write_documents,
)
from duet.bench.load_run import Limits, LoadPoint, RunOutcome, new_state, run_once
from duet.bench.load_send import (
    ChatState,
    DirectSender,
    DuetSender,
    PathKind,
    Sender,
    Series,
    fixed_length_vllm,
    sampling,
)
from duet.bench.load_workload import PromptMaker, Workload, jobs_for_run, tokenizer_source
from duet.bench.relay import (
    DuetUnderTest,
    bench_client,
    free_port,
    start_duet,
    stop_processes,
    wait_until_up,
)
from duet.bench.report import machine_description
from duet.engines import build_engines
from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.settings import Settings

PATH_DESCRIPTIONS: dict[PathKind, str] = {
    "direct": "straight to the engine through Duet's adapter, in the benchmark's process",
    "duet": "through duet serve (its own process): POST /chat/send, then the answer's event stream",
}
# A rate point runs this many seconds of arrivals unless --requests says otherwise.
RATE_POINT_SECONDS = 30


@dataclass(frozen=True)
class LoadOptions:
    routes: tuple[EngineName, ...]
    paths: tuple[PathKind, ...]
    points: tuple[LoadPoint, ...]
    workload: Workload
    out: Path
    requests: int | None = None  # per run; None: `requests_for`
    repeats: int = 3
    warmup: int = 2
    limits: Limits = field(default_factory=Limits)
    slos_ms: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    tokenizer: str | None = None
    progress: bool = True
    probe: bool = True  # one extra interactive request in each run (duet.bench.load_run)
    command: str = "duet bench load"
    # Set over the configuration every document records: what a replay run's source is
    # (duet.bench.load_replay), so that even a run stopped halfway says so.
    labels: dict[str, Any] = field(default_factory=dict)
    # Told of every request as it ends, with its run's title (the Load page's progress).
    on_record: Callable[[str, RequestRecord], None] | None = None


def requests_for(point: LoadPoint, asked: int | None) -> int:
    """A run's requests: as asked, else four rounds of the concurrency (at least 8), or a
    rate point's `RATE_POINT_SECONDS` of arrivals."""
    if asked is not None:
        return asked
    if point.rate is not None:
        return max(8, math.ceil(point.rate * RATE_POINT_SECONDS))
    return max(8, 4 * (point.concurrency or 1))


def check_options(options: LoadOptions) -> str | None:
    """Why these options cannot run, or None."""
    if not options.routes or not options.paths or not options.points:
        return "give at least one route, one path and one load point"
    if options.workload.fixed_output and "duet" in options.paths:
        return (
            "--fixed-output needs --paths direct: Duet's composer has no ignore_eos, so a run"
            " through Duet caps the output length on every path, the same workload on both"
        )
    if options.repeats < 1 or (options.requests is not None and options.requests < 1):
        return "--repeats and --requests must be at least 1"
    return None


def adapters(settings: Settings, workload: Workload) -> dict[EngineName, Engine]:
    engines = build_engines(settings)
    if workload.fixed_output:
        engines["vllm"] = fixed_length_vllm(settings)
    return engines


def progress_bar(options: LoadOptions, total: int, title: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=title,
        unit="req",
        file=sys.stderr,
        leave=True,
        disable=not options.progress,
    )


async def warm_up(sender: Sender, options: LoadOptions, prompts: PromptMaker | None) -> None:
    """A few requests per series first, not recorded: connections, caches, a loaded model."""
    jobs = jobs_for_run(options.workload, options.warmup, options.seed - 1, prompts)
    for job in jobs[: options.warmup]:
        await sender.send(job.turns[0], ChatState(), -1, 0)


async def one_run(
    sender: Sender,
    point: LoadPoint,
    repeat: int,
    seed: int,
    options: LoadOptions,
    prompts: PromptMaker | None,
    duet_pid: int | None,
) -> tuple[RunOutcome, dict[str, Any] | None]:
    requests = requests_for(point, options.requests)
    jobs = jobs_for_run(options.workload, requests, seed, prompts)
    title = f"{sender.series.name} · {point.label} · {repeat + 1}/{options.repeats}"
    bar = progress_bar(options, requests, title)
    failures = 0

    def on_record(record: RequestRecord) -> None:
        nonlocal failures
        failures += not record.success
        bar.update(1)
        if options.on_record is not None:
            options.on_record(title, record)
        if failures:
            bar.set_postfix(failed=failures)

    state = new_state(point, requests, options.limits, on_record, options.probe)
    rng = random.Random(seed)
    try:
        if duet_pid is None:
            outcome = await run_once(sender, point, jobs, options.limits, rng, state, repeat)
            cost = None
        else:
            async with CostWatch(duet_pid, lambda: len(state.in_flight)) as watch:
                outcome = await run_once(sender, point, jobs, options.limits, rng, state, repeat)
            cost = watch.result(outcome.chunks_relayed)
    finally:
        bar.close()
    if outcome.stopped_early:
        print(f"  stopped early: {outcome.stopped_early}", file=sys.stderr)
    return outcome, cost


async def sweep(
    options: LoadOptions,
    engines: dict[EngineName, Engine],
    duet: DuetUnderTest | None,
    duet_pid: int | None,
    prompts: PromptMaker | None,
    on_point: Callable[[list[PointResult]], None] | None = None,
) -> list[PointResult]:
    """Every series at every point; `on_point` is given the results so far after each point."""
    series = [Series(route, path) for route in options.routes for path in options.paths]
    results = {(s, p): PointResult(s, p) for p in options.points for s in series}
    async with bench_client() as client:
        senders: dict[Series, Sender] = {}
        for s in series:
            if s.path == "direct":
                senders[s] = DirectSender(
                    s, engines[s.route], options.workload, options.limits.request_timeout
                )
            else:
                assert duet is not None
                senders[s] = DuetSender(
                    s, client, duet, options.workload, options.limits.request_timeout
                )
        try:
            for s in series:
                await warm_up(senders[s], options, prompts)
            run = 0
            for point in options.points:
                for repeat in range(options.repeats):
                    turn = repeat % len(series)
                    for s in series[turn:] + series[:turn]:
                        # Each run its own prompts, from the run's seed and its place.
                        seed = options.seed * 100_003 + run
                        run += 1
                        pid = duet_pid if s.path == "duet" else None
                        outcome, cost = await one_run(
                            senders[s], point, repeat, seed, options, prompts, pid
                        )
                        result = results[(s, point)]
                        result.runs.append(run_numbers(outcome, options.slos_ms, cost))
                        result.outcomes.append(outcome)
                if on_point is not None:
                    done = [r for r in results.values() if r.runs]
                    add_duet_overhead(done)
                    on_point(done)
        finally:
            for engine in engines.values():
                await engine.aclose()
    ordered = list(results.values())
    add_duet_overhead(ordered)
    return ordered


def duet_limits(options: LoadOptions) -> dict[str, str]:
    """The Duet under test lets this one client hold every stream the run opens."""
    most = max((p.concurrency or requests_for(p, options.requests)) for p in options.points)
    streams = 2 * most + 8  # the probe, and streams that are closing as new ones open
    return {"DUET_MAX_STREAMS_PER_CLIENT": str(streams), "DUET_MAX_CONNECTIONS": str(4 * streams)}


def configuration(
    options: LoadOptions,
    settings: Settings,
    prompts: PromptMaker | None,
    duet: dict[str, Any] | None,
    load: dict[str, Any],
) -> dict[str, Any]:
    """Everything a reader needs to know what was measured."""
    workload = options.workload
    return {
        "command": options.command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_description(),
        "load_average": load,
        **workload.describe(),
        "output_length_control": output_length_control(workload, options),
        "tokenizer": prompts.source if prompts else None,
        "sampling": asdict(sampling(workload)),
        "routes": list(options.routes),
        "paths": {path: PATH_DESCRIPTIONS[path] for path in options.paths},
        "points": [asdict(point) for point in options.points],
        "requests_per_run": {p.label: requests_for(p, options.requests) for p in options.points},
        "repeats": options.repeats,
        "warmup_requests_per_series": options.warmup,
        "probe": options.probe,
        "limits": asdict(options.limits),
        "goodput_slos_ms": options.slos_ms,
        "seed": options.seed,
        "engines": engine_facts(settings, list(options.routes)),
        "duet": duet,
        **options.labels,
    }


def output_length_control(workload: Workload, options: LoadOptions) -> str:
    if workload.fixed_output:
        return (
            f"straight to vLLM exactly {workload.output_len} tokens (ignore_eos);"
            f" Ollama at most {workload.output_len} (num_predict / max_tokens: Ollama has no"
            " ignore_eos)"
        )
    return f"at most {workload.output_len} tokens on every route and path (max_tokens, num_predict)"


def start_duet_under_test(
    settings: Settings, options: LoadOptions, workdir: Path
) -> tuple[Any, DuetUnderTest]:
    port = free_port()
    log = workdir / "duet-serve.log"
    process = start_duet(
        settings, port, log, workdir / "duet.sqlite3", "local", duet_limits(options)
    )
    duet = DuetUnderTest("duet", f"http://127.0.0.1:{port}")
    print(f"Duet under test: duet serve on {duet.url} (pid {process.pid})", file=sys.stderr)
    try:
        wait_until_up(duet.url + "/compare", process, log)
    except BaseException:
        stop_processes([process])
        raise
    return process, duet


async def started_duet_under_test(
    settings: Settings, options: LoadOptions, workdir: Path
) -> tuple[Any, DuetUnderTest]:
    """`start_duet_under_test` in a worker thread. Cancelled while the Duet starts (a sweep
    stopped from the Load page), it still stops that Duet once it has started."""
    starting = asyncio.ensure_future(
        asyncio.to_thread(start_duet_under_test, settings, options, workdir)
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            process, _ = await starting
            stop_processes([process])
        raise


def measure(
    options: LoadOptions, settings: Settings | None = None
) -> tuple[dict[str, Any], list[PointResult]]:
    """Run the sweep (starting and stopping the Duet under test) against the engines
    `settings` name (default: the environment's): configuration and results.
    RuntimeError or FileNotFoundError when it cannot run."""
    return asyncio.run(measure_async(options, settings or Settings.from_env()))


async def measure_async(
    options: LoadOptions,
    settings: Settings,
    on_point: Callable[[dict[str, Any], list[PointResult]], None] | None = None,
) -> tuple[dict[str, Any], list[PointResult]]:
    """`measure` in a running event loop (the Load page's, in the server): what blocks (the
    tokenizer, starting the Duet under test, asking the engines about themselves) runs in a
    worker thread. `on_point` is given the configuration and the results so far after each
    point."""
    engines = adapters(settings, options.workload)
    absent = [route for route in options.routes if route not in engines]
    if absent:
        raise RuntimeError(f"route {absent[0]} is not configured (duet.settings names its URL)")
    prompts = None
    if options.workload.kind == "random":
        source = tokenizer_source(options.tokenizer)
        prompts = await asyncio.to_thread(PromptMaker, source)
    workdir = Path(tempfile.mkdtemp(prefix="duet-load-"))
    load: dict[str, Any] = {"before": os.getloadavg(), "after": None}
    process = duet = None
    if "duet" in options.paths:
        process, duet = await started_duet_under_test(settings, options, workdir)
    try:
        duet_facts = None
        if duet is not None:
            duet_facts = {
                "url": duet.url,
                "mode": "local",
                "environment": duet_limits(options),
                "workdir": str(workdir),
            }
        config = await asyncio.to_thread(
            configuration, options, settings, prompts, duet_facts, load
        )

        def keep(results: list[PointResult]) -> None:
            # A run stopped halfway still leaves every point it finished.
            write_documents(options.out, {**config, "complete": False}, results)
            if on_point is not None:
                on_point(config, results)

        pid = process.pid if process is not None else None
        results = await sweep(options, engines, duet, pid, prompts, keep)
    finally:
        if process is not None:
            stop_processes([process])
    load["after"] = os.getloadavg()
    return {**config, "complete": True}, results


def plot_subtitle(config: dict[str, Any]) -> str:
    workload = config["workload"]
    lengths = f"in {config['input_len']} / out {config['output_len']} tokens"
    if workload == "chat":
        lengths = f"bundled chats, out {config['output_len']} tokens"
    thinking = "thinking on" if config["thinking"] else "thinking off"
    return f"{workload}: {lengths}, {thinking} · {config['date']}\n{config['machine']}"


def run_bench_load(options: LoadOptions) -> int:
    """`duet bench load`: measure, print the table, write the documents and the plots."""
    problem = check_options(options)
    if problem is not None:
        print(f"duet bench load: {problem}", file=sys.stderr)
        return 2
    # Stopped with SIGTERM, still stop the Duet under test (the finally clauses run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        config, results = measure(options)
    except (RuntimeError, FileNotFoundError) as error:
        print(f"duet bench load: {error}", file=sys.stderr)
        return 1
    from duet.bench.load_plots import write_plots

    print(format_table(results))
    summary, raw = write_documents(options.out, config, results)
    plots = write_plots(results, plot_subtitle(config), options.out)
    print(f"results: {summary}; every request: {raw}", file=sys.stderr)
    print(f"plots: {', '.join(path.name for path in plots)} in {options.out}", file=sys.stderr)
    return 0


def parse_points(
    concurrency: Sequence[int], rates: Sequence[float], burstiness: float, cap: int | None
) -> tuple[LoadPoint, ...]:
    if rates:
        return tuple(LoadPoint(cap, rate, burstiness) for rate in rates)
    return tuple(LoadPoint(c) for c in concurrency)
