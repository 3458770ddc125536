"""Errors a person can act on: one exception type, rendered the same way for every page.

A view raises `UserError(status, message)`; the handler answers with that status and, for htmx,
a fragment swapped into the page's `#flash` region (the form that failed is left untouched, so
nothing typed is lost); a browser loading a page gets an error page, any other client JSON.
"""

from __future__ import annotations

import logging
import sqlite3
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from duet.limits import OverLimit
from duet.store import describe_storage_error, display_path

log = logging.getLogger(__name__)


class UserError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotAllowed(Exception):
    """The actor may not be here yet: `go_to` is where they can go on (sign in, wait for
    approval). A page load is redirected there and comes back after; htmx is told to go there;
    any other client gets the status and the message."""

    def __init__(self, status: int, go_to: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.go_to = go_to
        self.message = message


def not_found(what: str) -> UserError:
    return UserError(404, f"{what} was not found (it may have been deleted).")


async def handle_user_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, UserError)
    templates = request.app.state.templates
    if request.headers.get("HX-Request") != "true":
        if "text/html" in request.headers.get("accept", ""):
            return templates.TemplateResponse(
                request, "error.html", {"message": error.message}, status_code=error.status
            )
        return JSONResponse({"error": error.message}, status_code=error.status)
    return templates.TemplateResponse(
        request,
        "_flash.html",
        {"message": error.message, "kind": "error"},
        status_code=error.status,
        headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
    )


async def handle_over_limit(request: Request, error: Exception) -> Response:
    """A user over one of their limits (`duet.limits`): 429, told like any other refusal, with
    the seconds to wait in Retry-After."""
    assert isinstance(error, OverLimit)
    response = await handle_user_error(request, UserError(429, error.message))
    response.headers["Retry-After"] = str(error.retry_after)
    return response


async def handle_validation_error(request: Request, error: Exception) -> Response:
    """FastAPI's checks of path and query parameters, told like any other bad input."""
    assert isinstance(error, RequestValidationError)
    problems = []
    for problem in error.errors():
        where = ".".join(
            str(part) for part in problem.get("loc", ()) if part not in {"path", "query"}
        )
        # A check of Duet's own (a BeforeValidator) reads "Value error, <its message>".
        text = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{where}: {text}" if where else text)
    message = "Bad request: " + "; ".join(problems) + "."
    return await handle_user_error(request, UserError(422, message))


async def handle_storage_error(request: Request, error: Exception) -> Response:
    """The database refused a read or write: say so, with its path and the cause, as a 503
    (the request was fine; the server cannot keep it right now)."""
    assert isinstance(error, sqlite3.Error)
    path = request.app.state.database_path
    log.error("database error on %s %s: %s", request.method, request.url.path, error)
    message = (
        f"Duet could not use its database {display_path(path)}: "
        f"{describe_storage_error(error)}. Nothing was changed; try again once it is fixed."
    )
    return await handle_user_error(request, UserError(503, message))


async def handle_not_allowed(request: Request, error: Exception) -> Response:
    assert isinstance(error, NotAllowed)
    if request.headers.get("HX-Request") == "true":
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        back = current.path + (f"?{current.query}" if current.query else "")
        target = with_next(error.go_to, back or "/")
        return Response(status_code=error.status, headers={"HX-Redirect": target})
    wants_page = "text/html" in request.headers.get("accept", "")
    if request.method in {"GET", "HEAD"} and wants_page:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(with_next(error.go_to, back), status_code=303)
    return JSONResponse({"error": error.message}, status_code=error.status)


def with_next(go_to: str, back: str) -> str:
    """`go_to`, told where to come back to (a path on this site only)."""
    if not back.startswith("/") or back.startswith("//") or back == go_to:
        return go_to
    return f"{go_to}?{urlencode({'next': back})}"


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw
