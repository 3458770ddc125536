"""The API key pages: one's own keys at /account/keys (made there, each shown once, listed with
its last use, revoked), and every key's metadata at /admin/api-keys for admins, who can revoke
any key but never see one.

In local mode the local user has the same page: `/v1` takes a key there too. Each action
answers with the page's panel for htmx, or the whole page for a plain form post (so that a key
shown once is not lost to a redirect).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from duet.api import keys
from duet.api.models import model_id, served_models
from duet.auth.sessions import iso
from duet.store import api_keys
from duet.views.accounts import require_accounts
from duet.views.deps import MEMBERS_ONLY, Admin, AppSettings, Db, Engines, UserId, render
from duet.views.errors import UserError
from duet.views.forms import parse_checkbox, parse_integer, read_form, text_field
from duet.views.params import MAX_ID, AsciiDigits

router = APIRouter(dependencies=MEMBERS_ONLY)

KeyId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="an API key's id")]


def htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def own_keys_page(
    request: Request,
    db: sqlite3.Connection,
    user_id: int,
    models: list[str],
    notice: str | None = None,
    token: str | None = None,
) -> HTMLResponse:
    context: dict[str, Any] = {
        "keys": api_keys.list_keys(db, user_id),
        "models": models,
        "notice": notice,
        "token": token,
        "now": iso(datetime.now(UTC)),
        "max_expiry_days": keys.MAX_EXPIRY_DAYS,
        "base_url": str(request.base_url).rstrip("/") + "/v1",
        "current_page": "api keys",
        "clear_flash": htmx(request),
    }
    template = "_api_keys_panel.html" if htmx(request) else "api_keys.html"
    return render(request, template, context)


async def model_names(engines: Engines) -> list[str]:
    return [model_id(engine, model) for engine, model in await served_models(engines)]


@router.get("/account/keys", response_class=HTMLResponse)
async def keys_page(request: Request, db: Db, engines: Engines, user_id: UserId) -> Response:
    return own_keys_page(request, db, user_id, await model_names(engines))


@router.post("/account/keys", response_class=HTMLResponse)
async def create_key(request: Request, db: Db, engines: Engines, user_id: UserId) -> Response:
    """A new key, shown this once. Leaving every model unticked allows them all."""
    form = await read_form(request)
    name = text_field(form, "name").strip()
    expires_days = None
    if text_field(form, "expires_days").strip():
        expires_days = parse_integer(
            form, "expires_days", "The expiry in days", 1, keys.MAX_EXPIRY_DAYS
        )
    problem = keys.key_problem(name, expires_days)
    if problem:
        raise UserError(422, problem)
    models = await model_names(engines)
    chosen = tuple(value for value in form.getlist("models") if isinstance(value, str))
    unknown = [model for model in chosen if model not in models]
    if unknown:
        raise UserError(422, f"No engine serves {unknown[0][:100]!r} now: choose from the list.")
    keep = parse_checkbox(form, "keep_history")
    made = keys.create_key(
        db, user_id, name, chosen or None, expires_days, datetime.now(UTC), keep_history=keep
    )
    notice = f"The key {made.key.name!r}, shown this once: copy it now."
    return own_keys_page(request, db, user_id, models, notice, made.token)


@router.post("/account/keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke_own_key(
    request: Request, db: Db, engines: Engines, user_id: UserId, key_id: KeyId
) -> Response:
    if not api_keys.revoke_key(db, key_id, iso(datetime.now(UTC)), user_id=user_id):
        raise UserError(404, "That API key was not found, or it is revoked already.")
    models = await model_names(engines)
    return own_keys_page(request, db, user_id, models, "The key is revoked: it works no more.")


def every_key_page(
    request: Request, db: sqlite3.Connection, notice: str | None = None
) -> HTMLResponse:
    context = {
        "keys": api_keys.list_all_keys(db),
        "notice": notice,
        "now": iso(datetime.now(UTC)),
        "clear_flash": htmx(request),
    }
    template = "_admin_api_keys_panel.html" if htmx(request) else "admin_api_keys.html"
    return render(request, template, context)


@router.get("/admin/api-keys", response_class=HTMLResponse)
async def admin_keys_page(
    request: Request, db: Db, settings: AppSettings, admin: Admin
) -> Response:
    require_accounts(settings)
    return every_key_page(request, db)


@router.post("/admin/api-keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke_any_key(
    request: Request, db: Db, settings: AppSettings, admin: Admin, key_id: KeyId
) -> Response:
    require_accounts(settings)
    if not api_keys.revoke_key(db, key_id, iso(datetime.now(UTC)), user_id=None):
        raise UserError(404, "That API key was not found, or it is revoked already.")
    return every_key_page(request, db, "The key is revoked: it works no more.")
