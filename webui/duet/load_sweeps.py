"""Load sweeps started from the Load page: one at a time, in this server's process.

A sweep is `duet bench load`'s own (`duet.bench.load.measure_async`), run as a background
task on the server's event loop against the engines this Duet is configured with: the same
series, metrics, repeats, early stops and plots as the command, nothing measured a second
way. Its path "through Duet" goes through a Duet the benchmark starts for itself (local mode,
its own database), not through this one, so no sweep request counts against anyone's limits
or fills anyone's history.

Its requests share the engines with everyone chatting, and its client shares this process's
event loop with their streams: both are what a person running a sweep on a team box must
know, and the page says so.

Each point is stored as it ends (`duet.store.load_runs`), so a sweep that is stopped keeps
what it measured; the requests and the charts (drawn once, at the end, in a worker thread:
matplotlib is slow to import and to draw) are stored when it ends. The benchmark's packages
(the `bench` extra) are imported only when a sweep starts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duet.settings import Settings
from duet.store import load_runs
from duet.tasks import describe_exception, start_task

if TYPE_CHECKING:
    from duet.bench.load import LoadOptions
    from duet.bench.load_metrics import RequestRecord
    from duet.bench.load_report import PointResult

log = logging.getLogger(__name__)

PATHS = ("direct", "duet")
CHARTS = ("ttft", "tpot", "throughput", "per_user")
# What `duet bench load` needs beyond the web UI's own dependencies (the `bench` extra).
BENCH_MODULES = ("matplotlib", "tokenizers", "psutil", "tqdm")
# One warm-up request per series (the command's default is two): a page's sweep is small.
WARMUP_REQUESTS = 1
# How long shutdown waits for a stopped sweep to record what it measured.
SHUTDOWN_WAIT_SECONDS = 20.0
# The last phase: every request has ended, and the charts are being drawn.
DRAWING = "drawing the charts"

Measure = Callable[
    ["LoadOptions", Settings, Callable[[dict[str, Any], list["PointResult"]], None]],
    Awaitable[tuple[dict[str, Any], list["PointResult"]]],
]


@dataclass(frozen=True, slots=True)
class SweepRequest:
    """What the Load page's form asks for (checked by the view)."""

    routes: tuple[str, ...]
    paths: tuple[str, ...]
    concurrency: tuple[int, ...]
    input_len: int
    output_len: int
    requests: int  # per run: one series at one point, one repeat
    repeats: int
    thinking: bool

    @property
    def total_requests(self) -> int:
        """Requests the sweep sends at most (warm-up and probes aside)."""
        runs = len(self.routes) * len(self.paths) * len(self.concurrency) * self.repeats
        return runs * self.requests

    def options(self, out: Path, on_record: Callable[[str, RequestRecord], None]) -> LoadOptions:
        from duet.bench.load import LoadOptions, parse_points
        from duet.bench.load_workload import Workload

        return LoadOptions(
            routes=self.routes,  # type: ignore[arg-type]
            paths=self.paths,  # type: ignore[arg-type]
            points=parse_points(self.concurrency, (), 1.0, None),
            workload=Workload("random", self.input_len, self.output_len, self.thinking),
            out=out,
            requests=self.requests,
            repeats=self.repeats,
            warmup=WARMUP_REQUESTS,
            progress=False,
            command="the Load page",
            on_record=on_record,
        )


@dataclass
class Progress:
    """A running sweep, as its page shows it."""

    load_id: int
    total: int
    done: int = 0
    failed: int = 0
    current: str = ""  # the run in flight: "vllm direct · concurrency 2 · 1/1"
    phase: str = "preparing"
    started: float = field(default_factory=time.monotonic)

    def record(self, title: str, record: RequestRecord) -> None:
        self.phase = "running"
        self.current = title
        self.done += 1
        self.failed += not record.success

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.done / self.total)) if self.total else 0


class SweepBusy(Exception):
    """A sweep is running already: `load_id` is the running one's."""

    def __init__(self, load_id: int) -> None:
        super().__init__(f"load run {load_id} is running")
        self.load_id = load_id


class SweepUnavailable(Exception):
    """This installation cannot run a sweep; the message says what to install."""


def missing_modules() -> list[str]:
    return [name for name in BENCH_MODULES if importlib.util.find_spec(name) is None]


def unavailable_reason() -> str | None:
    missing = missing_modules()
    if not missing:
        return None
    return (
        f"Load sweeps need the benchmark's packages ({', '.join(missing)} missing): install"
        " Duet with its bench extra (pip install 'duet[bench]') and restart it."
    )


def draw_charts(results: list[PointResult], subtitle: str, folder: Path) -> dict[str, str]:
    """Every chart of `duet bench load` as SVG text, by name (as `write_plots` writes it)."""
    from duet.bench.load_plots import write_plots

    written = write_plots(results, subtitle, folder)
    return {path.stem: path.read_text("utf-8") for path in written if path.suffix == ".svg"}


async def measure(
    options: LoadOptions,
    settings: Settings,
    on_point: Callable[[dict[str, Any], list[PointResult]], None],
) -> tuple[dict[str, Any], list[PointResult]]:
    from duet.bench.load import measure_async

    return await measure_async(options, settings, on_point)


class LoadSweeps:
    """The server's sweeps: at most one running; `measure` is the benchmark (tests give
    their own)."""

    def __init__(self, db: sqlite3.Connection, settings: Settings, run: Measure = measure):
        self.db = db
        self.settings = settings
        self.measure = run
        self.current: Progress | None = None
        self.task: asyncio.Task[None] | None = None
        self.closing = False

    def running(self) -> Progress | None:
        return self.current if self.task is not None and not self.task.done() else None

    def progress(self, load_id: int) -> Progress | None:
        current = self.running()
        return current if current is not None and current.load_id == load_id else None

    def start(self, started_by: int, request: SweepRequest) -> int:
        """Store the run and start its sweep; its id. SweepBusy while another one runs,
        SweepUnavailable without the benchmark's packages."""
        current = self.running()
        if current is not None:
            raise SweepBusy(current.load_id)
        reason = unavailable_reason()
        if reason is not None:
            raise SweepUnavailable(reason)
        run = load_runs.create_load_run(self.db, started_by, asdict(request))
        self.current = Progress(run.id, request.total_requests)
        self.task = start_task(self._sweep(run.id, request, self.current), f"load run {run.id}")
        return run.id

    def stop(self, load_id: int) -> bool:
        """Stop the running sweep if it is this one and still measuring; whether it was."""
        current = self.progress(load_id)
        if current is None or current.phase == DRAWING or self.task is None:
            return False
        self.task.cancel()
        return True

    async def shutdown(self) -> None:
        """Stop a running sweep and let it record what it measured (as interrupted)."""
        self.closing = True
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=SHUTDOWN_WAIT_SECONDS)

    async def _sweep(self, load_id: int, request: SweepRequest, progress: Progress) -> None:
        from duet.bench.load import plot_subtitle
        from duet.bench.load_report import point_document, record_lines

        folder = Path(tempfile.mkdtemp(prefix="duet-load-page-"))
        config: dict[str, Any] | None = None
        results: list[PointResult] = []

        def keep(so_far_config: dict[str, Any], so_far: list[PointResult]) -> None:
            nonlocal config, results
            config, results = so_far_config, list(so_far)
            documents = [point_document(result) for result in results]
            load_runs.save_points(self.db, load_id, {**config, "complete": False}, documents)

        status: load_runs.LoadStatus = "complete"
        error = None
        try:
            config, results = await self.measure(
                request.options(folder, progress.record), self.settings, keep
            )
        except asyncio.CancelledError:
            status = "interrupted" if self.closing else "stopped"
            error = (
                "The server stopped during this sweep."
                if self.closing
                else "Stopped from the Load page."
            )
        except Exception as failure:
            log.exception("load run %s failed", load_id)
            status, error = "failed", describe_exception(failure)
        charts: dict[str, str] = {}
        try:
            if config is not None and results:
                documents = [point_document(result) for result in results]
                done = {**config, "complete": status == "complete"}
                load_runs.save_points(self.db, load_id, done, documents)
                if not self.closing:
                    progress.phase = DRAWING
                    charts = await asyncio.to_thread(
                        draw_charts, results, plot_subtitle(config), folder / "charts"
                    )
        except Exception as failure:
            log.exception("load run %s: its charts", load_id)
            error = (error + " " if error else "") + f"No charts: {describe_exception(failure)}"
        finally:
            records = [line for r in results for o in r.outcomes for line in record_lines(o)]
            load_runs.finish_load_run(self.db, load_id, status, error, records, charts)
            shutil.rmtree(folder, ignore_errors=True)
