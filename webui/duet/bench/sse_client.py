"""Reading a server-sent event stream as a client: the benchmark and the tests share this.

Lines become events as the HTML standard's event-stream interpretation says: `event:`, `data:`
and `id:` fields gather until a blank line ends the event; comment lines (`: ...`, Duet's
heartbeats) and fields it does not know are skipped; an event with no data is never dispatched.
`parse_events` reads plain lines (an HTTP client's `iter_lines()`); `stamped_events` reads
Duet's stamped line reader (`duet.engines.http.read_lines`) and keeps each event's arrival time.

No library is used: httpx-sse, the well-kept one, reads only httpx responses through its public
API (its line decoder is private), and the benchmark reads Duet's stream with aiohttp, as the
engine adapters read the engines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event: its type ("message" when the stream named none), data and its own `id:`
    field (None when it carried none; a browser would keep the last one it saw instead)."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(slots=True)
class EventDecoder:
    """Fields in, one line at a time; an event out at the blank line that ends it."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event = None
        if self._data:
            event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data, self._id = "", [], None
        return event


def parse_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Each event of a stream's lines (blank lines included), as soon as it is complete."""
    decoder = EventDecoder()
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event


async def stamped_events(
    lines: AsyncIterable[tuple[float, str]],
) -> AsyncIterator[tuple[float, ServerSentEvent]]:
    """(arrival time of its data, event) for each event of `read_lines`' stamped lines.

    `read_lines` drops blank lines, so here an event ends at its `data:` line: every event
    Duet writes has exactly one, as its last field (`duet.sse.format_event`)."""
    decoder = EventDecoder()
    async for at, line in lines:
        decoder.feed(line)
        if line.startswith("data:"):
            event = decoder.feed("")
            if event is not None:
                yield at, event
