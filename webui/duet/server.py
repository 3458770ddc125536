"""Running the web UI under uvicorn (`duet serve`), with the limits only the server can set.

What bounds a client, and where:

- connecting and sending a request's line and headers: DUET_HEADER_TIMEOUT seconds and
  DUET_MAX_HEADER_BYTES bytes (`BoundedHeaders` below: uvicorn has neither with httptools);
- an idle kept-open connection: DUET_KEEP_ALIVE_TIMEOUT (uvicorn's `timeout_keep_alive`);
- connections and requests in progress: DUET_MAX_CONNECTIONS (uvicorn's `limit_concurrency`;
  past it every new request is answered 503 until some end);
- a request's body, its size and its time: DUET_MAX_BODY_BYTES and DUET_BODY_TIMEOUT, and
  event streams per client address: DUET_MAX_STREAMS_PER_CLIENT (in the app: duet.security).

Not bounded: how long a response takes, event streams included (an answer streams as long as
the engine generates), and how slowly a client reads one: uvicorn's flow control makes the
writer wait for a slow reader, which then holds its connection and task, and so counts
against DUET_MAX_CONNECTIONS and, for streams, DUET_MAX_STREAMS_PER_CLIENT.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from duet.app import create_app
from duet.auth.mode import ModeError
from duet.settings import Settings
from duet.store import StorageError, open_database


class BoundedHeaders(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on a request's line and
    headers.

    uvicorn has no header timeout (its issue #157 lists `--timeout-request-start`, never
    added): its keep-alive timer stops at a request's first byte, so a client that sends one
    header byte every few seconds holds its connection for ever, and httptools accepts headers
    of any size. Here the deadline runs from the connection's start, or from the first byte of
    each later request on it, to the end of its headers; past it, or past the size, the
    connection is refused (408 or 431) and closed. An idle connection that has sent nothing
    yet is closed without an answer: browsers open spare connections ahead of need and would
    read an unasked-for 408 as the answer to their next request.

    `bounded_headers(settings)` makes the subclass with the settings' values.
    """

    header_timeout: float
    max_header_bytes: int

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_bytes = 0
        self.bytes_being_read = 0
        self.header_deadline: asyncio.TimerHandle | None = None
        self.await_headers()

    def data_received(self, data: bytes) -> None:
        if self.header_deadline is not None:
            self.header_bytes += len(data)
        self.bytes_being_read = len(data)
        super().data_received(data)
        # Counted before parsing, so body bytes that came with the headers' end count too:
        # the check is made only if the headers are still incomplete after this data (also
        # when they are those of a later request that began in it).
        if self.header_deadline is not None and self.header_bytes > self.max_header_bytes:
            self.refuse(431, "The request's headers are too large (DUET_MAX_HEADER_BYTES).")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.header_deadline is None:  # a later request on a kept-open connection
            # It began in the data being parsed, all of which counts: where in it the request
            # starts is not known here, and leaving it out would let the first read of every
            # later request past the size limit (and make a slow one look like one that sent
            # nothing, closed without its 408).
            self.header_bytes = self.bytes_being_read
            self.await_headers()

    def on_headers_complete(self) -> None:
        self.stop_waiting()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_waiting()
        super().connection_lost(exc)

    def await_headers(self) -> None:
        self.header_deadline = self.loop.call_later(self.header_timeout, self.headers_too_slow)

    def stop_waiting(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def headers_too_slow(self) -> None:
        self.header_deadline = None
        if self.header_bytes == 0:
            self.transport.close()
            return
        self.refuse(408, "The request's headers did not arrive in time (DUET_HEADER_TIMEOUT).")

    def refuse(self, status: int, message: str) -> None:
        self.stop_waiting()
        if self.transport.is_closing():
            return
        # Only between responses: an answer still being written on this connection (an
        # earlier, pipelined request) must not get these bytes in the middle of it.
        if self.cycle is None or self.cycle.response_complete:
            body = message.encode("ascii")
            self.transport.write(
                STATUS_LINE[status]
                + b"content-type: text/plain; charset=utf-8\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
        self.transport.close()


def bounded_headers(settings: Settings) -> type[BoundedHeaders]:
    return type(
        "BoundedHeaders",
        (BoundedHeaders,),
        {
            "header_timeout": settings.header_timeout,
            "max_header_bytes": settings.max_header_bytes,
        },
    )


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config's keyword arguments for the limits the settings give the server."""
    return {
        "http": bounded_headers(settings),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
    }


def serve(host: str | None = None, port: int | None = None) -> int:
    settings = Settings.from_env()
    # The address given on the command line is the one the mode check must judge.
    settings = replace(settings, host=host or settings.host, port=port or settings.port)
    # Before uvicorn starts: a mode this address may not run in, or a database it cannot use,
    # is then one line saying what to do, not the traceback of a failed start-up.
    try:
        app = create_app(settings)
        open_database(settings.database).close()
    except (ModeError, StorageError) as error:
        print(f"duet serve: {error}", file=sys.stderr)
        return 1
    # No gzip, HTTP/1.1 keep-alive: streams go out as they are written.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        **server_options(settings),
    )
    return 0
