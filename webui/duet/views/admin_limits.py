"""The admin page's limits forms: the defaults, and one account's own limits (or back to the
defaults). What the limits mean and how they are applied: duet/limits.py.

Like every admin action: `Admin` on each route (403 for anyone else; MEMBERS_ONLY sends those
not signed in or not approved where they can go on), the cross-site check on every POST, and
the page's panel as the answer.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from duet.auth import accounts
from duet.store import user_limits
from duet.store.user_limits import LimitValues
from duet.views.accounts import as_user_error, require_accounts
from duet.views.admin import MAX_LIMIT, AccountId, Notice, panel
from duet.views.deps import MEMBERS_ONLY, Admin, AppSettings, Db
from duet.views.errors import UserError
from duet.views.forms import FormData, read_form, text_field

router = APIRouter(prefix="/admin", dependencies=MEMBERS_ONLY)

FIELDS = (
    ("max_concurrent", "Answers at once"),
    ("requests_per_minute", "Answers a minute"),
    ("tokens_per_day", "Tokens a day"),
)


def parse_limit(form: FormData, name: str, label: str) -> int | None:
    """A limit from the form: blank is no limit, else a whole number from 0 to MAX_LIMIT."""
    raw = text_field(form, name).strip().replace(",", "")
    if not raw:
        return None
    # ASCII digits only: int() would also take other scripts' digits and `_` separators.
    if not re.fullmatch(r"[0-9]{1,10}", raw) or int(raw) > MAX_LIMIT:
        problem = f"{label} is blank (no limit) or a whole number up to {MAX_LIMIT:,}"
        raise UserError(422, f"{problem} (got {raw[:40]!r}).")
    return int(raw)


def parse_limits(form: FormData) -> LimitValues:
    return LimitValues(*(parse_limit(form, name, label) for name, label in FIELDS))


def said(values: LimitValues) -> str:
    if values.none:
        return "no limits"
    numbers = (values.max_concurrent, values.requests_per_minute, values.tokens_per_day)
    return ", ".join(
        f"{label.lower()} {'no limit' if value is None else f'{value:,}'}"
        for (_, label), value in zip(FIELDS, numbers, strict=True)
    )


@router.post("/limits")
async def set_default_limits(
    request: Request, db: Db, settings: AppSettings, admin: Admin
) -> Response:
    require_accounts(settings)
    values = parse_limits(await read_form(request))
    user_limits.set_defaults(db, values)
    return panel(request, db, settings, admin, Notice(f"The default limits are {said(values)}."))


@router.post("/users/{user_id}/limits")
async def set_account_limits(
    request: Request, db: Db, settings: AppSettings, admin: Admin, user_id: AccountId
) -> Response:
    require_accounts(settings)
    values = parse_limits(await read_form(request))
    with as_user_error():
        user = accounts.account(db, user_id)
    user_limits.set_override(db, user.id, values)
    text = f"{user.name} has limits of their own, instead of the defaults: {said(values)}."
    return panel(request, db, settings, admin, Notice(text))


@router.post("/users/{user_id}/limits/remove")
async def remove_account_limits(
    request: Request, db: Db, settings: AppSettings, admin: Admin, user_id: AccountId
) -> Response:
    require_accounts(settings)
    with as_user_error():
        user = accounts.account(db, user_id)
    # Asked twice (a second tab, a resent form), the answer is the same state: the defaults.
    removed = user_limits.remove_override(db, user.id)
    text = f"{user.name} has the default limits {'again' if removed else 'already'}."
    return panel(request, db, settings, admin, Notice(text))
