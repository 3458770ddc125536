"""HTTP/1.1 over a bare socket, for tests of what a client library would not send: headers
that trickle in, a body that never comes, a Content-Length the client never means to meet."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout)
    sock.settimeout(timeout)
    return sock


def read_response(sock: socket.socket) -> RawResponse | None:
    """One response with a Content-Length body, or None if the server closed the connection
    without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed its side (reads give end of file or a reset)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
