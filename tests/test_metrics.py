"""Tests for duet.metrics: hand-computed cases, edge cases and properties over random streams."""

from __future__ import annotations

import math
import random

import pytest
from duet.engines.events import AnswerDelta, Done, ReasoningDelta, StreamError, Usage
from duet.metrics.stream import (
    BURST_GAP_S,
    ChunkArrival,
    arrivals_from_events,
    coefficient_of_variation,
    collapsed_fraction,
    compare_hops,
    output_tokens_from_events,
    percentile,
    stream_metrics,
)


def reasoning(at: float, chunk: int) -> ChunkArrival:
    return ChunkArrival(at=at, kind="reasoning", chunk=chunk)


def answer(at: float, chunk: int) -> ChunkArrival:
    return ChunkArrival(at=at, kind="answer", chunk=chunk)


# --- percentile: numpy's default linear interpolation, checked against hand-computed values ---


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),  # rank 1.5: halfway between 2 and 3
        ([1, 2, 3, 4], 25, 1.75),  # rank 0.75
        ([1, 2, 3, 4], 95, 3.85),  # rank 2.85: 3 + 0.85 * (4 - 3)
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([10, 20], 90, 19),  # rank 0.9
        ([3, 1, 2], 50, 2),  # order of the input does not matter
        ([7], 95, 7),  # one value is every percentile
        ([0.05, 0.1, 0.15, 0.2], 95, 0.1925),
        ([5, 5, 5, 100], 50, 5),  # rank 1.5 between two equal values
    ],
)
def test_percentile_matches_hand_computed_linear_interpolation(
    values: list[float], p: float, expected: float
) -> None:
    assert percentile(values, p) == pytest.approx(expected)


@pytest.mark.parametrize("p", [-1, 100.5, math.nan])
def test_percentile_rejects_p_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1, 2, 3], p)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_percentile_properties_on_random_samples() -> None:
    rng = random.Random(20240601)
    for _ in range(200):
        values = [rng.expovariate(20) for _ in range(rng.randint(1, 40))]
        results = [percentile(values, p) for p in (0, 10, 50, 90, 95, 100)]
        assert results == sorted(results), "percentiles must not decrease as p grows"
        assert results[0] == min(values)
        assert results[-1] == max(values)


# --- one stream at one hop ---


def test_hand_computed_stream_with_reasoning_then_answer() -> None:
    sent_at = 10.0
    arrivals = [
        reasoning(10.2, 0),
        reasoning(10.3, 1),
        answer(10.45, 2),
        answer(10.5, 3),
        answer(10.7, 4),
    ]
    metrics = stream_metrics(sent_at, arrivals, output_tokens=9)

    assert metrics.chunk_count == 5
    assert metrics.ttft == pytest.approx(0.2)
    assert metrics.ttfa == pytest.approx(0.45)
    assert metrics.e2e == pytest.approx(0.7)
    assert metrics.output_tokens == 9
    assert metrics.tpot == pytest.approx((0.7 - 0.2) / 8)  # 0.0625
    assert metrics.decode_tokens_per_s == pytest.approx(16.0)
    assert metrics.itl == pytest.approx((0.1, 0.15, 0.05, 0.2))
    assert metrics.itl_p50 == pytest.approx(0.125)
    assert metrics.itl_p95 == pytest.approx(0.1925)
    assert metrics.itl_max == pytest.approx(0.2)
    assert metrics.itl_cv == pytest.approx(1 / math.sqrt(5))  # stdev 0.0559 / mean 0.125
    assert metrics.burst_gap_fraction == 0.0
    assert metrics.output_tokens_per_s == pytest.approx(9 / 0.7)


def test_events_of_one_chunk_count_once_and_answer_text_makes_it_an_answer_chunk() -> None:
    # A chunk that carried the end of the reasoning and the start of the answer produces two
    # events with the same stamp: one gap per chunk, and TTFA is that chunk's arrival.
    arrivals = [
        reasoning(1.1, 0),
        reasoning(1.3, 1),
        answer(1.3, 1),
        answer(1.4, 2),
    ]
    metrics = stream_metrics(1.0, arrivals, output_tokens=4)
    assert metrics.chunk_count == 3
    assert metrics.itl == pytest.approx((0.2, 0.1))
    assert metrics.ttfa == pytest.approx(0.3)


def test_a_chunk_stamped_once_per_event_arrives_at_its_earliest_stamp() -> None:
    # A browser may stamp each event of one chunk as its handler runs: the chunk had arrived
    # when the first of them was stamped.
    arrivals = [reasoning(1.1, 0), reasoning(1.3, 1), answer(1.3004, 1), answer(1.4, 2)]
    metrics = stream_metrics(1.0, arrivals, output_tokens=4)
    assert metrics.itl == pytest.approx((0.2, 0.1))
    assert metrics.ttfa == pytest.approx(0.3)


def test_arrival_order_does_not_matter_chunk_numbers_do() -> None:
    ordered = [reasoning(0.5, 0), answer(0.6, 1), answer(0.9, 2)]
    shuffled = [ordered[2], ordered[0], ordered[1]]
    assert stream_metrics(0.0, shuffled, 3) == stream_metrics(0.0, ordered, 3)


def test_empty_stream_has_no_times() -> None:
    metrics = stream_metrics(5.0, [], output_tokens=None)
    assert metrics.chunk_count == 0
    assert metrics.ttft is None
    assert metrics.ttfa is None
    assert metrics.e2e is None
    assert metrics.tpot is None
    assert metrics.itl == ()
    assert metrics.itl_p50 is None
    assert metrics.itl_p95 is None
    assert metrics.itl_max is None
    assert metrics.itl_cv is None
    assert metrics.burst_gap_fraction is None
    assert metrics.output_tokens_per_s is None
    assert metrics.decode_tokens_per_s is None


def test_single_chunk_holding_every_token() -> None:
    # What a fully buffering relay delivers: everything at once. TTFT equals e2e and, by the
    # vLLM formula, TPOT is zero: the tokens did not arrive one by one.
    metrics = stream_metrics(2.0, [answer(2.8, 0)], output_tokens=5)
    assert metrics.ttft == pytest.approx(0.8)
    assert metrics.ttfa == pytest.approx(0.8)
    assert metrics.e2e == pytest.approx(0.8)
    assert metrics.tpot == pytest.approx(0.0)
    assert metrics.decode_tokens_per_s is None
    assert metrics.itl == ()
    assert metrics.itl_p50 is None
    assert metrics.output_tokens_per_s == pytest.approx(5 / 0.8)


def test_reasoning_only_answer_has_no_ttfa() -> None:
    # e.g. max_tokens ran out while the model was still thinking
    metrics = stream_metrics(0.0, [reasoning(0.2, 0), reasoning(0.3, 1)], output_tokens=2)
    assert metrics.ttft == pytest.approx(0.2)
    assert metrics.ttfa is None
    assert metrics.tpot == pytest.approx(0.1)


def test_no_reasoning_means_ttfa_equals_ttft() -> None:
    metrics = stream_metrics(0.0, [answer(0.25, 0), answer(0.3, 1)], output_tokens=2)
    assert metrics.ttfa == metrics.ttft


@pytest.mark.parametrize("output_tokens", [None, 0, 1])
def test_tpot_needs_at_least_two_tokens_reported_by_the_engine(output_tokens: int | None) -> None:
    # Three chunks, but the chunk count is never used as a token count (vLLM #27485).
    arrivals = [answer(0.1, 0), answer(0.2, 1), answer(0.3, 2)]
    metrics = stream_metrics(0.0, arrivals, output_tokens=output_tokens)
    assert metrics.tpot is None
    assert metrics.itl == pytest.approx((0.1, 0.1))
    if output_tokens is None:
        assert metrics.output_tokens_per_s is None


def test_tokens_per_second_uses_engine_tokens_not_chunks() -> None:
    # A reasoning parser may merge several tokens into one chunk: 2 chunks, 10 tokens.
    metrics = stream_metrics(0.0, [answer(0.5, 0), answer(1.0, 1)], output_tokens=10)
    assert metrics.output_tokens_per_s == pytest.approx(10.0)
    assert metrics.tpot == pytest.approx(0.5 / 9)


def test_chunks_that_arrive_together_count_as_burst_gaps() -> None:
    arrivals = [answer(0.1, 0), answer(0.1, 1), answer(0.1005, 2), answer(0.2, 3)]
    metrics = stream_metrics(0.0, arrivals, output_tokens=4)
    assert metrics.itl == pytest.approx((0.0, 0.0005, 0.0995))
    assert metrics.burst_gap_fraction == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("arrivals", "message"),
    [
        ([answer(0.5, 0)], "before the request was sent"),
        ([answer(1.2, 0), answer(1.1, 1)], "stamps must come from one monotonic clock"),
        ([answer(1.2, -1)], "chunk number must be >= 0"),
        ([answer(math.nan, 0)], "finite number"),
        ([answer(math.inf, 0)], "finite number"),
        ([ChunkArrival(at=1.5, kind="tool", chunk=0)], "'reasoning' or 'answer'"),  # type: ignore[arg-type]
        ([ChunkArrival(at=1.5, kind="answer", chunk=1.0)], "integer"),  # type: ignore[arg-type]
    ],
)
def test_bad_arrivals_get_a_clear_error(arrivals: list[ChunkArrival], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stream_metrics(1.0, arrivals, output_tokens=3)


@pytest.mark.parametrize("output_tokens", [-1, True, 2.5])
def test_bad_token_count_is_an_error(output_tokens: int) -> None:
    with pytest.raises(ValueError, match="output_tokens"):
        stream_metrics(0.0, [answer(0.1, 0)], output_tokens=output_tokens)


def test_bad_sent_at_is_an_error() -> None:
    with pytest.raises(ValueError, match="sent_at"):
        stream_metrics(math.nan, [answer(0.1, 0)])


def test_stream_properties_on_random_streams() -> None:
    rng = random.Random(7)
    for _ in range(300):
        sent_at = rng.uniform(0, 1000)
        count = rng.randint(0, 60)
        thinking_chunks = rng.randint(0, count)
        at = sent_at + rng.uniform(0, 2)
        arrivals = []
        chunk_number = -1
        for number in range(count):
            at += rng.choice([0.0, 0.0002, rng.expovariate(30)])
            # numbering may skip (a role-only or usage chunk carried no text)
            chunk_number += rng.randint(1, 3)
            kind = "reasoning" if number < thinking_chunks else "answer"
            arrivals.append(ChunkArrival(at=at, kind=kind, chunk=chunk_number))
        tokens = rng.choice([None, count, count * 2])
        metrics = stream_metrics(sent_at, arrivals, tokens)

        assert metrics.chunk_count == count
        assert len(metrics.itl) == max(count - 1, 0)
        assert all(gap >= 0 for gap in metrics.itl)
        if count == 0:
            continue
        assert metrics.ttft is not None and metrics.e2e is not None
        assert metrics.ttft <= metrics.e2e
        assert math.fsum(metrics.itl) == pytest.approx(metrics.e2e - metrics.ttft, abs=1e-9)
        if thinking_chunks < count:
            assert metrics.ttfa is not None
            assert metrics.ttft <= metrics.ttfa <= metrics.e2e
        else:
            assert metrics.ttfa is None
        if metrics.itl:
            assert metrics.itl_p50 is not None and metrics.itl_p95 is not None
            assert metrics.itl_max is not None
            assert min(metrics.itl) <= metrics.itl_p50 <= metrics.itl_p95 <= metrics.itl_max
        if tokens is not None and tokens >= 2:
            assert metrics.tpot is not None
            assert metrics.tpot * (tokens - 1) == pytest.approx(metrics.e2e - metrics.ttft)


# --- from the typed stream events ---


def test_arrivals_and_token_count_from_engine_events() -> None:
    events = [
        ReasoningDelta(text="Let me think", at=3.1, chunk=1),
        ReasoningDelta(text="", at=3.15, chunk=2),  # nothing to show: not an arrival
        ReasoningDelta(text=" done.", at=3.2, chunk=3),
        AnswerDelta(text="Hi", at=3.2, chunk=3),
        AnswerDelta(text="!", at=3.3, chunk=4),
        Usage(prompt_tokens=12, completion_tokens=None, at=3.3),
        Usage(prompt_tokens=12, completion_tokens=7, at=3.31),
        Done(finish_reason="stop", at=3.31),
    ]
    arrivals = arrivals_from_events(events)
    assert arrivals == [
        reasoning(3.1, 1),
        reasoning(3.2, 3),
        answer(3.2, 3),
        answer(3.3, 4),
    ]
    assert output_tokens_from_events(events) == 7
    metrics = stream_metrics(3.0, arrivals, output_tokens_from_events(events))
    assert metrics.chunk_count == 3
    assert metrics.ttfa == pytest.approx(0.2)
    assert metrics.e2e == pytest.approx(0.3)  # the usage and done events do not extend it
    assert metrics.tpot == pytest.approx((0.3 - 0.1) / 6)


def test_a_failed_stream_without_usage_has_no_token_count() -> None:
    events = [AnswerDelta(text="par", at=1.0, chunk=0), StreamError(message="engine died", at=1.5)]
    assert output_tokens_from_events(events) is None
    assert arrivals_from_events(events) == [answer(1.0, 0)]


# --- burst measures ---


def test_coefficient_of_variation_hand_computed() -> None:
    assert coefficient_of_variation([0.1, 0.1, 0.1]) == pytest.approx(0.0)
    # mean 0.25, population stdev 0.15 -> 0.6
    assert coefficient_of_variation([0.1, 0.4]) == pytest.approx(0.6)
    assert coefficient_of_variation([0.2]) is None
    assert coefficient_of_variation([0.0, 0.0]) is None


def test_collapsed_fraction() -> None:
    assert collapsed_fraction([0.0, 0.0005, BURST_GAP_S, 0.05]) == pytest.approx(0.5)
    assert collapsed_fraction([0.002, 0.004], threshold_s=0.003) == pytest.approx(0.5)
    assert collapsed_fraction([]) is None


# --- two hops: server arrival vs browser arrival of the same chunks ---


def steady_server(count: int, sent_at: float = 100.0, first: float = 0.1, gap: float = 0.05):
    return [answer(sent_at + first + gap * number, number) for number in range(count)]


def test_hand_computed_buffering_hop_is_bursty() -> None:
    # The server got a chunk every 50 ms; the browser got them three at a time, 0.1 ms apart.
    server = steady_server(6)  # elapsed 0.10, 0.15, 0.20, 0.25, 0.30, 0.35
    browser_at = [5.2, 5.2001, 5.2002, 5.35, 5.3501, 5.3502]  # another clock, sent at 5.0
    browser = [answer(at, number) for number, at in enumerate(browser_at)]

    hops = compare_hops(100.0, server, 5.0, browser)

    assert hops.added_delay == pytest.approx((0.1, 0.0501, 0.0002, 0.1, 0.0501, 0.0002))
    assert hops.added_delay_p50 == pytest.approx(0.0501)  # sorted rank 2.5
    assert hops.added_delay_p95 == pytest.approx(0.1)  # sorted rank 4.75, between 0.1 and 0.1
    assert hops.added_delay_max == pytest.approx(0.1)
    assert hops.collapsed_gap_s == pytest.approx(0.005)  # 10 % of the server's 50 ms ITL p50
    assert hops.server_collapsed_fraction == 0.0
    assert hops.browser_collapsed_fraction == pytest.approx(0.8)  # 4 of 5 gaps
    assert hops.server_itl_cv == pytest.approx(0.0, abs=1e-9)
    assert hops.browser_itl_cv is not None and hops.browser_itl_cv > 1
    assert hops.bursty
    assert hops.chunks_preserved
    assert (hops.server_chunks, hops.browser_chunks) == (6, 6)

    # The tell from the field: across the buffering hop TTFT rises while the ITL p50 falls.
    at_server = stream_metrics(100.0, server)
    at_browser = stream_metrics(5.0, browser)
    assert at_browser.ttft is not None and at_server.ttft is not None
    assert at_browser.ttft > at_server.ttft
    assert at_browser.itl_p50 is not None and at_server.itl_p50 is not None
    assert at_browser.itl_p50 < at_server.itl_p50


def test_a_steady_relay_adds_constant_delay_and_is_not_bursty() -> None:
    server = steady_server(20)
    rng = random.Random(3)
    # 3 ms of relay delay with up to 1 ms of jitter, but chunks still arrive one by one
    browser = [
        answer(chunk.at - 100.0 + 0.003 + rng.uniform(0, 0.001), chunk.chunk) for chunk in server
    ]

    hops = compare_hops(100.0, server, 0.0, browser)

    assert not hops.bursty
    assert hops.browser_collapsed_fraction == 0.0
    assert hops.added_delay_p50 is not None and 0.003 <= hops.added_delay_p50 <= 0.004
    assert hops.added_delay_max is not None and hops.added_delay_max <= 0.004
    assert len(hops.added_delay) == 20


def test_slow_rendering_inside_a_burst_still_counts_as_a_burst() -> None:
    # A browser spending 3 ms per chunk while working through a flushed buffer: the gaps are not
    # under 1 ms, but they are under 10 % of the server's 50 ms rhythm.
    server = steady_server(12)
    browser = []
    for number in range(12):
        flush = 0.4 if number < 6 else 0.7
        browser.append(answer(flush + 0.003 * (number % 6), number))
    hops = compare_hops(100.0, server, 0.0, browser)
    assert hops.browser_collapsed_fraction == pytest.approx(10 / 11)
    assert hops.bursty


def test_bursts_already_present_at_the_server_are_not_blamed_on_the_hop() -> None:
    server = [
        answer(100.0 + 0.1 * (number // 3) + 0.0001 * (number % 3), number) for number in range(9)
    ]
    browser = [answer(chunk.at - 100.0 + 0.002, chunk.chunk) for chunk in server]
    hops = compare_hops(100.0, server, 0.0, browser)
    assert hops.server_collapsed_fraction == pytest.approx(6 / 8)
    assert hops.browser_collapsed_fraction == pytest.approx(6 / 8)
    assert not hops.bursty


def test_too_few_chunks_for_a_verdict() -> None:
    server = steady_server(4)  # 3 gaps
    browser = [answer(0.3 + 0.0001 * number, number) for number in range(4)]
    hops = compare_hops(100.0, server, 0.0, browser)
    assert hops.browser_collapsed_fraction == 1.0
    assert not hops.bursty


def test_lost_and_extra_chunks_are_reported_and_left_out_of_the_delay() -> None:
    server = steady_server(5)  # elapsed 0.10 .. 0.30
    browser = [
        answer(0.101, 0),
        answer(0.151, 1),
        answer(0.251, 3),
        answer(0.301, 4),
        answer(0.4, 9),
    ]
    hops = compare_hops(100.0, server, 0.0, browser)
    assert hops.missing_at_browser == (2,)
    assert hops.unexpected_at_browser == (9,)
    assert not hops.chunks_preserved
    assert hops.added_delay == pytest.approx((0.001, 0.001, 0.001, 0.001))


def test_comparing_empty_streams() -> None:
    hops = compare_hops(0.0, [], 0.0, [])
    assert hops.added_delay == ()
    assert hops.added_delay_p50 is None
    assert hops.collapsed_gap_s is None
    assert hops.server_collapsed_fraction is None
    assert not hops.bursty
    assert hops.chunks_preserved


def test_comparing_with_bad_start_is_an_error() -> None:
    with pytest.raises(ValueError, match="browser_sent_at"):
        compare_hops(0.0, steady_server(2, sent_at=0.0), math.inf, [])


def test_comparing_with_browser_stamps_from_the_server_clock_is_an_error() -> None:
    # Browser arrivals stamped on another clock than its request start: caught, not averaged.
    server = steady_server(3)
    with pytest.raises(ValueError, match="different clocks"):
        compare_hops(100.0, server, 5000.0, [answer(chunk.at, chunk.chunk) for chunk in server])
