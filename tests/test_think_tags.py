"""The `<think>` splitter for engines that leave Qwen3's tags in the answer (no engine needed)."""

from __future__ import annotations

import asyncio

import pytest
from duet.engines.events import AnswerDelta, Done, ReasoningDelta, StreamEvent
from duet.engines.think_tags import ThinkSplitter, held_back, split_think_tags

STREAM = "<think>\nThe user asks.\n</think>\n\nParis is the capital."


def split(chunks: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    pieces = [piece for chunk in chunks for piece in splitter.feed(chunk)] + splitter.finish()
    reasoning = "".join(text for kind, text in pieces if kind == "reasoning")
    answer = "".join(text for kind, text in pieces if kind == "answer")
    return reasoning, answer


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_tags_cut_anywhere_across_chunks_split_the_same(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert split(chunks) == ("\nThe user asks.\n", "\n\nParis is the capital.")


def test_text_without_tags_is_all_answer_and_a_lone_angle_bracket_is_kept() -> None:
    assert split(["a < b", " and <thin", "g>"]) == ("", "a < b and <thing>")
    assert split(["ends with <th"]) == ("", "ends with <th")  # held back, then given at the end


def test_reasoning_cut_off_before_its_closing_tag_stays_reasoning() -> None:
    assert split(["<think>still thinking </thi"]) == ("still thinking </thi", "")


def test_a_partial_tag_is_held_back_only_as_long_as_it_could_be_one() -> None:
    assert held_back("abc <thi", "<think>") == 4
    assert held_back("abc <", "<think>") == 1
    assert held_back("abc <x", "<think>") == 0
    splitter = ThinkSplitter()
    assert splitter.feed("Hi <th") == [("answer", "Hi ")]
    assert splitter.feed("ere") == [("answer", "<there")]


def test_the_stream_wrapper_keeps_each_deltas_stamp_and_chunk() -> None:
    async def engine() -> object:
        yield AnswerDelta("<think>ab", at=1.0, chunk=0)
        yield AnswerDelta("c</think>Par", at=2.0, chunk=1)
        yield AnswerDelta("is <", at=3.0, chunk=2)
        yield Done("stop", at=4.0)

    async def collect() -> list[StreamEvent]:
        return [event async for event in split_think_tags(engine())]  # type: ignore[arg-type]

    assert asyncio.run(collect()) == [
        ReasoningDelta("ab", at=1.0, chunk=0),
        ReasoningDelta("c", at=2.0, chunk=1),
        AnswerDelta("Par", at=2.0, chunk=1),
        AnswerDelta("is ", at=3.0, chunk=2),
        AnswerDelta("<", at=3.0, chunk=2),  # held back: no tag after all
        Done("stop", at=4.0),
    ]
