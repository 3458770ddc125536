"""The chat app (or any ASGI app) under uvicorn on a loopback port, in a thread, for tests that
talk to it over HTTP or through a browser.

A thread and not the test's event loop: the browser tests' loop belongs to Playwright, and a
server sharing it would be paced by the browser (and the other way round).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from down_engine import closed_port
from duet.app import create_app
from duet.engines.base import Engine
from duet.settings import Settings

START_SECONDS = 15.0


@dataclass(frozen=True)
class RunningApp:
    url: str
    database: Path


@contextmanager
def serve_app(engines: Mapping[str, Engine], database: Path) -> Iterator[RunningApp]:
    """Run the app with `engines` and a SQLite file at `database` until the block ends."""
    app = create_app(Settings(), engines=engines, database=database)
    with serve_asgi(app) as url:
        yield RunningApp(url, database)


@contextmanager
def serve_asgi(app: Any, **options: Any) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port until the block ends; yields its base URL.
    `options` go to uvicorn.Config (as `duet.server.server_options` gives them)."""
    port = closed_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"asgi-app-{port}")
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
