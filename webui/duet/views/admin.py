"""The admin page: accounts (approve, reject, disable, promote, demote, reset a password,
create), invite links, the signup policy, who is signed in, and usage per user and engine.
The limits' forms are in views/admin_limits.py; this page shows them and the tokens chart.

Counts, never content: nothing here reads anyone's conversations. Every route takes `Admin`
(403 for anyone else; the router's MEMBERS_ONLY sends those not signed in or not approved
where they can go on). Each action answers with the page's panel, swapped in by htmx, or the
whole page for a plain form post; a refusal goes to the page's #flash region like any other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from duet import usage_chart
from duet.auth import accounts
from duet.auth.actors import Actor
from duet.auth.passwords import hash_password
from duet.auth.sessions import iso
from duet.settings import Settings
from duet.store import api_usage, invites, sessions, usage, user_limits, users
from duet.store.invites import INVITE_ROLES
from duet.store.users import User
from duet.views.accounts import SessionId, as_user_error, require_accounts
from duet.views.deps import MEMBERS_ONLY, Admin, AppSettings, Db, render
from duet.views.errors import UserError
from duet.views.forms import FormData, parse_integer, read_form, text_field
from duet.views.params import MAX_ID, AsciiDigits

router = APIRouter(prefix="/admin", dependencies=MEMBERS_ONLY)

AccountId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="an account's id")]
InviteId = Annotated[int, AsciiDigits, Path(ge=1, le=MAX_ID, description="an invite's id")]
USAGE_DAYS = 30
DEFAULT_INVITE_HOURS = 72
# The largest limit the forms take: past it, a limit is no limit in practice.
MAX_LIMIT = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Notice:
    """What an action did, for the admin; `secret` (a temporary password, an invite link) is
    shown this once and kept nowhere."""

    text: str
    secret: str | None = None


def panel_context(
    db: sqlite3.Connection, settings: Settings, admin: Actor, notice: Notice | None
) -> dict[str, Any]:
    everyone = users.list_users(db)
    now = datetime.now(UTC)
    return {
        "actor": admin,
        "notice": notice,
        "policy": accounts.signup_policy(db),
        "pending": [user for user in everyone if user.role == "pending"],
        "members": [user for user in everyone if user.role != "pending"],
        "last_admin": {user.id for user in everyone if accounts.is_last_admin(db, user)},
        "names": {user.id: user.name for user in everyone},
        "invites": invites.list_invites(db),
        "invite_roles": INVITE_ROLES,
        "default_invite_hours": DEFAULT_INVITE_HOURS,
        "max_invite_hours": accounts.MAX_INVITE_HOURS,
        "sessions": accounts.live_sessions(db, settings),
        "usage": usage.usage_since(db, iso(now - timedelta(days=USAGE_DAYS))),
        "usage_days": USAGE_DAYS,
        "default_limits": user_limits.defaults(db),
        "own_limits": user_limits.overrides(db),
        "max_limit": MAX_LIMIT,
        "usage_chart": usage_chart.chart_of_days(db, now.date(), USAGE_DAYS),
        "usage_totals": api_usage.totals_since(
            db, (now - timedelta(days=USAGE_DAYS - 1)).date().isoformat()
        ),
        "now": iso(now),
    }


def panel(
    request: Request,
    db: sqlite3.Connection,
    settings: Settings,
    admin: Actor,
    notice: Notice | None = None,
) -> HTMLResponse:
    """The panel for htmx, or the whole page for a plain form post (so that a notice shown once
    is not lost to a redirect)."""
    htmx = request.headers.get("HX-Request") == "true"
    context = panel_context(db, settings, admin, notice)
    # A refusal shown before stays in #flash otherwise.
    context["clear_flash"] = htmx
    return render(request, "_admin_panel.html" if htmx else "admin.html", context)


@router.get("", response_class=HTMLResponse)
async def admin_page(request: Request, db: Db, settings: AppSettings, admin: Admin) -> Response:
    require_accounts(settings)
    return render(request, "admin.html", panel_context(db, settings, admin, None))


Choice = TypeVar("Choice", bound=str)


def parse_choice(form: FormData, name: str, label: str, choices: tuple[Choice, ...]) -> Choice:
    value = text_field(form, name)
    for choice in choices:
        if value == choice:
            return choice
    raise UserError(422, f"{label} is one of: {', '.join(choices)} (got {value[:40]!r}).")


@router.post("/signup-policy", response_class=HTMLResponse)
async def set_signup_policy(
    request: Request, db: Db, settings: AppSettings, admin: Admin
) -> Response:
    require_accounts(settings)
    form = await read_form(request)
    policy = parse_choice(form, "policy", "The signup policy", accounts.SIGNUP_POLICIES)
    accounts.set_signup_policy(db, policy)
    said = {
        "open": "Signing up is open: new accounts wait for approval.",
        "closed": "Signing up is closed: accounts are made here or by invite links.",
    }
    return panel(request, db, settings, admin, Notice(said[policy]))


@router.post("/users", response_class=HTMLResponse)
async def create_account(request: Request, db: Db, settings: AppSettings, admin: Admin) -> Response:
    """An account with a temporary password, shown once, that its holder must change."""
    require_accounts(settings)
    form = await read_form(request)
    name = text_field(form, "name").strip()
    role = parse_choice(form, "role", "The role", INVITE_ROLES)
    problem = accounts.name_problem(name)
    if problem:
        raise UserError(422, problem)
    password = accounts.temporary_password()
    password_hash = await hash_password(password)
    with as_user_error():
        user = accounts.create_account(db, name, password_hash, role, must_change=True)
    text = (
        f"{user.name} can sign in, as {'an admin' if role == 'admin' else 'a user'}, with this "
        "password, shown once (they choose their own then):"
    )
    return panel(request, db, settings, admin, Notice(text, password))


AccountChange = Callable[[sqlite3.Connection, int], User]

# What the account buttons do, by the last part of their path, and what the admin is told.
ACCOUNT_CHANGES: dict[str, tuple[AccountChange, str]] = {
    "approve": (accounts.approve, "{name} is approved: they can chat now."),
    "reject": (accounts.reject, "{name}'s signup is rejected and removed."),
    "disable": (
        lambda db, user_id: accounts.set_disabled(db, user_id, True),
        "{name} is disabled, and signed out everywhere.",
    ),
    "enable": (
        lambda db, user_id: accounts.set_disabled(db, user_id, False),
        "{name} can sign in again.",
    ),
    "promote": (lambda db, user_id: accounts.set_role(db, user_id, "admin"), "{name} is an admin."),
    "demote": (
        lambda db, user_id: accounts.set_role(db, user_id, "user"),
        "{name} is no longer an admin.",
    ),
}


def account_route(change: AccountChange, said: str) -> Callable[..., Awaitable[Response]]:
    async def change_account(
        request: Request, db: Db, settings: AppSettings, admin: Admin, user_id: AccountId
    ) -> Response:
        require_accounts(settings)
        with as_user_error():
            user = change(db, user_id)
        return panel(request, db, settings, admin, Notice(said.format(name=user.name)))

    return change_account


for action, (change, said) in ACCOUNT_CHANGES.items():
    router.add_api_route(
        f"/users/{{user_id}}/{action}",
        account_route(change, said),
        methods=["POST"],
        response_class=HTMLResponse,
        name=f"{action}_account",
    )


@router.post("/users/{user_id}/reset-password", response_class=HTMLResponse)
async def reset_password(
    request: Request, db: Db, settings: AppSettings, admin: Admin, user_id: AccountId
) -> Response:
    """A temporary password, shown once; every session of the account ends."""
    require_accounts(settings)
    with as_user_error():
        accounts.account(db, user_id)
    password = accounts.temporary_password()
    password_hash = await hash_password(password)
    with as_user_error():
        user = accounts.reset_password(db, user_id, password_hash)
    text = (
        f"{user.name} is signed out everywhere. Their temporary password, shown once "
        "(they choose their own at sign-in):"
    )
    return panel(request, db, settings, admin, Notice(text, password))


@router.post("/invites", response_class=HTMLResponse)
async def create_invite(request: Request, db: Db, settings: AppSettings, admin: Admin) -> Response:
    require_accounts(settings)
    form = await read_form(request)
    role = parse_choice(form, "role", "The role", INVITE_ROLES)
    hours = parse_integer(form, "hours", "The expiry in hours", 1, accounts.MAX_INVITE_HOURS)
    assert admin.user_id is not None
    made = accounts.create_invite(db, admin.user_id, role, hours, datetime.now(UTC))
    link = str(request.url_for("invite_page", token=made.token))
    expires = made.invite.expires_at[:16].replace("T", " ")
    text = f"An invite for one {role} account, open until {expires} UTC. The link, shown once:"
    return panel(request, db, settings, admin, Notice(text, link))


@router.post("/invites/{invite_id}/revoke", response_class=HTMLResponse)
async def revoke_invite(
    request: Request, db: Db, settings: AppSettings, admin: Admin, invite_id: InviteId
) -> Response:
    require_accounts(settings)
    if not invites.delete_unused_invite(db, invite_id):
        raise UserError(404, "That invite was not found, or it has been used.")
    return panel(request, db, settings, admin, Notice("The invite is revoked: its link is dead."))


@router.post("/sessions/{session_id}/end", response_class=HTMLResponse)
async def end_session(
    request: Request, db: Db, settings: AppSettings, admin: Admin, session_id: SessionId
) -> Response:
    require_accounts(settings)
    if not sessions.delete_session(db, session_id):
        raise UserError(404, "That session was not found (it may have ended already).")
    return panel(request, db, settings, admin, Notice("The session is ended."))
