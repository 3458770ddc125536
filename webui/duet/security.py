"""What keeps other web pages, other host names and greedy clients from driving Duet.

A server on 127.0.0.1 with no sign-in is still reachable from every page its user visits: a
page can make the browser POST to it (cross-site request forgery) and, by pointing its own
name at 127.0.0.1, read it as its own origin (DNS rebinding). These pure ASGI middleware stop
both, put the browser's own defences (CSP, framing, sniffing) on every response, and bound what
one request or one client may hold. They are pure ASGI on purpose: Starlette's
`BaseHTTPMiddleware` runs the app in a task of its own and hands its response through a
stream, which costs every answer event a hop.

`middleware(settings)` lists them in the order the app installs them, outermost first, with
the reason for that order. Their refusals have the shapes of `views/errors.py`: a `#flash`
fragment for htmx, plain text for a browser, JSON `{"error": ...}` for any other client.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from duet.settings import Settings

# Methods that change nothing in Duet; every other method is checked as state-changing.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Bind addresses that name no host a browser would put in its Host header.
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})

# A Host header: a bracketed IPv6 address or a name / IPv4 address, then an optional port.
HOST_HEADER = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")

DEFAULT_PORTS = {"http": "80", "https": "443"}

# Seconds a client refused for holding too many streams is asked to wait before trying again.
STREAMS_RETRY_AFTER_SECONDS = 5

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.encode("latin-1"), value.encode("latin-1"))
    for name, value in {
        # No inline script or style anywhere: an injected <script> or on* handler does not run.
        "content-security-policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'; object-src 'none'"
        ),
        # frame-ancestors for browsers that predate it: no other site frames Duet (clickjacking).
        "x-frame-options": "DENY",
        # A response is what its Content-Type says (an export is never run as a script).
        "x-content-type-options": "nosniff",
        # Conversation ids in URLs stay on this origin.
        "referrer-policy": "same-origin",
        # A page Duet opens, or that opens Duet, gets no handle on its window.
        "cross-origin-opener-policy": "same-origin",
        # Other sites cannot load Duet's responses as images, scripts or media either.
        "cross-origin-resource-policy": "same-origin",
    }.items()
)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case) in an ASGI scope, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def refusal(
    scope: Scope, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A short answer refusing a request, in the shape `views/errors.py` gives a `UserError`."""
    extra = dict(headers or {})
    if header(scope, b"hx-request") == "true":
        fragment = f'<p class="flash flash-error" role="alert">{html.escape(message)}</p>'
        extra.update({"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
        return HTMLResponse(fragment, status, headers=extra)
    if "text/html" in (header(scope, b"accept") or ""):
        return PlainTextResponse(message, status, headers=extra)
    return JSONResponse({"error": message}, status, headers=extra)


def host_name(value: str) -> str | None:
    """The host a Host header (or an allowed-hosts entry) names, lower case, without its port
    and trailing dot; None if it is not a host name or address."""
    match = HOST_HEADER.fullmatch(value.strip())
    if match is None:
        return None
    name = match["name"].lower().rstrip(".")
    return name or None


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The loopback names, `DUET_HOST` when it names one address, and `DUET_ALLOWED_HOSTS`."""
    names = set(LOOPBACK_HOSTS)
    entries = [entry.strip() for entry in settings.allowed_hosts.split(",") if entry.strip()]
    if settings.host not in WILDCARD_ADDRESSES:
        entries.append(settings.host)
    for entry in entries:
        name = host_name(bracketed(entry))
        if name is None:
            raise ValueError(f"DUET_ALLOWED_HOSTS: {entry!r} is not a host name or address")
        names.add(name)
    return frozenset(names)


def bracketed(entry: str) -> str:
    """An IPv6 address written bare (`::1`, as in DUET_HOST) in the brackets Host uses."""
    try:
        address = ipaddress.ip_address(entry)
    except ValueError:
        return entry
    return f"[{address}]" if address.version == 6 else entry


class CheckHost:
    """Refuse (400) a request whose Host header names no host this instance is reached by.

    Stops DNS rebinding: a page on evil.example points its name at 127.0.0.1 and then talks to
    Duet as its own origin, reading every conversation; each such request says
    `Host: evil.example`. Every route is covered, static files and errors included, because
    this runs before routing. Only the name is compared, not the port: the name is what the
    attacker controls, and the port in the Host header is the one the browser used, which
    differs from DUET_PORT behind Docker's published ports or `duet serve --port`.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = header(scope, b"host")
            if raw is None or host_name(raw) not in self.allowed:
                shown = "no Host header" if raw is None else f"the host name {raw[:100]!r}"
                message = (
                    f"Duet does not answer to {shown}. If this is how people reach it, add the "
                    "name to DUET_ALLOWED_HOSTS."
                )
                await refusal(scope, 400, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class CheckCrossSite:
    """Refuse (403) a state-changing request that a page of another origin had the browser send.

    Stops cross-site request forgery: a page the user merely visits auto-submits a form or
    sends a `no-cors` fetch to Duet (a message with max_tokens 32768, a rename, a delete). The
    rule is Go's `http.CrossOriginProtection`, which datasette adopted (datasette/csrf.py),
    after https://words.filippo.io/csrf/; it works with the same-origin page and htmx as they
    are, with no token in any form:

    - GET, HEAD and OPTIONS pass: no Duet route changes anything on them.
    - `Sec-Fetch-Site`, which browsers set and pages cannot: `same-origin` passes, and so does
      `none` (the user made the request from the browser itself: no page can cause it).
      `same-site` is refused as well as `cross-site`: another web server on the same machine
      or a sibling name is another site's code as far as Duet is concerned.
    - No `Sec-Fetch-Site` (browsers from before 2023): an `Origin` must be this request's own
      scheme, host and port; `Origin: null` (sandboxed frames, some redirects) is refused.
    - Neither header: no browser sent it (curl, a script), so no page can have caused it.

    An `Authorization` header exempts nothing: datasette exempted Bearer requests and later had
    to close the hole a Bearer header plus the browser's cookie opened (commit 028cc244). A
    script with a token sends neither browser header and passes anyway.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = cross_site_reason(scope)
            if reason is not None:
                message = f"Refused: this request came from another site ({reason})."
                await refusal(scope, 403, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def cross_site_reason(scope: Scope) -> str | None:
    """Why a state-changing request is cross-site, or None if it is not (see CheckCrossSite)."""
    fetch_site = header(scope, b"sec-fetch-site")
    if fetch_site is not None:
        if fetch_site in ("same-origin", "none"):
            return None
        return f"Sec-Fetch-Site: {fetch_site[:40]}"
    origin = header(scope, b"origin")
    if origin is None:
        return None
    own = own_origin(scope)
    if own is not None and normalized_origin(origin) == own:
        return None
    return f"Origin {origin[:100]!r} is not {own or 'this server'}"


def own_origin(scope: Scope) -> str | None:
    """scheme://host[:port] of the request itself, as a browser's Origin header writes it."""
    host = header(scope, b"host")
    return None if host is None else normalized_origin(f"{scope['scheme']}://{host}")


def normalized_origin(origin: str) -> str:
    """An origin in lower case without the default port of its scheme."""
    scheme, _, authority = origin.strip().lower().partition("://")
    default = DEFAULT_PORTS.get(scheme)
    if default is not None and authority.endswith(":" + default):
        authority = authority.removesuffix(":" + default)
    return f"{scheme}://{authority}"


# Pages and fragments are never kept by the browser or a proxy: they hold a person's
# conversations, and Back after signing out must not show them from a cache (no-store also keeps
# such pages out of the back-forward cache). The page's own static files may be cached.
NOT_STORED: tuple[tuple[bytes, bytes], ...] = ((b"cache-control", b"no-store"),)
STATIC_PREFIX = "/static/"


class SecurityHeaders:
    """Put the browser's defences on every response that passes through, streams included.

    Stops what the browser can stop: injected script or style running (a CSP with no inline
    anything), Duet loading inside another site's frame (clickjacking), a response sniffed as
    another type, conversation URLs leaking in Referer, other sites holding a window on Duet or
    loading its responses. The headers are added to the response's start message only (a
    header a route set itself is left as it is); the body goes through untouched, unbuffered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        wanted = SECURITY_HEADERS
        if not scope["path"].startswith(STATIC_PREFIX):
            wanted = SECURITY_HEADERS + NOT_STORED

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name for name, _ in headers}  # lower case, as ASGI has them
                headers += [pair for pair in wanted if pair[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyRefused(Exception):
    """Raised into the app from `receive` when LimitBody stops reading a body."""


class LimitBody:
    """Refuse a request body over `max_bytes` (413) or slower than `timeout` seconds (408),
    holding no more than the limit in memory.

    Stops a client (or a cross-site form) from making the server read and hold a body of any
    size, and a slow client from holding a request open while its body trickles in. A declared
    `Content-Length` over the limit is refused before the app runs or a byte of the body is
    read. A body without one (chunked) is counted as it arrives, and reading stops at the chunk
    that passes the limit. Either way the refusal closes the connection, so the client stops
    sending. The timeout counts from when the request reached the app to its body's last byte.

    Starlette's own `max_body_size` is not used: it lets a route that does not read its body
    run to the end before refusing it, and has no timeout.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is None and header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)  # no body (RFC 9112, section 6.3)
            return
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            await self.refuse(scope, receive, send, 400, "Content-Length must be a number.")
            return
        if declared is not None and int(declared) > self.max_bytes:
            message = f"The request body is {int(declared):,} bytes; {self.over_limit()}"
            await self.refuse(scope, receive, send, 413, message)
            return

        received = 0
        body_done = False
        refused: Response | None = None
        response_started = False
        # One timer for the whole body rather than a timeout scope around each receive: this
        # is on the way to every engine request, and a scope per call costs several times
        # what the rest of these checks do.
        waiting: asyncio.Task[Any] | None = None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            if waiting is not None:
                waiting.cancel()

        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + self.timeout, expire)

        async def limited_receive() -> Message:
            nonlocal received, body_done, refused, waiting
            if body_done:
                return await receive()  # from now on only http.disconnect comes
            if refused is None and expired:
                refused = self.refusal(scope, 408, self.too_slow())
            if refused is not None:
                raise BodyRefused
            task = waiting = asyncio.current_task()
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not expired or task is None:
                    raise
                task.uncancel()
                refused = self.refusal(scope, 408, self.too_slow())
                raise BodyRefused from None
            finally:
                waiting = None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if body_done:
                    timer.cancel()
                if received > self.max_bytes:
                    refused = self.refusal(scope, 413, f"The request body is {self.over_limit()}")
                    raise BodyRefused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused is not None and not response_started:
                return  # the refusal answers instead of whatever the app makes of it
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # The app may let BodyRefused through or turn it into an error of its own.
            if refused is None or response_started:
                raise
        finally:
            timer.cancel()
        if refused is not None and not response_started:
            await refused(scope, receive, send)

    def over_limit(self) -> str:
        return f"over the limit of {self.max_bytes:,} bytes (DUET_MAX_BODY_BYTES)."

    def too_slow(self) -> str:
        return (
            f"The request body did not arrive within {self.timeout:g} s "
            "(DUET_BODY_TIMEOUT); send it again."
        )

    def refusal(self, scope: Scope, status: int, message: str) -> Response:
        # The rest of the body is never read: closing the connection stops the client sending.
        return refusal(scope, status, message, {"Connection": "close"})

    async def refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str
    ) -> None:
        await self.refusal(scope, status, message)(scope, receive, send)


def is_event_stream(scope: Scope) -> bool:
    """Duet's long-lived responses are its event streams, each at a path ending in /stream (a
    test holds every route that returns an event stream to that)."""
    return scope["path"].endswith("/stream")


class LimitStreams:
    """Refuse (429, with Retry-After) an event stream beyond `limit` open at once from one
    client address.

    Stops one client (a script, a page reloading in a loop) from holding every connection and
    task the server has: an open stream lasts as long as its answer, and an answer can last
    minutes. A browser opens at most six connections to a server, so the limit leaves every
    tab a person has open its streams.
    """

    def __init__(
        self, app: ASGIApp, limit: int, is_stream: Callable[[Scope], bool] = is_event_stream
    ) -> None:
        self.app = app
        self.limit = limit
        self.is_stream = is_stream
        self.open: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_stream(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else ""
        count = self.open.get(address, 0)
        if count >= self.limit:
            message = (
                f"Too many answer streams are open from your address ({self.limit}, "
                "DUET_MAX_STREAMS_PER_CLIENT): close a tab, or wait for an answer to end."
            )
            headers = {"Retry-After": str(STREAMS_RETRY_AFTER_SECONDS)}
            await refusal(scope, 429, message, headers)(scope, receive, send)
            return
        self.open[address] = count + 1
        try:
            await self.app(scope, receive, send)
        finally:
            remaining = self.open[address] - 1
            if remaining:
                self.open[address] = remaining
            else:
                del self.open[address]


def middleware(settings: Settings) -> list[Middleware]:
    """Every layer above, outermost first (for `FastAPI(middleware=...)`; `add_middleware`
    takes them in reverse). `SecurityHeaders` outside the rest, so that their refusals carry
    the headers too. The host check next: a request for a foreign name learns nothing, not even
    whether its origin or its body would have passed. The cross-site check before the body
    limit: a forged request is refused without a byte of its body read. Streams last, so that
    only requests Duet will serve are counted."""
    return [
        Middleware(SecurityHeaders),
        Middleware(CheckHost, allowed=allowed_hosts(settings)),
        Middleware(CheckCrossSite),
        Middleware(LimitBody, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout),
        Middleware(LimitStreams, limit=settings.max_streams_per_client),
    ]
