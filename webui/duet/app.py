"""The app factory: settings, store, engines and routers, put together.

Tests call `create_app` with their own settings, a temporary database and the engines they want;
`duet serve` calls it with settings from the environment and the engines those describe.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware import Middleware

from duet import filters, security
from duet.api import pages as api_pages
from duet.api import routes as api_routes
from duet.api.errors import ApiError, handle_api_error
from duet.auth.mode import check_mode
from duet.auth.throttle import Throttle
from duet.compare import CompareRuns
from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.generation import Generations
from duet.limits import Limits, OverLimit
from duet.load_sweeps import LoadSweeps
from duet.metrics.prometheus import Telemetry, instrument
from duet.settings import Settings
from duet.store import StorageError, open_database, trash, users
from duet.store.checkpoints import Checkpointer, hand_over_checkpoints
from duet.tasks import start_task
from duet.views import accounts as accounts_views
from duet.views import admin as admin_views
from duet.views import admin_limits as admin_limits_views
from duet.views import answer_versions as answer_versions_views
from duet.views import auth as auth_views
from duet.views import chat, context_use, health, history, tabs
from duet.views import compare as compare_views
from duet.views import load as load_views
from duet.views import runs as runs_views
from duet.views import shares as share_views
from duet.views import trash as trash_views
from duet.views.deps import StampReceipt
from duet.views.errors import (
    NotAllowed,
    UserError,
    handle_not_allowed,
    handle_over_limit,
    handle_storage_error,
    handle_user_error,
    handle_validation_error,
)

PACKAGE_DIR = Path(__file__).parent

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    engines: Mapping[EngineName, Engine] | None = None,
    database: str | Path | None = None,
) -> FastAPI:
    """Build the app. `engines` defaults to those the settings describe (`build_engines`),
    `database` to `settings.database`. The database is opened and migrated when the app starts."""
    settings = settings or Settings.from_env()
    check_mode(settings)
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
        try:
            db = open_database(database_path)
        except StorageError as error:
            log.error("%s", error)
            raise
        app.state.db = db
        checkpointing = None
        if str(database_path) != ":memory:":
            # The log is copied back into the database in a worker thread, not in a commit on
            # the event loop (duet.store.checkpoints).
            hand_over_checkpoints(db)
            checkpointer = Checkpointer(database_path)
            checkpointing = start_task(checkpointer.run(), name="database checkpoints")
        app.state.generations = Generations(db)
        app.state.limits = Limits(db)
        app.state.load_sweeps = LoadSweeps(db, settings)
        # Conversations past their time in the trash go now, then every hour.
        trash.purge_expired(db, settings.trash_days)
        purging = start_task(trash.keep_purging(db, settings.trash_days), name="trash purge")
        app.state.compare_runs = CompareRuns(db)
        if settings.mode == "accounts" and not users.accounts_exist(db):
            announce_setup(db, settings)
        # Everything alive now (modules, the app, templates: tens of thousands of objects) lives
        # as long as the server, so the garbage collector's full passes need not walk it again
        # and again: while such a pass runs, every stream stands still.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            # A load sweep records what it measured while the database is open.
            await app.state.load_sweeps.shutdown()
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
            purging.cancel()
            if checkpointing is not None:
                await checkpointer.stop(checkpointing)
            db.close()

    # No OpenAPI schema or docs pages: the HTML routes are not an API, and a schema served to
    # anyone who asks maps every route for them.
    # One middleware stack for every request, outermost first: the receipt stamp, which starts
    # Duet's own clock for a request before any other work on it; then the checks and limits of
    # `duet.security`, in the order that module gives.
    stack = [Middleware(StampReceipt), *security.middleware(settings)]
    app = FastAPI(
        title="Duet",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        middleware=stack,
    )
    app.state.settings = settings
    app.state.database_path = database_path
    app.state.engines = instrumented_engines
    app.state.telemetry = telemetry
    app.state.templates = build_templates()
    app.state.signin_throttle = Throttle(settings.signin_attempts, settings.signin_window_seconds)
    app.add_exception_handler(UserError, handle_user_error)
    app.add_exception_handler(NotAllowed, handle_not_allowed)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(sqlite3.Error, handle_storage_error)
    app.add_exception_handler(OverLimit, handle_over_limit)
    app.add_exception_handler(ApiError, handle_api_error)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")
    # Pages for members (each router has MEMBERS_ONLY), then what is reached without a session.
    for area in (chat, history, health, compare_views, runs_views, share_views):
        app.include_router(area.router)
    app.include_router(trash_views.router)
    app.include_router(context_use.router)
    app.include_router(tabs.router)
    app.include_router(answer_versions_views.router)
    app.include_router(accounts_views.members)
    app.include_router(api_pages.router)
    app.include_router(admin_views.router)
    app.include_router(admin_limits_views.router)
    app.include_router(load_views.router)
    app.include_router(auth_views.router)
    app.include_router(accounts_views.router)
    app.include_router(health.metrics_router)
    # The OpenAI-compatible API: a Bearer key on every route (never a session cookie).
    app.include_router(api_routes.router)
    return app


def build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")
    filters.register(templates.env)
    return templates


def announce_setup(db: sqlite3.Connection, settings: Settings) -> None:
    """No one can sign in yet: print a one-time link that makes the first admin (never "the
    first to sign up wins" on an open network)."""
    token = auth_views.new_setup_token(db)
    host = settings.host if settings.host not in {"0.0.0.0", "::", ""} else "<this machine>"
    log.warning(
        "No accounts yet. Create the first admin at http://%s:%s/setup?token=%s "
        "(one use), or with: duet users create NAME --admin",
        host,
        settings.port,
        token,
    )
