"""One engine's run summed up: every number `duet bench relay` prints and keeps, and the
verdicts against the targets.

Each number is declared once, in `ROWS`: its key in the summary (the JSON kept beside
docs/benchmarks/relay.md), its label in the printed table, how it is computed from the engine's
requests and how it is printed. Percentiles are taken over requests (TTFT, the added TTFT and
its parts: one value per request) or over the gaps of every request pooled (ITL).

The targets (issue 10) hold Duet against the reference relay measured in the same run, which is
what a Python relay on Duet's server stack can do on that machine at that moment: Duet's added
TTFT p50 at most the reference relay's p50 plus `ADDED_P50_OVER_REFERENCE_MS`, its p95 at most
`ADDED_P95_MAX_MS`, the same chunk count as the direct request in every pair, and the ITL p50
through Duet within `ITL_P50_RATIO_TOLERANCE` of the direct one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from duet.bench.measured import PATHS, EngineResult, Measured, PathName, added_ttft_ms
from duet.metrics.stream import percentile

ADDED_P50_OVER_REFERENCE_MS = 1.0
ADDED_P95_MAX_MS = 10.0
ITL_P50_RATIO_TOLERANCE = 0.05

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


def paired(result: EngineResult) -> list[tuple[Measured, Measured]]:
    """Each direct request with the request through Duet of the same round."""
    return list(zip(result.direct, result.duet, strict=False))


def pairs(result: EngineResult) -> int:
    return len(paired(result))


def stalled_requests(result: EngineResult) -> list[int]:
    return [sum(1 for m in result.requests_on(path) if m.stalled_ms) for path in PATHS]


def chunk_counts(path: PathName) -> Computed:
    return lambda result: sorted({m.chunks for m in result.requests_on(path)})


def chunk_counts_differing(result: EngineResult) -> int:
    return sum(1 for direct, duet in paired(result) if direct.chunks != duet.chunks)


def chunk_counts_identical(result: EngineResult) -> bool:
    return bool(paired(result)) and chunk_counts_differing(result) == 0


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
    """One number of the summary: its key, its label in the table, how it is computed."""

    key: str
    label: str
    value: Computed
    shown: Callable[[Any], str] = shown_ms

    def cell(self, value: Any) -> str:
        return "n/a" if value is None else self.shown(value)


TTFT = attrgetter("ttft_ms")
PRE_WIRE = attrgetter("pre_wire_ms")
BEFORE_ENGINE = attrgetter("before_engine_ms")
FIRST_CHUNK_HELD = attrgetter("first_chunk_held_ms")
FIRST_CHUNK_OUT = attrgetter("first_chunk_out_ms")
ITL = attrgetter("itl_ms")
SERVER_ITL = attrgetter("server_itl_ms")

ADDED = per_request("duet", added_ttft_ms)
REFERENCE_ADDED = per_request("reference", added_ttft_ms)
ADDED_CLEAR = per_request("duet", added_ttft_ms, clear_of_stalls=True)
REFERENCE_ADDED_CLEAR = per_request("reference", added_ttft_ms, clear_of_stalls=True)
ITL_P50_DIRECT = p50(pooled_gaps("direct", ITL))
ITL_P50_DUET = p50(pooled_gaps("duet", ITL))
RATIO_RANGE = f"{1 - ITL_P50_RATIO_TOLERANCE:.2f}-{1 + ITL_P50_RATIO_TOLERANCE:.2f}"

ROWS: tuple[Row, ...] = (
    Row("requests", "requests per path", pairs, str),
    Row("direct_ttft_p50_ms", "TTFT p50 direct (ms)", p50(per_request("direct", TTFT))),
    Row("duet_ttft_p50_ms", "TTFT p50 through Duet (ms)", p50(per_request("duet", TTFT))),
    Row("direct_ttft_p95_ms", "TTFT p95 direct (ms)", p95(per_request("direct", TTFT))),
    Row("duet_ttft_p95_ms", "TTFT p95 through Duet (ms)", p95(per_request("duet", TTFT))),
    Row(
        "unpaired_difference_p50_ms",
        "TTFT p50 through Duet - direct (ms)",
        difference(p50(per_request("duet", TTFT)), p50(per_request("direct", TTFT))),
    ),
    Row(
        "added_ttft_p50_ms",
        f"added TTFT p50 (ms) [<= ref + {ADDED_P50_OVER_REFERENCE_MS:.1f}]",
        p50(ADDED),
    ),
    Row("added_ttft_p95_ms", f"added TTFT p95 (ms) [<= {ADDED_P95_MAX_MS:g}]", p95(ADDED)),
    Row("added_ttft_max_ms", "added TTFT max (ms)", largest(ADDED)),
    Row(
        "stalled_requests",
        "requests in a machine stall (direct,Duet,ref)",
        stalled_requests,
        shown_list,
    ),
    Row("added_ttft_p50_clear_ms", "  added TTFT p50, requests clear of stalls", p50(ADDED_CLEAR)),
    Row("added_ttft_p95_clear_ms", "  added TTFT p95, requests clear of stalls", p95(ADDED_CLEAR)),
    Row(
        "request_in_p50_ms",
        "  client -> Duet, request in p50",
        p50(per_request("duet", request_in_ms)),
    ),
    Row(
        "before_engine_p50_ms",
        "  Duet receipt to engine wire p50",
        p50(per_request("duet", BEFORE_ENGINE)),
    ),
    Row(
        "before_engine_p95_ms",
        "  Duet receipt to engine wire p95",
        p95(per_request("duet", BEFORE_ENGINE)),
    ),
    Row(
        "first_chunk_held_p50_ms",
        "  first chunk held in Duet p50",
        p50(per_request("duet", FIRST_CHUNK_HELD)),
    ),
    Row(
        "first_chunk_held_p95_ms",
        "  first chunk held in Duet p95",
        p95(per_request("duet", FIRST_CHUNK_HELD)),
    ),
    Row(
        "first_chunk_out_p50_ms",
        "  Duet -> client, first chunk out p50",
        p50(per_request("duet", FIRST_CHUNK_OUT)),
    ),
    Row(
        "client_pre_wire_p50_ms",
        "client's own pre-wire p50, direct",
        p50(per_request("direct", PRE_WIRE)),
    ),
    Row(
        "duet_client_pre_wire_p50_ms",
        "client's own pre-wire p50, to Duet",
        p50(per_request("duet", PRE_WIRE)),
    ),
    Row(
        "reference_client_pre_wire_p50_ms",
        "client's own pre-wire p50, to the reference",
        p50(per_request("reference", PRE_WIRE)),
    ),
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
        "duet_beyond_reference_p50_ms",
        "Duet added beyond the reference p50",
        difference(p50(ADDED), p50(REFERENCE_ADDED)),
    ),
    Row(
        "reference_chunks",
        "chunks through the reference relay",
        chunk_counts("reference"),
        shown_list,
    ),
    Row("direct_chunks", "chunks direct", chunk_counts("direct"), shown_list),
    Row("duet_chunks", "chunks through Duet", chunk_counts("duet"), shown_list),
    Row(
        "chunk_counts_differing",
        "pairs whose chunk counts differ",
        chunk_counts_differing,
        str,
    ),
    Row(
        "chunk_counts_identical",
        "chunk counts identical",
        chunk_counts_identical,
        shown_yes_no,
    ),
    Row("direct_itl_p50_ms", "ITL p50 direct (ms)", ITL_P50_DIRECT),
    Row("duet_itl_p50_ms", "ITL p50 through Duet (ms)", ITL_P50_DUET),
    Row("direct_itl_p95_ms", "ITL p95 direct (ms)", p95(pooled_gaps("direct", ITL))),
    Row("duet_itl_p95_ms", "ITL p95 through Duet (ms)", p95(pooled_gaps("duet", ITL))),
    Row(
        "itl_p50_ratio",
        f"ITL p50 ratio [{RATIO_RANGE}]",
        ratio(ITL_P50_DUET, ITL_P50_DIRECT),
        shown_ratio,
    ),
    Row(
        "duet_server_itl_p50_ms",
        "  ITL p50 engine -> Duet's server (ms)",
        p50(pooled_gaps("duet", SERVER_ITL)),
    ),
    # The same requests on both sides of Duet: what the relay itself does to the gaps, apart
    # from the engine running at another speed while Duet shares its cores.
    Row(
        "itl_p50_ratio_across_duet",
        "  ITL p50 ratio, client side / server side of Duet",
        ratio(ITL_P50_DUET, p50(pooled_gaps("duet", SERVER_ITL))),
        shown_ratio,
    ),
    Row(
        "reference_itl_p50_ms",
        "  ITL p50 through the reference relay (ms)",
        p50(pooled_gaps("reference", ITL)),
    ),
)


def summarize(result: EngineResult) -> Summary:
    return {"engine": result.engine, **{row.key: row.value(result) for row in ROWS}}


def format_table(summaries: Sequence[Summary]) -> str:
    label_width = max(len(row.label) for row in ROWS)
    header = "".ljust(label_width) + "".join(f"{s['engine']:>16}" for s in summaries)
    lines = [header, "-" * len(header)]
    for row in ROWS:
        cells = "".join(f"{row.cell(summary[row.key]):>16}" for summary in summaries)
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


def chunk_count_check(summary: Summary) -> Check:
    measured = (
        f"direct {shown_list(summary['direct_chunks'])}, Duet {shown_list(summary['duet_chunks'])}"
        f"; {summary['chunk_counts_differing']} of {summary['requests']} pairs differ"
    )
    return Check(
        "chunk counts", measured, "identical in every pair", summary["chunk_counts_identical"]
    )


def itl_check(summary: Summary) -> Check:
    found = summary["itl_p50_ratio"]
    duet, direct = ms_or_na(summary["duet_itl_p50_ms"]), ms_or_na(summary["direct_itl_p50_ms"])
    measured = f"Duet {duet} / direct {direct} = {'n/a' if found is None else shown_ratio(found)}"
    met = found is not None and round(abs(found - 1), 4) <= ITL_P50_RATIO_TOLERANCE
    return Check("ITL p50 ratio", measured, RATIO_RANGE, met)


# The summary's added-TTFT keys (Duet p50, the reference relay's p50, Duet p95): over all
# requests, and over the requests no machine stall touched.
ADDED_KEYS = ("added_ttft_p50_ms", "reference_added_ttft_p50_ms", "added_ttft_p95_ms")
ADDED_CLEAR_KEYS = (
    "added_ttft_p50_clear_ms",
    "reference_added_ttft_p50_clear_ms",
    "added_ttft_p95_clear_ms",
)


def verdicts(summary: Summary, clear_of_stalls: bool = False) -> list[Check]:
    """Every target's check for one engine: over all requests or, with `clear_of_stalls`, the
    added TTFT over the requests (through Duet and through the reference relay) that no machine
    stall touched."""
    p50_key, reference_key, p95_key = ADDED_CLEAR_KEYS if clear_of_stalls else ADDED_KEYS
    return [
        added_p50_check(summary[p50_key], summary[reference_key]),
        added_p95_check(summary[p95_key]),
        chunk_count_check(summary),
        itl_check(summary),
    ]


def missed(checks: Sequence[Check]) -> list[str]:
    """The names of the targets missed (empty: all met)."""
    return [check.name for check in checks if not check.met]


def describe_verdict(heading: str, checks: Sequence[Check]) -> list[str]:
    """The verdict's printed lines: a heading with the outcome, then each check."""
    missing = missed(checks)
    outcome = "all targets met" if not missing else "MISSED " + ", ".join(missing)
    return [f"{heading}: {outcome}"] + ["  " + check.describe() for check in checks]
