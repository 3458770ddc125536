"""The app factory: settings, store, engines and routers, put together.

Tests call `create_app` with their own settings, a temporary database and the engines they want;
`duet serve` calls it with settings from the environment and the engines those describe.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import PlainTextResponse
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from duet import filters
from duet.compare import CompareRuns
from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.generation import Generations
from duet.metrics.prometheus import Telemetry, instrument
from duet.settings import Settings
from duet.store.db import open_database
from duet.views import chat, health, history
from duet.views import compare as compare_views
from duet.views import runs as runs_views
from duet.views.deps import RECEIVED_KEY, StampReceipt
from duet.views.errors import UserError, handle_user_error

PACKAGE_DIR = Path(__file__).parent

log = logging.getLogger(__name__)


class DuetApp(FastAPI):
    """FastAPI, with the views that start answers served ahead of its middleware.

    Everything between receiving a message and its engine request being on the wire is added to
    the answer's time to first token, and on a busy 2-core machine each layer of middleware
    costs several times what it costs in a loop (docs/benchmarks/relay.md). So a POST to one of
    `answer_routes` goes straight to its route, with what the middleware would have given it:
    the receipt stamp (`StampReceipt`), the app, and the app's exception handlers, which the
    route applies itself (a `UserError` is answered exactly as on any other route). An error
    no handler takes is answered with a plain 500 and raised to the server, as Starlette's
    outermost middleware does. Every other request goes through FastAPI as usual."""

    answer_routes: tuple[Route, ...] = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            received = time.perf_counter()
            for route in self.answer_routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope[RECEIVED_KEY] = received
                    await self.answer(route, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def answer(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        scope["router"] = self.router
        handlers = self.exception_handlers
        scope["starlette.exception_handlers"] = (
            {key: handler for key, handler in handlers.items() if not isinstance(key, int)},
            {key: handler for key, handler in handlers.items() if isinstance(key, int)},
        )
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await route.handle(scope, receive, sender)
        except Exception:
            if not started:
                await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise


def create_app(
    settings: Settings | None = None,
    engines: Mapping[EngineName, Engine] | None = None,
    database: str | Path | None = None,
) -> DuetApp:
    """Build the app. `engines` defaults to those the settings describe (`build_engines`),
    `database` to `settings.database`. The database is opened and migrated when the app starts."""
    settings = settings or Settings.from_env()
    if engines is None:
        from duet.engines import build_engines

        engines = build_engines(settings)
    database_path = database if database is not None else settings.database
    chosen_engines = engines
    # Every stream, chat or compare, is measured for /metrics on its way through.
    telemetry = Telemetry()
    instrumented_engines = instrument(engines, telemetry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = open_database(database_path)
        app.state.db = db
        app.state.generations = Generations(db)
        app.state.compare_runs = CompareRuns(db, app.state.generations)
        # Everything alive now (modules, the app, templates: ~70,000 objects) lives as long as
        # the server, so the garbage collector's full passes need not walk it again and again.
        # One such pass over it took ≈ 50 ms here, and while it runs every stream stands still.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            # Compare runs first: they must stop starting answers before generations shut down.
            await app.state.compare_runs.shutdown()
            # Answers still streaming are saved as interrupted before the database closes.
            await app.state.generations.shutdown()
            # Closing an adapter releases its HTTP client, which belongs to this app's event
            # loop; an adapter passed in by the caller stays usable (it opens a new client on
            # its next request, in whatever loop that runs).
            for engine in chosen_engines.values():
                try:
                    await engine.aclose()
                except Exception:
                    log.exception("closing %s", engine.name)
            db.close()

    app = DuetApp(title="Duet", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.engines = instrumented_engines
    app.state.telemetry = telemetry
    app.state.templates = build_templates()
    app.add_exception_handler(UserError, handle_user_error)
    app.add_middleware(StampReceipt)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")
    # The views that start answers: plain Starlette routes (views/deps.py, `AnsweringParts`),
    # served ahead of the middleware (`DuetApp`) and listed in the router too, so that they
    # appear wherever routes are looked up.
    app.answer_routes = (*chat.ANSWER_ROUTES, *compare_views.ANSWER_ROUTES)
    app.router.routes.extend(app.answer_routes)
    for area in (chat, history, health, compare_views, runs_views):
        app.include_router(area.router)
    return app


def build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")
    filters.register(templates.env)
    return templates
