"""Errors a person can act on: one exception type, rendered the same way for every page.

A view raises `UserError(status, message)`; the handler answers with that status and, for htmx,
a fragment swapped into the page's `#flash` region (the form that failed is left untouched, so
nothing typed is lost); a browser loading a page gets an error page, any other client JSON.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response


class UserError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
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
