"""One engine's run summed up: every number `duet bench relay` prints and keeps, and the
verdicts against the targets.

Each number is declared once, in `ROWS`: its key in the summary (the JSON kept beside
docs/benchmarks/relay.md), its label in the printed table, how it is computed from the engine's
requests and how it is printed. Percentiles are taken over requests (TTFT, the added TTFT and
its parts: one value per request) or over the gaps of every request pooled (ITL). Each path
through Duet has the same rows (`duet_rows`): Duet in local mode under the keys runs have always
had, and, in a run with accounts on, Duet in accounts mode with a signed-in session under the
same keys prefixed `signed_in_`; a run has only the rows of the paths it measured.

The targets (issue 10) hold Duet against the reference relay measured in the same run, which is
what a Python relay on Duet's server stack can do on that machine at that moment: Duet's added
TTFT p50 at most the reference relay's p50 plus `ADDED_P50_OVER_REFERENCE_MS`, its p95 at most
`ADDED_P95_MAX_MS`, the same chunk count as the direct request in every pair, and the ITL p50
through Duet within `ITL_P50_RATIO_TOLERANCE` of the direct one. Each path through Duet is
held to them on its own.

The layers in front of Duet or of an engine (`LAYERS`: nginx as shipped and buffering in front
of Duet's web UI path, Open WebUI in front of Ollama) are not held to Duet's targets; their rows
say what each adds over the path beneath it (TTFT, chunks, ITL), and `layer_checks` judges
whether it passes the chunks on apart. Through nginx, Duet's own stamps reach this client, so
each request is judged as Duet judges a hop (`duet.metrics.stream.compare_hops`, from Duet's
writes to this client): a proxy that buffers merges every stream, a stall of the machine one
stretch of one, so the layer merges chunks when most of its requests came merged. Open WebUI
gives no stamps: its chunk counts and ITL are held against the direct requests of the same
rounds. In both, ITL falling to under `ITL_FALL_RATIO` of the path beneath is the tell of a
layer that holds chunks and lets them go together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from duet.bench.measured import EngineResult, Measured, PathName, added_ttft_ms
from duet.metrics.stream import percentile

ADDED_P50_OVER_REFERENCE_MS = 1.0
ADDED_P95_MAX_MS = 10.0
ITL_P50_RATIO_TOLERANCE = 0.05
# A layer's ITL p50 under this share of the path's beneath it: chunks held and let go together
# (a buffering proxy takes it near zero; a machine's noise does not halve a median).
ITL_FALL_RATIO = 0.5

# One engine's summary: "engine", then one entry per row of `ROWS`.
Summary = dict[str, Any]
# One number of the summary (or a list of numbers, a yes/no; None: nothing was measured).
Computed = Callable[[EngineResult], Any]
Values = Callable[[EngineResult], list[float]]
Quantity = Callable[[Measured], float | None]


def per_request(path: PathName, quantity: Quantity, clear_of_stalls: bool = False) -> Values:
    """The quantity of each of the path's requests that has it; with `clear_of_stalls`, only of
    the requests no machine stall touched."""

    def values(result: EngineResult) -> list[float]:
        measured = result.requests_on(path)
        if clear_of_stalls:
            measured = [m for m in measured if not m.stalled_ms]
        return [value for value in map(quantity, measured) if value is not None]

    return values


def pooled_gaps(path: PathName, gaps: Callable[[Measured], Sequence[float]]) -> Values:
    def values(result: EngineResult) -> list[float]:
        return [gap for measured in result.requests_on(path) for gap in gaps(measured)]

    return values


def pct(q: float, values: Values) -> Computed:
    def computed(result: EngineResult) -> float | None:
        found = values(result)
        return round(percentile(found, q), 3) if found else None

    return computed


def p50(values: Values) -> Computed:
    return pct(50, values)


def p95(values: Values) -> Computed:
    return pct(95, values)


def largest(values: Values) -> Computed:
    def computed(result: EngineResult) -> float | None:
        found = values(result)
        return round(max(found), 3) if found else None

    return computed


def difference(minuend: Computed, subtrahend: Computed) -> Computed:
    def computed(result: EngineResult) -> float | None:
        a, b = minuend(result), subtrahend(result)
        return None if a is None or b is None else round(a - b, 3)

    return computed


def ratio(numerator: Computed, denominator: Computed) -> Computed:
    def computed(result: EngineResult) -> float | None:
        a, b = numerator(result), denominator(result)
        return None if a is None or not b else round(a / b, 4)

    return computed


def request_in_ms(measured: Measured) -> float | None:
    """From this client's request on the wire to the relay receiving it: the time to reach the
    relay less this client's own pre-wire time, as for the added TTFT."""
    if measured.request_in_ms is None or measured.pre_wire_ms is None:
        return None
    return measured.request_in_ms - measured.pre_wire_ms


def paired(result: EngineResult, path: PathName) -> list[tuple[Measured, Measured]]:
    """Each direct request with the request on `path` of the same round."""
    return list(zip(result.direct, result.requests_on(path), strict=False))


def pairs(result: EngineResult) -> int:
    return len(paired(result, "duet"))


def stalled_requests(result: EngineResult) -> list[int]:
    return [sum(1 for m in result.requests_on(path) if m.stalled_ms) for path in result.paths]


def merged_requests(path: PathName) -> Computed:
    """How many of the path's requests came merged (Duet's verdict on the hop from its writes
    to this client); None where the path carries no write stamps."""

    def computed(result: EngineResult) -> int | None:
        verdicts = [m.merged for m in result.requests_on(path) if m.merged is not None]
        return sum(verdicts) if verdicts else None

    return computed


def chunk_counts(path: PathName) -> Computed:
    return lambda result: sorted({m.chunks for m in result.requests_on(path)})


def chunk_counts_differing(path: PathName) -> Computed:
    def computed(result: EngineResult) -> int:
        return sum(1 for direct, other in paired(result, path) if direct.chunks != other.chunks)

    return computed


def chunk_counts_identical(path: PathName) -> Computed:
    def computed(result: EngineResult) -> bool:
        return bool(paired(result, path)) and chunk_counts_differing(path)(result) == 0

    return computed


def shown_ms(value: float) -> str:
    return f"{value:.2f}"


def shown_ratio(value: float) -> str:
    return f"{value:.3f}"


def shown_list(values: Sequence[Any]) -> str:
    return ",".join(str(value) for value in values)


def shown_yes_no(value: bool) -> str:
    return "yes" if value else "NO"


@dataclass(frozen=True, slots=True)
class Row:
    """One number of the summary: its key, its label in the table, how it is computed, and
    the path it is about when only some runs have it (None: every run's)."""

    key: str
    label: str
    value: Computed
    shown: Callable[[Any], str] = shown_ms
    path: PathName | None = None

    def cell(self, value: Any) -> str:
        return "n/a" if value is None else self.shown(value)


@dataclass(frozen=True, slots=True)
class DuetPath:
    """A path through Duet as the summary names it: its requests, the prefix of its keys, what
    its labels add, and its name in the verdicts."""

    path: PathName
    key_prefix: str
    label_suffix: str
    name: str

    def key(self, key: str) -> str:
        return self.key_prefix + key


# Duet as it serves one private user (its keys are those of runs before accounts existed),
# the same Duet's /v1 for a team's tools, and Duet in accounts mode with a signed-in session on
# every request (`--accounts`).
LOCAL = DuetPath("duet", "", "", "Duet")
API = DuetPath("api", "api_", ", /v1", "Duet's /v1")
SIGNED_IN = DuetPath("signed_in", "signed_in_", ", signed in", "Duet signed in")
DUET_PATHS = (LOCAL, API, SIGNED_IN)

TTFT = attrgetter("ttft_ms")
WRITTEN_ITL = attrgetter("written_itl_ms")
COLLAPSED = attrgetter("collapsed_share")
WRITTEN_COLLAPSED = attrgetter("written_collapsed_share")
PRE_WIRE = attrgetter("pre_wire_ms")
BEFORE_ENGINE = attrgetter("before_engine_ms")
FIRST_CHUNK_HELD = attrgetter("first_chunk_held_ms")
FIRST_CHUNK_OUT = attrgetter("first_chunk_out_ms")
ITL = attrgetter("itl_ms")
SERVER_ITL = attrgetter("server_itl_ms")

REFERENCE_ADDED = per_request("reference", added_ttft_ms)
REFERENCE_ADDED_CLEAR = per_request("reference", added_ttft_ms, clear_of_stalls=True)
ITL_P50_DIRECT = p50(pooled_gaps("direct", ITL))
RATIO_RANGE = f"{1 - ITL_P50_RATIO_TOLERANCE:.2f}-{1 + ITL_P50_RATIO_TOLERANCE:.2f}"


def duet_rows(duet: DuetPath) -> tuple[Row, ...]:
    """Every number of one path through Duet, the same for each."""
    path, suffix = duet.path, duet.label_suffix
    added = per_request(path, added_ttft_ms)
    added_clear = per_request(path, added_ttft_ms, clear_of_stalls=True)
    ttft_p50 = p50(per_request(path, TTFT))
    itl_p50 = p50(pooled_gaps(path, ITL))
    server_itl_p50 = p50(pooled_gaps(path, SERVER_ITL))

    def row(key: str, label: str, value: Computed, shown: Callable[[Any], str] = shown_ms) -> Row:
        return Row(duet.key(key), label, value, shown, path)

    return (
        row("duet_ttft_p50_ms", f"TTFT p50 through Duet{suffix} (ms)", ttft_p50),
        row(
            "duet_ttft_p95_ms",
            f"TTFT p95 through Duet{suffix} (ms)",
            p95(per_request(path, TTFT)),
        ),
        row(
            "unpaired_difference_p50_ms",
            f"TTFT p50 through Duet{suffix} - direct (ms)",
            difference(ttft_p50, p50(per_request("direct", TTFT))),
        ),
        row(
            "added_ttft_p50_ms",
            f"added TTFT p50{suffix} (ms) [<= ref + {ADDED_P50_OVER_REFERENCE_MS:.1f}]",
            p50(added),
        ),
        row(
            "added_ttft_p95_ms",
            f"added TTFT p95{suffix} (ms) [<= {ADDED_P95_MAX_MS:g}]",
            p95(added),
        ),
        row("added_ttft_max_ms", f"added TTFT max{suffix} (ms)", largest(added)),
        row(
            "added_ttft_p50_clear_ms",
            f"  added TTFT p50{suffix}, requests clear of stalls",
            p50(added_clear),
        ),
        row(
            "added_ttft_p95_clear_ms",
            f"  added TTFT p95{suffix}, requests clear of stalls",
            p95(added_clear),
        ),
        row(
            "request_in_p50_ms",
            f"  client -> Duet, request in p50{suffix}",
            p50(per_request(path, request_in_ms)),
        ),
        row(
            "before_engine_p50_ms",
            f"  Duet receipt to engine wire p50{suffix}",
            p50(per_request(path, BEFORE_ENGINE)),
        ),
        row(
            "before_engine_p95_ms",
            f"  Duet receipt to engine wire p95{suffix}",
            p95(per_request(path, BEFORE_ENGINE)),
        ),
        row(
            "first_chunk_held_p50_ms",
            f"  first chunk held in Duet p50{suffix}",
            p50(per_request(path, FIRST_CHUNK_HELD)),
        ),
        row(
            "first_chunk_held_p95_ms",
            f"  first chunk held in Duet p95{suffix}",
            p95(per_request(path, FIRST_CHUNK_HELD)),
        ),
        row(
            "first_chunk_out_p50_ms",
            f"  Duet -> client, first chunk out p50{suffix}",
            p50(per_request(path, FIRST_CHUNK_OUT)),
        ),
        row(
            "duet_client_pre_wire_p50_ms",
            f"client's own pre-wire p50, to Duet{suffix}",
            p50(per_request(path, PRE_WIRE)),
        ),
        row(
            "duet_beyond_reference_p50_ms",
            f"Duet added beyond the reference p50{suffix}",
            difference(p50(added), p50(REFERENCE_ADDED)),
        ),
        row("duet_chunks", f"chunks through Duet{suffix}", chunk_counts(path), shown_list),
        row(
            "chunk_counts_differing",
            f"pairs whose chunk counts differ{suffix}",
            chunk_counts_differing(path),
            str,
        ),
        row(
            "chunk_counts_identical",
            f"chunk counts identical{suffix}",
            chunk_counts_identical(path),
            shown_yes_no,
        ),
        row("duet_itl_p50_ms", f"ITL p50 through Duet{suffix} (ms)", itl_p50),
        row(
            "duet_itl_p95_ms",
            f"ITL p95 through Duet{suffix} (ms)",
            p95(pooled_gaps(path, ITL)),
        ),
        row(
            "itl_p50_ratio",
            f"ITL p50 ratio{suffix} [{RATIO_RANGE}]",
            ratio(itl_p50, ITL_P50_DIRECT),
            shown_ratio,
        ),
        row(
            "duet_server_itl_p50_ms",
            f"  ITL p50 engine -> Duet's server{suffix} (ms)",
            server_itl_p50,
        ),
        # The same requests on both sides of Duet: what the relay itself does to the gaps,
        # apart from the engine running at another speed while Duet shares its cores.
        row(
            "itl_p50_ratio_across_duet",
            f"  ITL p50 ratio, client side / server side of Duet{suffix}",
            ratio(itl_p50, server_itl_p50),
            shown_ratio,
        ),
        # From Duet's writes to this client: what the hop out of Duet does (its web UI path
        # carries the write stamps; its /v1 does not, n/a there).
        row(
            "itl_p50_ratio_client_to_writes",
            f"  ITL p50 ratio, client / Duet's writes{suffix}",
            ratio(itl_p50, p50(pooled_gaps(path, WRITTEN_ITL))),
            shown_ratio,
        ),
        row(
            "merged_requests",
            f"  requests whose chunks came merged{suffix}",
            merged_requests(path),
            str,
        ),
    )


ROWS: tuple[Row, ...] = (
    Row("requests", "requests per path", pairs, str),
    Row(
        "stalled_requests",
        "requests in a machine stall, per path of the run",
        stalled_requests,
        shown_list,
    ),
    Row("direct_ttft_p50_ms", "TTFT p50 direct (ms)", p50(per_request("direct", TTFT))),
    Row("direct_ttft_p95_ms", "TTFT p95 direct (ms)", p95(per_request("direct", TTFT))),
    Row(
        "client_pre_wire_p50_ms",
        "client's own pre-wire p50, direct",
        p50(per_request("direct", PRE_WIRE)),
    ),
    Row("direct_chunks", "chunks direct", chunk_counts("direct"), shown_list),
    Row("direct_itl_p50_ms", "ITL p50 direct (ms)", ITL_P50_DIRECT),
    Row("direct_itl_p95_ms", "ITL p95 direct (ms)", p95(pooled_gaps("direct", ITL))),
    Row("reference_added_ttft_p50_ms", "reference relay added TTFT p50", p50(REFERENCE_ADDED)),
    Row("reference_added_ttft_p95_ms", "reference relay added TTFT p95", p95(REFERENCE_ADDED)),
    Row(
        "reference_added_ttft_p50_clear_ms",
        "  reference p50, requests clear of stalls",
        p50(REFERENCE_ADDED_CLEAR),
    ),
    Row(
        "reference_added_ttft_p95_clear_ms",
        "  reference p95, requests clear of stalls",
        p95(REFERENCE_ADDED_CLEAR),
    ),
    Row(
        "reference_request_in_p50_ms",
        "  client -> reference, request in p50",
        p50(per_request("reference", request_in_ms)),
    ),
    Row(
        "reference_before_engine_p50_ms",
        "  reference receipt to engine wire p50",
        p50(per_request("reference", BEFORE_ENGINE)),
    ),
    Row(
        "reference_first_chunk_out_p50_ms",
        "  reference -> client, first chunk out p50",
        p50(per_request("reference", FIRST_CHUNK_OUT)),
    ),
    Row(
        "reference_client_pre_wire_p50_ms",
        "client's own pre-wire p50, to the reference",
        p50(per_request("reference", PRE_WIRE)),
    ),
    Row(
        "reference_chunks",
        "chunks through the reference relay",
        chunk_counts("reference"),
        shown_list,
    ),
    Row(
        "reference_itl_p50_ms",
        "ITL p50 through the reference relay (ms)",
        p50(pooled_gaps("reference", ITL)),
    ),
    *duet_rows(LOCAL),
    *duet_rows(API),
    *duet_rows(SIGNED_IN),
    # What the accounts add: the two Duets' added TTFT, measured in the same rounds.
    Row(
        "signed_in_over_local_added_ttft_p50_ms",
        "added TTFT p50, signed in - local (ms)",
        difference(
            p50(per_request("signed_in", added_ttft_ms)), p50(per_request("duet", added_ttft_ms))
        ),
        path="signed_in",
    ),
)


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer in front of Duet or of an engine: its path, the path beneath it (what it is
    measured against), the prefix of its keys, its name, and whether Duet's stamps reach
    through it (its requests go to Duet's web UI path)."""

    path: PathName
    beneath: PathName
    key_prefix: str
    name: str
    stamped: bool

    def key(self, key: str) -> str:
        return self.key_prefix + key


NGINX_LAYER = Layer("nginx", "duet", "nginx_", "nginx (shipped site)", stamped=True)
NGINX_BUFFERING_LAYER = Layer(
    "nginx_buffering", "duet", "nginx_buffering_", "nginx (buffering)", stamped=True
)
OPEN_WEBUI_LAYER = Layer("open_webui", "direct", "open_webui_", "Open WebUI", stamped=False)
LAYERS = (NGINX_LAYER, NGINX_BUFFERING_LAYER, OPEN_WEBUI_LAYER)
BENEATH_NAMES: dict[PathName, str] = {"duet": "Duet", "direct": "direct"}


def layer_rows(layer: Layer) -> tuple[Row, ...]:
    """Every number of one layer: what it adds over the path beneath it."""
    path, name, beneath = layer.path, layer.name, layer.beneath
    under = BENEATH_NAMES[beneath]
    ttft_p50 = p50(per_request(path, TTFT))
    itl_p50 = p50(pooled_gaps(path, ITL))

    def row(key: str, label: str, value: Computed, shown: Callable[[Any], str] = shown_ms) -> Row:
        return Row(layer.key(key), label, value, shown, path)

    rows = [
        row("ttft_p50_ms", f"TTFT p50 through {name} (ms)", ttft_p50),
        row("ttft_p95_ms", f"TTFT p95 through {name} (ms)", p95(per_request(path, TTFT))),
        row(
            "ttft_p50_over_beneath_ms",
            f"  TTFT p50 through {name} - {under} (ms)",
            difference(ttft_p50, p50(per_request(beneath, TTFT))),
        ),
    ]
    if layer.stamped:
        added = per_request(path, added_ttft_ms)
        rows += [
            row("added_ttft_p50_ms", f"  added TTFT p50 through {name} (ms)", p50(added)),
            row("added_ttft_p95_ms", f"  added TTFT p95 through {name} (ms)", p95(added)),
            row(
                "added_over_beneath_p50_ms",
                f"  {name} adds to the added TTFT p50 (ms)",
                difference(p50(added), p50(per_request(beneath, added_ttft_ms))),
            ),
            row(
                "request_in_p50_ms",
                f"  client -> Duet through {name}, request in p50",
                p50(per_request(path, request_in_ms)),
            ),
            # Duet's own part, beside the layer's: on a busy machine it moves most.
            row(
                "before_engine_p50_ms",
                f"  Duet receipt to engine wire p50, {name}",
                p50(per_request(path, BEFORE_ENGINE)),
            ),
            row(
                "first_chunk_out_p50_ms",
                f"  Duet -> client through {name}, first chunk out p50",
                p50(per_request(path, FIRST_CHUNK_OUT)),
            ),
        ]
    rows += [
        row("chunks", f"chunks through {name}", chunk_counts(path), shown_list),
        row(
            "chunk_counts_differing",
            f"  pairs whose chunk counts differ from direct, {name}",
            chunk_counts_differing(path),
            str,
        ),
        row("itl_p50_ms", f"ITL p50 through {name} (ms)", itl_p50),
        row(
            "itl_p50_ratio_to_beneath",
            f"  ITL p50 ratio, {name} / {under}",
            ratio(itl_p50, p50(pooled_gaps(beneath, ITL))),
            shown_ratio,
        ),
    ]
    if layer.stamped:
        rows += [
            row(
                "itl_p50_ratio_client_to_writes",
                f"  ITL p50 ratio, client / Duet's writes, {name}",
                ratio(itl_p50, p50(pooled_gaps(path, WRITTEN_ITL))),
                shown_ratio,
            ),
            row(
                "collapsed_share_p50",
                f"  share of gaps collapsed p50, {name}",
                p50(per_request(path, COLLAPSED)),
                shown_ratio,
            ),
            row(
                "written_collapsed_share_p50",
                f"  share collapsed at Duet's writes p50, {name}",
                p50(per_request(path, WRITTEN_COLLAPSED)),
                shown_ratio,
            ),
            row(
                "merged_requests",
                f"  requests whose chunks came merged, {name}",
                merged_requests(path),
                str,
            ),
        ]
    return tuple(rows)


LAYER_ROWS: tuple[Row, ...] = tuple(row for layer in LAYERS for row in layer_rows(layer))


def rows_of(paths: Sequence[PathName]) -> tuple[Row, ...]:
    """The rows of a run on these paths."""
    return tuple(row for row in (*ROWS, *LAYER_ROWS) if row.path is None or row.path in paths)


def duet_paths_of(paths: Sequence[PathName]) -> tuple[DuetPath, ...]:
    return tuple(duet for duet in DUET_PATHS if duet.path in paths)


def layers_of(paths: Sequence[PathName]) -> tuple[Layer, ...]:
    return tuple(layer for layer in LAYERS if layer.path in paths)


def summarize(result: EngineResult) -> Summary:
    rows = rows_of(result.paths)
    return {"engine": result.engine, **{row.key: row.value(result) for row in rows}}


def format_table(summaries: Sequence[Summary]) -> str:
    """The table of every engine's summary (a path only some engines went, such as Open WebUI
    in front of Ollama, shows n/a for the others)."""
    rows = [row for row in (*ROWS, *LAYER_ROWS) if any(row.key in s for s in summaries)]
    label_width = max(len(row.label) for row in rows)
    header = "".ljust(label_width) + "".join(f"{s['engine']:>16}" for s in summaries)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(f"{row.cell(summary.get(row.key)):>16}" for summary in summaries)
        lines.append(row.label.ljust(label_width) + cells)
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Check:
    """One target: what was measured, what the target asks, and whether it was met."""

    name: str
    measured: str
    target: str
    met: bool

    def describe(self) -> str:
        outcome = "met" if self.met else "MISSED"
        return f"{self.name}: {self.measured}; target {self.target}: {outcome}"


def ms_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def ratio_or_na(value: float | None) -> str:
    return "n/a" if value is None else shown_ratio(value)


def added_p50_check(added: float | None, reference: float | None) -> Check:
    margin = f"{ADDED_P50_OVER_REFERENCE_MS:.1f} ms"
    if reference is None:
        return Check("added TTFT p50", ms_or_na(added), f"the reference relay's + {margin}", False)
    limit = round(reference + ADDED_P50_OVER_REFERENCE_MS, 3)
    target = f"<= {limit:.2f} ms (the reference relay's {reference:.2f} ms + {margin})"
    return Check("added TTFT p50", ms_or_na(added), target, added is not None and added <= limit)


def added_p95_check(added: float | None) -> Check:
    met = added is not None and added <= ADDED_P95_MAX_MS
    return Check("added TTFT p95", ms_or_na(added), f"<= {ADDED_P95_MAX_MS:g} ms", met)


def chunk_count_check(summary: Summary, duet: DuetPath) -> Check:
    counts = shown_list(summary[duet.key("duet_chunks")])
    measured = (
        f"direct {shown_list(summary['direct_chunks'])}, {duet.name} {counts}"
        f"; {summary[duet.key('chunk_counts_differing')]} of {summary['requests']} pairs differ"
    )
    identical = summary[duet.key("chunk_counts_identical")]
    return Check("chunk counts", measured, "identical in every pair", identical)


def itl_check(summary: Summary, duet: DuetPath) -> Check:
    found = summary[duet.key("itl_p50_ratio")]
    through = ms_or_na(summary[duet.key("duet_itl_p50_ms")])
    direct = ms_or_na(summary["direct_itl_p50_ms"])
    shown = "n/a" if found is None else shown_ratio(found)
    measured = f"{duet.name} {through} / direct {direct} = {shown}"
    met = found is not None and round(abs(found - 1), 4) <= ITL_P50_RATIO_TOLERANCE
    return Check("ITL p50 ratio", measured, RATIO_RANGE, met)


def verdicts(
    summary: Summary, duet: DuetPath = LOCAL, clear_of_stalls: bool = False
) -> list[Check]:
    """Every target's check for one engine and one path through Duet: over all requests or,
    with `clear_of_stalls`, the added TTFT over the requests (through that Duet and through the
    reference relay) that no machine stall touched."""
    clear = "_clear" if clear_of_stalls else ""
    added_p50 = summary[duet.key(f"added_ttft_p50{clear}_ms")]
    reference_p50 = summary[f"reference_added_ttft_p50{clear}_ms"]
    return [
        added_p50_check(added_p50, reference_p50),
        added_p95_check(summary[duet.key(f"added_ttft_p95{clear}_ms")]),
        chunk_count_check(summary, duet),
        itl_check(summary, duet),
    ]


def stalled_through(summary: Summary, duet: DuetPath, paths: Sequence[PathName]) -> int:
    """How many of the requests through that Duet a machine stall touched (`paths`: the
    engine's paths, in the order of its `stalled_requests`)."""
    return int(summary["stalled_requests"][list(paths).index(duet.path)])


def chunks_apart_check(summary: Summary, layer: Layer) -> Check:
    """Whether the layer passes the chunks on apart: through nginx, by Duet's own verdict on
    each request's hop (most of them not merged); through Open WebUI, by the chunk counts of
    the pairs with the direct requests (most of them the same)."""
    requests = summary["requests"]
    if layer.stamped:
        merged = summary[layer.key("merged_requests")]
        measured = (
            f"{'n/a' if merged is None else merged} of {requests} requests merged; "
            f"share of gaps collapsed p50 {ratio_or_na(summary[layer.key('collapsed_share_p50')])}"
            f" here, {ratio_or_na(summary[layer.key('written_collapsed_share_p50')])} at Duet's"
            " writes"
        )
        met = merged is not None and 2 * merged <= requests
        return Check("chunks apart", measured, "at most half the requests merged", met)
    differing = summary[layer.key("chunk_counts_differing")]
    measured = (
        f"direct {shown_list(summary['direct_chunks'])}, {layer.name} "
        f"{shown_list(summary[layer.key('chunks')])}; {differing} of {requests} pairs differ"
    )
    met = bool(summary[layer.key("chunks")]) and 2 * differing <= requests
    return Check("chunks apart", measured, "at most half the pairs' chunk counts differ", met)


def itl_kept_check(summary: Summary, layer: Layer) -> Check:
    """Whether the typical gap between chunks survives the layer: against Duet's writes of the
    same requests through nginx, against the direct requests through Open WebUI."""
    key = "itl_p50_ratio_client_to_writes" if layer.stamped else "itl_p50_ratio_to_beneath"
    against = "Duet's writes" if layer.stamped else "direct"
    found = summary[layer.key(key)]
    measured = f"ITL p50 {layer.name} / {against} = {ratio_or_na(found)}"
    met = found is not None and found >= ITL_FALL_RATIO
    return Check("ITL not falling", measured, f">= {ITL_FALL_RATIO:g}", met)


def layer_checks(summary: Summary, layer: Layer) -> list[Check]:
    """What the layer does to the stream: chunks passed on apart, and ITL not falling."""
    return [chunks_apart_check(summary, layer), itl_kept_check(summary, layer)]


def missed(checks: Sequence[Check]) -> list[str]:
    """The names of the targets missed (empty: all met)."""
    return [check.name for check in checks if not check.met]


def describe_verdict(heading: str, checks: Sequence[Check]) -> list[str]:
    """The verdict's printed lines: a heading with the outcome, then each check."""
    missing = missed(checks)
    outcome = "all targets met" if not missing else "MISSED " + ", ".join(missing)
    return [f"{heading}: {outcome}"] + ["  " + check.describe() for check in checks]
