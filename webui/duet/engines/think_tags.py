"""Qwen3's reasoning told apart from its answer by the `<think>…</think>` tags in the text.

vLLM (`--reasoning-parser qwen3`), Ollama and `transformers serve` (for the model types it has a
response template for) split the two themselves; an engine that streams the raw text instead
leaves the tags in the answer. `ThinkSplitter` reads that text as it streams: what lies between
the tags is reasoning, the rest is answer, the tags themselves are dropped. A tag may arrive cut
across chunks (`<thi` then `nk>`), so a chunk's tail that could be the start of the tag looked
for is held back until the next chunk shows what it is, or until `finish()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Literal

from duet.engines.events import AnswerDelta, ReasoningDelta, StreamEvent

OPEN = "<think>"
CLOSE = "</think>"

Piece = tuple[Literal["reasoning", "answer"], str]


def held_back(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """One answer's text in, its reasoning and answer pieces out, in order."""

    def __init__(self) -> None:
        self.thinking = False
        self.pending = ""

    def feed(self, text: str) -> list[Piece]:
        pieces: list[Piece] = []
        text = self.pending + text
        while text:
            tag = CLOSE if self.thinking else OPEN
            kind: Literal["reasoning", "answer"] = "reasoning" if self.thinking else "answer"
            found = text.find(tag)
            if found >= 0:
                if found:
                    pieces.append((kind, text[:found]))
                text = text[found + len(tag) :]
                self.thinking = not self.thinking
                continue
            keep = held_back(text, tag)
            if len(text) > keep:
                pieces.append((kind, text[: len(text) - keep]))
            text = text[len(text) - keep :]
            break
        self.pending = text
        return pieces

    def finish(self) -> list[Piece]:
        """What was held back, once the stream has ended: it was no tag after all."""
        text, self.pending = self.pending, ""
        return [("reasoning" if self.thinking else "answer", text)] if text else []


async def split_think_tags(events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """`events` with the answer's text split by its tags; other events pass as they are. The
    pieces of one answer delta keep its stamp and chunk number: they came in its bytes."""
    splitter = ThinkSplitter()
    last: AnswerDelta | None = None
    async with aclosing(events):
        async for event in events:
            if isinstance(event, AnswerDelta):
                last = event
                for piece in splitter.feed(event.text):
                    yield delta(piece, event)
                continue
            if last is not None:
                for piece in splitter.finish():
                    yield delta(piece, last)
            yield event


def delta(piece: Piece, source: AnswerDelta) -> ReasoningDelta | AnswerDelta:
    kind, text = piece
    made = ReasoningDelta if kind == "reasoning" else AnswerDelta
    return made(text=text, at=source.at, chunk=source.chunk)
