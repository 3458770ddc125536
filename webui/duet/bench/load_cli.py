"""The options of `duet bench load`, kept apart from the benchmark so that `duet --help` does
not import it (the benchmark pulls in matplotlib, tokenizers and psutil)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "both engines under load, straight and through Duet: a table, JSON and plots"
PATHS = ("direct", "duet")


def comma_list(kind: type, choices: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    def parse(text: str) -> list:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        unknown = [v for v in values if choices is not None and v not in choices]
        if unknown or not values:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give a comma-separated list"
                + (f" of {', '.join(choices)}" if choices else "")
            )
        return values

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--routes",
        type=comma_list(str),
        help="engine routes, comma-separated, of those duet.engines.routes names (default:"
        " every configured route)",
    )
    add(
        "--paths",
        type=comma_list(str, PATHS),
        default=list(PATHS),
        help="direct (straight to the engine) and/or duet (through duet serve); default both",
    )
    add(
        "--concurrency",
        type=comma_list(int),
        default=[1, 2, 4, 8],
        help="the concurrency sweep (default 1,2,4,8)",
    )
    add(
        "--rate",
        type=comma_list(float),
        default=[],
        help="request rates (req/s) to sweep instead of concurrencies",
    )
    add(
        "--burstiness",
        type=float,
        default=1.0,
        help="with --rate: the gamma shape of arrival gaps (1 = Poisson, <1 burstier)",
    )
    add("--max-concurrency", type=int, help="with --rate: at most this many requests in flight")
    add(
        "--workload",
        choices=("random", "chat"),
        default="random",
        help="random prompts of --input-len tokens, or the bundled multi-turn chats",
    )
    add("--input-len", type=int, default=128, help="random prompts: tokens each (default 128)")
    add("--output-len", type=int, default=64, help="output tokens per request, at most (64)")
    add(
        "--fixed-output",
        action="store_true",
        help="exactly --output-len tokens where the engine allows (vLLM ignore_eos); "
        "needs --paths direct",
    )
    add("--thinking", action="store_true", help="thinking on (default off)")
    add(
        "-n",
        "--requests",
        type=int,
        help="requests per run (default: 4 x concurrency, at least 8; a rate: 30 s of arrivals)",
    )
    add("--repeats", type=int, default=3, help="runs per point and series (default 3)")
    add("--warmup", type=int, default=2, help="warm-up requests per series (default 2)")
    add("--point-seconds", type=float, default=300.0, help="time limit per run (default 300)")
    add("--request-timeout", type=float, default=300.0, help="per request (default 300 s)")
    add(
        "--saturation-growth",
        type=float,
        default=4.0,
        help="stop a run when its TTFT median grows this many times (default 4)",
    )
    add(
        "--goodput",
        nargs="+",
        default=[],
        metavar="METRIC:MS",
        help="SLOs for goodput, e.g. ttft:500 tpot:50 (ttft, tpot, e2el)",
    )
    add("--seed", type=int, default=0, help="prompts and arrivals (default 0)")
    add("--tokenizer", help="a tokenizer.json or model folder (default: the tiny model's)")
    add(
        "--out",
        type=Path,
        help="folder for load.json, requests.jsonl and the plots (default ./duet-load-DATE)",
    )
    add("--no-progress", action="store_true", help="no progress bars")
    add(
        "--no-probe",
        action="store_true",
        help="no extra interactive request during each run (to compare with vllm bench serve)",
    )
    add(
        "--replay",
        type=float,
        metavar="TOKENS_PER_S",
        help="drive Duet from the replay source (recorded engine output at this pace per"
        " stream) instead of the engines: Duet's own capacity; measures Duet, not an engine",
    )
    add("--first-token-ms", type=float, default=20.0, help="with --replay (default 20)")
    add(
        "--max-added-ttft-ms",
        type=float,
        default=25.0,
        help="with --replay: the capacity's limit on Duet's added TTFT p50 (default 25)",
    )
    add(
        "--max-added-itl-ms",
        type=float,
        help="with --replay: its limit on added ITL and TPOT p50 (default a tenth of the pace's"
        " interval)",
    )
    add("--recordings", type=Path, help="with --replay: recordings (default: Duet's own)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from duet.bench.load import LoadOptions, parse_points, run_bench_load
    from duet.bench.load_metrics import parse_slos
    from duet.bench.load_run import Limits
    from duet.bench.load_workload import Workload
    from duet.engines.routes import ROUTE_NAMES, build_engines
    from duet.settings import Settings

    try:
        slos = parse_slos(args.goodput)
    except ValueError as error:
        print(f"duet bench load: --goodput: {error}", file=sys.stderr)
        return 2
    unknown = [route for route in args.routes or () if route not in ROUTE_NAMES]
    if unknown:
        print(f"duet bench load: --routes: choose from {', '.join(ROUTE_NAMES)}", file=sys.stderr)
        return 2
    options = LoadOptions(
        routes=tuple(args.routes or build_engines(Settings.from_env())),
        paths=tuple(args.paths),
        points=parse_points(args.concurrency, args.rate, args.burstiness, args.max_concurrency),
        workload=Workload(
            args.workload, args.input_len, args.output_len, args.thinking, args.fixed_output
        ),
        out=args.out or Path(time.strftime("duet-load-%Y%m%d-%H%M%S")),
        requests=args.requests,
        repeats=args.repeats,
        warmup=args.warmup,
        limits=Limits(args.point_seconds, args.request_timeout, args.saturation_growth),
        slos_ms=slos,
        seed=args.seed,
        tokenizer=args.tokenizer,
        progress=not args.no_progress,
        probe=not args.no_probe,
        command="duet " + " ".join(sys.argv[1:]),
    )
    if args.replay is not None:
        from duet.bench.load_replay import ReplayOptions, run_bench_replay
        from duet.bench.replay_source import Pace

        replay = ReplayOptions(
            Pace(args.replay, args.first_token_ms),
            args.max_added_ttft_ms,
            args.max_added_itl_ms,
            args.recordings,
        )
        return run_bench_replay(options, replay)
    return run_bench_load(options)
