"""Coming in, and one's own account: /signup (when an admin opened it), /invite/{token} (an
admin's one-time link), and /account (a person's own sessions, any of which they can end).

/signup and /invite are reached without a session, so `router` has no MEMBERS_ONLY and each
route checks what it needs itself; /account is for members (`members`, with MEMBERS_ONLY).
Every form is a POST covered by the cross-site check, so no other site can make an account in
someone's browser. All of it exists in accounts mode only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from duet.auth import accounts
from duet.auth.accounts import AccountError
from duet.auth.actors import Actor
from duet.auth.passwords import hash_password
from duet.auth.sessions import clear_cookie, set_cookie, start_session
from duet.settings import Settings
from duet.store import sessions
from duet.store.users import User
from duet.views.auth import form_page, setup_fields
from duet.views.deps import MEMBERS_ONLY, AppSettings, CurrentActor, Db, UserId, render
from duet.views.errors import UserError
from duet.views.forms import read_form, text_field
from duet.views.params import MAX_ID, AsciiDigits

router = APIRouter()
members = APIRouter(dependencies=MEMBERS_ONLY)

SessionId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="a session's id")]
# An invite's token as `create_invite` makes it (43 URL-safe characters); anything longer is
# refused before it is hashed.
InviteToken = Annotated[str, Path(min_length=1, max_length=100, description="an invite token")]


def require_accounts(settings: Settings) -> None:
    if settings.mode != "accounts":
        raise UserError(
            404,
            "Accounts are off: this Duet runs in local mode (DUET_MODE=local), with no sign-in.",
        )


@contextmanager
def as_user_error() -> Iterator[None]:
    """An account change that cannot be made, told like any other refusal."""
    try:
        yield
    except AccountError as error:
        raise UserError(error.status, error.message) from None


def signed_in_as(request: Request, user: User, settings: Settings, go_to: str) -> Response:
    """Start a session for a new account and go on to `go_to` with its cookie."""
    token = start_session(request.app.state.db, user, settings, request)
    response = RedirectResponse(go_to, status_code=303)
    set_cookie(response, token, request, settings)
    return response


SIGNUP_INTRO = "An admin approves new accounts: once you have signed up, you wait for them."


def closed(request: Request) -> HTMLResponse:
    message = "Signing up is closed on this Duet: an admin makes accounts or sends invite links."
    return render(request, "account_notice.html", {"heading": "Sign up", "message": message}, 403)


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(
    request: Request, db: Db, settings: AppSettings, actor: CurrentActor
) -> Response:
    require_accounts(settings)
    if actor.signed_in:
        return RedirectResponse("/", status_code=303)
    if accounts.signup_policy(db) != "open":
        return closed(request)
    return form_page(
        request, "Sign up", "/signup", setup_fields(), "Sign up", intro=SIGNUP_INTRO,
        footer="Have an account? Sign in at /signin.",
    )  # fmt: skip


@router.post("/signup", response_class=HTMLResponse)
async def signup(request: Request, db: Db, settings: AppSettings) -> Response:
    """A new account, `pending` until an admin approves it: signed in, it sees /waiting only."""
    require_accounts(settings)
    if accounts.signup_policy(db) != "open":
        return closed(request)
    form = await read_form(request)
    name = text_field(form, "name").strip()
    password, repeat = text_field(form, "password"), text_field(form, "repeat")

    def refused(message: str, status: int) -> HTMLResponse:
        return form_page(
            request, "Sign up", "/signup", setup_fields(name), "Sign up", intro=SIGNUP_INTRO,
            message=message, status_code=status,
        )  # fmt: skip

    problem = accounts.new_account_problem(name, password, repeat, settings.min_password_length)
    if problem:
        return refused(problem, 422)
    password_hash = await hash_password(password)
    try:
        user = accounts.create_account(db, name, password_hash, "pending")
    except AccountError as error:
        return refused(error.message, error.status)
    return signed_in_as(request, user, settings, "/waiting")


def invite_form(
    request: Request, token: str, name: str = "", message: str | None = None, status: int = 200
) -> HTMLResponse:
    return form_page(
        request, "Join Duet", f"/invite/{token}", setup_fields(name), "Make my account",
        intro="An admin invited you: choose your name and password. The link works once.",
        message=message, status_code=status,
    )  # fmt: skip


@router.get("/invite/{token}", response_class=HTMLResponse)
async def invite_page(
    request: Request, db: Db, settings: AppSettings, token: InviteToken
) -> Response:
    require_accounts(settings)
    with as_user_error():
        accounts.open_invite(db, token, datetime.now(UTC))
    return invite_form(request, token)


@router.post("/invite/{token}", response_class=HTMLResponse)
async def accept_invite(
    request: Request, db: Db, settings: AppSettings, token: InviteToken
) -> Response:
    require_accounts(settings)
    with as_user_error():
        accounts.open_invite(db, token, datetime.now(UTC))
    form = await read_form(request)
    name = text_field(form, "name").strip()
    password, repeat = text_field(form, "password"), text_field(form, "repeat")
    problem = accounts.new_account_problem(name, password, repeat, settings.min_password_length)
    if problem:
        return invite_form(request, token, name, problem, 422)
    password_hash = await hash_password(password)
    try:
        # The hash took a while: the invite is checked again as it is spent.
        user = accounts.accept_invite(db, token, name, password_hash, datetime.now(UTC))
    except AccountError as error:
        if error.status == 404:
            raise UserError(404, error.message) from None
        return invite_form(request, token, name, error.message, error.status)
    return signed_in_as(request, user, settings, "/")


@members.get("/account", response_class=HTMLResponse)
async def account_page(
    request: Request, db: Db, settings: AppSettings, actor: CurrentActor, user_id: UserId
) -> Response:
    require_accounts(settings)
    return render(request, "account.html", account_context(db, settings, actor, user_id))


def account_context(
    db: sqlite3.Connection, settings: Settings, actor: Actor, user_id: int
) -> dict[str, Any]:
    return {
        "actor": actor,
        "sessions": accounts.live_sessions(db, settings, user_id),
        "current_session": actor.session_id,
    }


@members.post("/account/sessions/{session_id}/end", response_class=HTMLResponse)
async def end_own_session(
    request: Request,
    db: Db,
    settings: AppSettings,
    actor: CurrentActor,
    user_id: UserId,
    session_id: SessionId,
) -> Response:
    """End one of one's own sessions (another's is not found); ending the one in use signs
    out."""
    require_accounts(settings)
    if not sessions.delete_session(db, session_id, user_id=user_id):
        raise UserError(404, "That session was not found (it may have ended already).")
    if session_id == actor.session_id:
        response: Response = RedirectResponse("/signin", status_code=303)
        if request.headers.get("HX-Request") == "true":
            response = Response(status_code=200, headers={"HX-Redirect": "/signin"})
        clear_cookie(response)
        return response
    context = account_context(db, settings, actor, user_id)
    if request.headers.get("HX-Request") == "true":
        return render(request, "_account_sessions.html", context)
    return RedirectResponse("/account", status_code=303)
