"""`duet bench load --replay PACE`: Duet's own capacity at GPU speed, driven by the replay
source. It measures Duet, not an engine.

The load benchmark's own sweep (`duet.bench.load`: its client, stream reader, metrics, report
and plots) runs against a replay source (`duet.bench.replay_source`) in a process of its own
instead of the engines: the source streams recorded real engine output (vLLM's and Ollama's
wire formats) at PACE tokens/s per stream after a first-token delay, straight to this
benchmark through Duet's adapters and through the `duet serve` under test, pointed at it.

At every concurrency, what Duet adds is its series' median minus the straight series' median
on the same route (each the median of its repeats) for TTFT, ITL and E2EL; beside them Duet's
CPU per relayed chunk and memory per open stream, from its process's counters
(`duet.bench.load_cost`). A point is within the limits when Duet's added TTFT p50 and E2EL p50
are at most `max_added_ttft_ms` (its streams start and end at most that much later than
straight ones) and its added ITL p50 at most `max_added_itl_ms`. E2EL too: a relay that falls
behind writes the chunks that queued up meanwhile together, and their zero gaps hold the ITL
median (and TPOT, after a late first token) down while the answer ends later and later.
Duet's capacity on a route is the largest concurrency up to which every point of the sweep is
within. Where even the straight streams fell behind the source's schedule (their median time
from first to last chunk over the schedule's by more than `ITL_LIMIT_SHARE`), the point says
so: there the benchmark's client or the source, on the same cores, set the limit, and the
point does not measure Duet's.

Every output says "replay source: measures Duet, not an engine": the table's heading,
load.json's `benchmark` and `source`, every line of requests.jsonl, every plot's title.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
from matplotlib.figure import Figure

from duet.bench.load import LoadOptions, check_options, measure_async
from duet.bench.load_cost import cpu_seconds
from duet.bench.load_metrics import RequestRecord
from duet.bench.load_report import (
    PointResult,
    add_duet_overhead,
    aligned,
    fmt,
    format_table,
    write_documents,
)
from duet.bench.load_run import LoadPoint
from duet.bench.relay import free_port, stop_processes, wait_until_up
from duet.bench.replay_source import Pace, Recordings, load_recordings, steps
from duet.settings import Settings

LABEL = "replay source: measures Duet, not an engine"
# What Duet adds to ITL and E2EL, besides TTFT (`add_duet_overhead`'s pairs).
ADDED_PACING: tuple[tuple[str, str], ...] = (
    ("added_itl_ms", "median_itl_ms"),
    ("added_e2el_ms", "median_e2el_ms"),
)
ADDED_KEYS = ("added_ttft_ms", "added_itl_ms", "added_e2el_ms")
# By default a stream may slow by a tenth of its pace's interval between chunks.
ITL_LIMIT_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    pace: Pace
    max_added_ttft_ms: float = 25.0
    max_added_itl_ms: float | None = None  # None: `ITL_LIMIT_SHARE` of the pace's interval
    recordings: Path | None = None  # None: the ones Duet ships

    @property
    def interval_ms(self) -> float:
        return 1000 / self.pace.tokens_per_s

    @property
    def itl_limit_ms(self) -> float:
        if self.max_added_itl_ms is not None:
            return self.max_added_itl_ms
        return ITL_LIMIT_SHARE * self.interval_ms


@dataclass(frozen=True, slots=True)
class CapacityPoint:
    """One route at one concurrency: the medians of Duet's repeats, and the verdict."""

    route: str
    concurrency: int
    added_ttft_ms: float | None
    added_itl_ms: float | None
    added_e2el_ms: float | None
    cpu_ms_per_chunk: float | None
    mib_per_open_stream: float | None
    chunks_per_s: float | None  # text chunks Duet relayed per second, over all streams
    # Straight streams' median time from first to last chunk over the source's schedule for it.
    straight_pace: float | None
    straight_kept_pace: bool
    within: bool
    why_not: tuple[str, ...]
    # The whole machine during the point (`MachineWatch`), all series of it together.
    machine_idle_share: float | None = None
    other_cores: float | None = None
    benchmark_cores: float | None = None


@dataclass
class MachineWatch:
    """What the machine's cores did during each point: the share left idle, and how many
    cores processes other than this benchmark's kept busy (its own are this process, the
    client, and its children: the replay source and the Duet under test). On a shared machine
    that says how much of it a point had. A point's window runs from the end of the point
    before (the first: from its first request's end, after the start-up and warm-up)."""

    points: Sequence[LoadPoint]
    by_point: dict[str, dict[str, float]] = field(default_factory=dict)
    _last: tuple[float, float, float] | None = None  # (monotonic, machine busy, ours) s

    @staticmethod
    def sample() -> tuple[float, float, float]:
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        return time.monotonic(), busy, cpu_seconds(psutil.Process())

    def request_ended(self, title: str, record: RequestRecord) -> None:
        if self._last is None:
            self._last = self.sample()

    def point_ended(self, config: dict[str, Any], results: list[PointResult]) -> None:
        now = self.sample()
        if self._last is None or len(self.by_point) >= len(self.points):
            return
        wall, busy, ours = (a - b for a, b in zip(now, self._last, strict=True))
        self._last = now
        cores = psutil.cpu_count() or 1
        self.by_point[self.points[len(self.by_point)].label] = {
            "machine_idle_share": max(0.0, 1 - busy / (wall * cores)),
            "other_cores": max(0.0, busy - ours) / wall,
            "benchmark_cores": ours / wall,
        }


def source_command(port: int, replay: ReplayOptions) -> list[str]:
    command = [
        sys.executable, "-m", "duet.bench.replay_source", "--port", str(port),
        "--pace", str(replay.pace.tokens_per_s),
        "--first-token-ms", str(replay.pace.first_token_ms),
    ]  # fmt: skip
    if replay.recordings is not None:
        command += ["--recordings", str(replay.recordings)]
    return command


def start_source(replay: ReplayOptions, workdir: Path) -> tuple[subprocess.Popen, str]:
    """The replay source in its own process, answering: (the process, its base URL)."""
    port = free_port()
    log_path = workdir / "replay-source.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            source_command(port, replay), stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    print(f"{LABEL}: on {url} (pid {process.pid})", file=sys.stderr)
    try:
        wait_until_up(url + "/vllm/v1/models", process, log_path)
    except BaseException:
        stop_processes([process])
        raise
    return process, url


def source_settings(url: str, recordings: Recordings) -> Settings:
    """This environment's settings with both engines at the replay source, under the models
    the recordings were made with."""
    return replace(
        Settings.from_env(),
        vllm_url=url + "/vllm",
        ollama_url=url + "/ollama",
        vllm_model=recordings.about["vllm"]["model"],
        ollama_model=recordings.about["ollama"]["model"],
        vllm_api_key="",
    )


def source_labels(replay: ReplayOptions, recordings: Recordings) -> dict[str, Any]:
    """What the run's documents say of its source, over the engines' facts (which the
    source's recorded answers would otherwise give as an engine's)."""
    chunks = {route: len(steps(recorded)) for route, recorded in recordings.streams.items()}
    return {
        "benchmark": f"duet bench load --replay ({LABEL})",
        "source": LABEL,
        "engines": {
            "replay source": {
                "module": "duet.bench.replay_source",
                "tokens_per_s_per_stream": replay.pace.tokens_per_s,
                "first_token_ms": replay.pace.first_token_ms,
                "text_chunks_per_stream": chunks,
                "recordings": dict(recordings.about),
            }
        },
        "output_length_control": (
            "the recording's: every answer is the recorded stream, whatever the request asked"
        ),
        "capacity_limits": {
            "max_added_ttft_and_e2el_p50_ms": replay.max_added_ttft_ms,
            "max_added_itl_p50_ms": replay.itl_limit_ms,
        },
    }


def capacity_points(
    results: Sequence[PointResult],
    replay: ReplayOptions,
    chunks: Mapping[str, int],
    machine: Mapping[str, dict[str, float]] | None = None,
) -> list[CapacityPoint]:
    """Each route's points through Duet, in order of concurrency, with their verdicts;
    `chunks` is each route's text chunks per stream, `machine` `MachineWatch.by_point`."""
    straight = {(r.series.route, r.point): r for r in results if r.series.path == "direct"}
    points = []
    duet = [r for r in results if r.series.path == "duet" and r.point.concurrency]
    for result in sorted(duet, key=lambda r: (r.series.route, r.point.x)):
        base = straight.get((result.series.route, result.point))
        straight_pace = pace_kept(base, replay, chunks[result.series.route]) if base else None
        kept_pace = straight_pace is not None and straight_pace <= 1 + ITL_LIMIT_SHARE
        added = {key: result.medians.get(key) for key in ADDED_KEYS}
        why_not = limits_passed(added, replay)
        rates = [
            run["duet_chunks_relayed"] / run["duration"]
            for run in result.runs
            if run.get("duet_chunks_relayed") and run.get("duration")
        ]
        points.append(
            CapacityPoint(
                route=result.series.route,
                concurrency=result.point.concurrency or 0,
                added_ttft_ms=added["added_ttft_ms"],
                added_itl_ms=added["added_itl_ms"],
                added_e2el_ms=added["added_e2el_ms"],
                cpu_ms_per_chunk=result.medians.get("duet_cpu_ms_per_chunk"),
                mib_per_open_stream=result.medians.get("duet_mib_per_open_stream"),
                chunks_per_s=statistics.median(rates) if rates else None,
                straight_pace=straight_pace,
                straight_kept_pace=kept_pace,
                within=not why_not,
                why_not=why_not,
                **(machine or {}).get(result.point.label, {}),
            )
        )
    return points


def pace_kept(straight: PointResult, replay: ReplayOptions, chunks: int) -> float | None:
    """The straight streams' median time from first to last chunk over the schedule's."""
    e2el, ttft = (straight.medians.get(key) for key in ("median_e2el_ms", "median_ttft_ms"))
    if e2el is None or ttft is None or chunks < 2:
        return None
    return (e2el - ttft) / ((chunks - 1) * replay.interval_ms)


def limits_passed(added: dict[str, float | None], replay: ReplayOptions) -> tuple[str, ...]:
    """Which limits a point's added numbers pass (a number not measured passes them all)."""
    limits = {
        "added_ttft_ms": ("TTFT", replay.max_added_ttft_ms),
        "added_itl_ms": ("ITL", replay.itl_limit_ms),
        "added_e2el_ms": ("E2EL", replay.max_added_ttft_ms),
    }
    passed = []
    for key, (name, limit) in limits.items():
        value = added[key]
        if value is None:
            passed.append(f"{name} not measured")
        elif value > limit:
            passed.append(f"+{name} p50 {value:.1f} > {limit:g} ms")
    return tuple(passed)


def capacity(points: Sequence[CapacityPoint]) -> dict[str, dict[str, Any]]:
    """Per route: the largest concurrency up to which every point is within the limits (None
    when the first is not), the sweep's largest, and the first point past them."""
    out: dict[str, dict[str, Any]] = {}
    for route in dict.fromkeys(p.route for p in points):
        mine = [p for p in points if p.route == route]
        first_past = next((p for p in mine if not p.within), None)
        within = [p for p in mine if first_past is None or p.concurrency < first_past.concurrency]
        out[route] = {
            "largest_within": within[-1].concurrency if within else None,
            "sweep_largest": mine[-1].concurrency,
            "first_past": first_past.concurrency if first_past else None,
            "first_past_why": list(first_past.why_not) if first_past else [],
            "straight_fell_behind_at": [p.concurrency for p in mine if not p.straight_kept_pace],
        }
    return out


def verdict_lines(verdicts: dict[str, dict[str, Any]], replay: ReplayOptions) -> list[str]:
    limits = (
        f"added TTFT and E2EL p50 at most {replay.max_added_ttft_ms:g} ms, added ITL p50 at"
        f" most {replay.itl_limit_ms:g} ms"
    )
    lines = [f"Capacity ({limits}):"]
    for route, verdict in verdicts.items():
        largest = verdict["largest_within"]
        if largest is None:
            said = "past the limits already at the sweep's first point"
        elif verdict["first_past"] is None:
            said = f"within the limits up to {largest} streams, the sweep's largest"
        else:
            why = "; ".join(verdict["first_past_why"])
            said = f"within the limits up to {largest} streams; at {verdict['first_past']}: {why}"
        lines.append(f"  {route}: {said}")
        behind = verdict["straight_fell_behind_at"]
        if behind:
            lines.append(
                f"    straight to the source fell behind the pace at {behind}: there the"
                " client or the source set the limit, not Duet"
            )
    return lines


def format_capacity(
    points: Sequence[CapacityPoint], verdicts: dict[str, dict[str, Any]], replay: ReplayOptions
) -> str:
    heading = [
        "route", "streams", "+TTFT p50", "+ITL p50", "+E2EL p50", "chunks/s",
        "CPU ms/chunk", "MiB/stream", "straight pace", "idle", "others' cores", "within",
    ]  # fmt: skip
    rows = [heading]
    for p in points:
        rows.append(
            [
                p.route,
                str(p.concurrency),
                fmt(p.added_ttft_ms, "{:+.1f}"),
                fmt(p.added_itl_ms, "{:+.2f}"),
                fmt(p.added_e2el_ms, "{:+.1f}"),
                fmt(p.chunks_per_s, "{:.0f}"),
                fmt(p.cpu_ms_per_chunk, "{:.3f}"),
                fmt(p.mib_per_open_stream, "{:.3f}"),
                fmt(p.straight_pace, "{:.2f}x") + ("" if p.straight_kept_pace else " (behind)"),
                fmt(p.machine_idle_share, "{:.0%}"),
                fmt(p.other_cores, "{:.2f}"),
                "yes" if p.within else "no",
            ]
        )
    return "\n".join([*aligned(rows), "", *verdict_lines(verdicts, replay)])


def pace_words(replay: ReplayOptions) -> str:
    pace = replay.pace
    return (
        f"{pace.tokens_per_s:g} tokens/s per stream, first token after {pace.first_token_ms:g} ms"
    )


def capacity_figure(results: Sequence[PointResult], subtitle: str, replay: ReplayOptions) -> Figure:
    """What Duet adds (TTFT, ITL, E2EL p50) and its CPU per chunk against the streams open,
    a dotted line at each limit."""
    from duet.bench.load_plots import plot_metric, titled

    figure = Figure(figsize=(11, 8))
    panels = figure.subplots(2, 2).flatten()
    shown = (
        ("added_ttft_ms", "added TTFT p50 (ms)", "Duet's added time to first token",
         replay.max_added_ttft_ms),
        ("added_itl_ms", "added ITL p50 (ms)", "Duet's added inter-chunk gap",
         replay.itl_limit_ms),
        ("added_e2el_ms", "added E2EL p50 (ms)", "Duet's added time to the last chunk",
         replay.max_added_ttft_ms),
        ("duet_cpu_ms_per_chunk", "CPU ms per relayed chunk", "Duet's CPU per chunk", None),
    )  # fmt: skip
    duet = [r for r in results if r.series.path == "duet"]
    for axes, (key, ylabel, title, limit) in zip(panels, shown, strict=True):
        plot_metric(axes, duet, key, ylabel)
        axes.set_title(title, fontsize="medium")
        if limit is not None:
            axes.axhline(limit, color="grey", linestyle=":", label=f"limit {limit:g} ms")
            axes.legend(fontsize="small")
    return titled(figure, "Duet's own capacity", subtitle)


def replay_subtitle(config: dict[str, Any], replay: ReplayOptions) -> str:
    """The plots' subtitle: the source, its pace and its recorded answers' lengths (the
    workload's lengths, in the load bench's subtitle, do not apply), the date, the machine."""
    chunks = config["engines"]["replay source"]["text_chunks_per_stream"]
    lengths = ", ".join(f"{route} {count}" for route, count in chunks.items())
    return (
        f"{LABEL}\n{pace_words(replay)}; recorded answers of {lengths} chunks\n"
        f"{config['date']} · {config['machine']}"
    )


def run_bench_replay(options: LoadOptions, replay: ReplayOptions) -> int:
    """`duet bench load --replay`: start the replay source, run the sweep against it, print
    the load table and the capacity table, write the documents and the plots."""
    problem = check_options(options)
    if replay.pace.tokens_per_s <= 0 or replay.pace.first_token_ms < 0:
        problem = "--replay must be a positive pace, and --first-token-ms at least 0"
    if set(options.paths) != {"direct", "duet"}:
        problem = "--replay needs both paths: what Duet adds is measured against straight"
    if problem is not None:
        print(f"duet bench load: {problem}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    recordings = load_recordings(replay.recordings)
    labelled = replace(options, labels={**options.labels, **source_labels(replay, recordings)})
    workdir = Path(tempfile.mkdtemp(prefix="duet-replay-"))
    try:
        source, url = start_source(replay, workdir)
    except RuntimeError as error:
        print(f"duet bench load: {error}", file=sys.stderr)
        return 1
    machine = MachineWatch(options.points)
    labelled = replace(labelled, on_record=machine.request_ended)
    try:
        config, results = asyncio.run(
            measure_async(labelled, source_settings(url, recordings), machine.point_ended)
        )
    except (RuntimeError, FileNotFoundError) as error:
        print(f"duet bench load: {error}", file=sys.stderr)
        return 1
    finally:
        stop_processes([source])
    from duet.bench.load_plots import save_figure, write_plots

    add_duet_overhead(results, ADDED_PACING)
    chunks = {route: len(steps(recorded)) for route, recorded in recordings.streams.items()}
    points = capacity_points(results, replay, chunks, machine.by_point)
    verdicts = capacity(points)
    print(f"{LABEL} ({pace_words(replay)})")
    print(format_table(results))
    print()
    print(format_capacity(points, verdicts, replay))
    config = {**config, "capacity": verdicts, "capacity_points": [asdict(p) for p in points]}
    summary, raw = write_documents(options.out, config, results)
    subtitle = replay_subtitle(config, replay)
    plots = write_plots(results, subtitle, options.out)
    plots += save_figure(capacity_figure(results, subtitle, replay), options.out, "capacity")
    print(f"results: {summary}; every request: {raw}", file=sys.stderr)
    print(f"plots: {', '.join(path.name for path in plots)} in {options.out}", file=sys.stderr)
    return 0
