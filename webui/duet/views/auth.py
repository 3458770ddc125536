"""Signing in and out, the first admin's setup, and a person's own account (password, sessions).

These pages are reached without a session (a router without MEMBERS_ONLY); each one checks
what it needs itself. Every form here is a POST covered by the cross-site check like any other,
so no other site can sign a person in or out (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from duet.auth.accounts import make_first_admin, new_account_problem, new_password_problem
from duet.auth.passwords import hash_password, verify_password
from duet.auth.sessions import clear_cookie, set_cookie, start_session
from duet.auth.throttle import Throttle
from duet.store import sessions, users
from duet.store.db import transaction
from duet.views.deps import AppSettings, CurrentActor, Db, render
from duet.views.errors import NotAllowed, UserError, safe_next
from duet.views.forms import read_form, text_field

router = APIRouter()
log = logging.getLogger(__name__)

SETUP_KEY = "setup_token_sha256"


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str = "text"
    autocomplete: str = "off"
    value: str = ""
    autofocus: bool = False


def form_page(
    request: Request, heading: str, action: str, fields: list[Field], submit: str, **extra: Any
) -> HTMLResponse:
    status = extra.pop("status_code", 200)
    context = {
        "heading": heading,
        "action": action,
        "fields": fields,
        "submit": submit,
        "hidden": extra.pop("hidden", {}),
        "message": extra.pop("message", None),
        "intro": extra.pop("intro", None),
        "footer": extra.pop("footer", None),
    }
    return render(request, "account_form.html", context, status_code=status)


def throttle_of(request: Request) -> Throttle:
    return request.app.state.signin_throttle  # type: ignore[no-any-return]


def signin_fields(name: str = "") -> list[Field]:
    return [
        Field("name", "Name", autocomplete="username", value=name, autofocus=not name),
        Field("password", "Password", "password", "current-password", autofocus=bool(name)),
    ]


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, actor: CurrentActor) -> Response:
    back = safe_next(request.query_params.get("next"))
    if actor.signed_in:
        return RedirectResponse(back, status_code=303)
    return form_page(
        request, "Sign in", "/signin", signin_fields(), "Sign in", hidden={"next": back}
    )


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, db: Db, settings: AppSettings) -> Response:
    form = await read_form(request)
    name = text_field(form, "name").strip()
    password = text_field(form, "password")
    back = safe_next(text_field(form, "next"))
    address = request.client.host if request.client else ""
    account_key, address_key = f"name:{name.lower()}", f"address:{address}"
    throttle = throttle_of(request)

    def refused(message: str, status: int) -> HTMLResponse:
        return form_page(
            request, "Sign in", "/signin", signin_fields(name), "Sign in",
            hidden={"next": back}, message=message, status_code=status,
        )  # fmt: skip

    wait = throttle.wait_seconds(account_key, address_key)
    if wait:
        minutes = max(1, round(wait / 60))
        return refused(
            f"Too many wrong passwords. Wait {minutes} minute{'s' * (minutes != 1)} and try again.",
            429,
        )
    user = users.find_user(db, name) if name else None
    # The same work, and the same answer, for an unknown name and a wrong password.
    valid = await verify_password(user.password_hash if user else None, password)
    if user is None or not valid or user.disabled:
        throttle.failed(account_key, address_key)
        return refused("That name and password do not match an account.", 401)
    throttle.succeeded(account_key)
    token = start_session(db, user, settings, request)
    response = RedirectResponse(back, status_code=303)
    set_cookie(response, token, request, settings)
    return response


@router.post("/signout")
async def signout(request: Request, db: Db, actor: CurrentActor) -> Response:
    if actor.session_id is not None:
        sessions.delete_session(db, actor.session_id)
    response = RedirectResponse("/signin", status_code=303)
    if request.headers.get("HX-Request") == "true":
        response = Response(status_code=200, headers={"HX-Redirect": "/signin"})
    clear_cookie(response)
    return response


@router.get("/waiting", response_class=HTMLResponse)
async def waiting(request: Request, actor: CurrentActor) -> Response:
    if actor.role != "pending":
        return RedirectResponse("/", status_code=303)
    return render(request, "waiting.html", {"name": actor.name})


def new_setup_token(db: sqlite3.Connection) -> str:
    """A one-time token for /setup, kept hashed; the server prints the link to its log."""
    token = secrets.token_urlsafe(24)
    users.set_instance_value(db, SETUP_KEY, hashlib.sha256(token.encode()).hexdigest())
    return token


def setup_token_valid(db: sqlite3.Connection, token: str) -> bool:
    expected = users.instance_value(db, SETUP_KEY)
    given = hashlib.sha256(token.encode()).hexdigest()
    return expected is not None and hmac.compare_digest(expected, given)


def setup_fields(name: str = "") -> list[Field]:
    return [
        Field("name", "Your name", autocomplete="username", value=name, autofocus=True),
        Field("password", "Password", "password", "new-password"),
        Field("repeat", "The password again", "password", "new-password"),
    ]


@router.get("/setup", response_class=HTMLResponse)
async def setup_page(request: Request, db: Db) -> Response:
    token = request.query_params.get("token", "")
    if users.accounts_exist(db) or not setup_token_valid(db, token):
        raise UserError(404, "This setup link has been used, or it is not one.")
    return form_page(
        request,
        "Set up Duet",
        "/setup",
        setup_fields(),
        "Create the first admin",
        hidden={"token": token},
        intro="Make the first account. It administers this Duet: it approves the others.",
    )


@router.post("/setup", response_class=HTMLResponse)
async def setup(request: Request, db: Db, settings: AppSettings) -> Response:
    form = await read_form(request)
    token = text_field(form, "token")
    name = text_field(form, "name").strip()
    password, repeat = text_field(form, "password"), text_field(form, "repeat")
    if users.accounts_exist(db) or not setup_token_valid(db, token):
        raise UserError(404, "This setup link has been used, or it is not one.")
    problem = new_account_problem(name, password, repeat, settings.min_password_length)
    if problem:
        return form_page(
            request, "Set up Duet", "/setup", setup_fields(name), "Create the first admin",
            hidden={"token": token}, message=problem, status_code=422,
        )  # fmt: skip
    password_hash = await hash_password(password)
    with transaction(db):
        # Checked again inside the transaction: two setups at once make one admin.
        if users.accounts_exist(db):
            raise UserError(404, "This setup link has been used.")
        user = make_first_admin(db, name, password_hash)
        users.set_instance_value(db, SETUP_KEY, None)
    log.info("the first admin, %s, was created through the setup link", user.name)
    response = RedirectResponse("/", status_code=303)
    set_cookie(response, start_session(db, user, settings, request), request, settings)
    return response


def password_fields() -> list[Field]:
    return [
        Field("current", "Current password", "password", "current-password", autofocus=True),
        Field("password", "New password", "password", "new-password"),
        Field("repeat", "The new password again", "password", "new-password"),
    ]


@router.get("/account/password", response_class=HTMLResponse)
async def password_page(request: Request, actor: CurrentActor) -> Response:
    if not actor.signed_in or actor.session_id is None:
        raise NotAllowed(401, "/signin", "Sign in to change your password.")
    if actor.role == "pending":
        raise NotAllowed(403, "/waiting", "Your account is waiting for an admin's approval.")
    intro = (
        "An admin reset your password: choose your own to go on."
        if (actor.must_change_password)
        else None
    )
    return form_page(
        request, "Change your password", "/account/password", password_fields(), "Change it",
        intro=intro,
    )  # fmt: skip


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(
    request: Request, db: Db, settings: AppSettings, actor: CurrentActor
) -> Response:
    """A new password ends every other session of the account (a stolen one among them)."""
    if not actor.signed_in or actor.session_id is None or actor.user_id is None:
        raise NotAllowed(401, "/signin", "Sign in to change your password.")
    if actor.role == "pending":
        raise NotAllowed(403, "/waiting", "Your account is waiting for an admin's approval.")
    form = await read_form(request)
    current = text_field(form, "current")
    password, repeat = text_field(form, "password"), text_field(form, "repeat")
    user = users.get_user(db, actor.user_id)
    assert user is not None
    problem = None
    if not await verify_password(user.password_hash, current):
        problem = "The current password is not right."
    else:
        problem = new_password_problem(password, repeat, settings.min_password_length)
    if problem:
        return form_page(
            request, "Change your password", "/account/password", password_fields(),
            "Change it", message=problem, status_code=422,
        )  # fmt: skip
    password_hash = await hash_password(password)
    with transaction(db):
        users.set_password(db, user.id, password_hash, must_change=False)
        sessions.delete_user_sessions(db, user.id, keep=actor.session_id)
    return RedirectResponse("/", status_code=303)
