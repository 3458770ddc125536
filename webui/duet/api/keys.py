"""API keys: making one, and who a `/v1` request comes from (`api_caller`, the dependency every
`/v1` route has).

A key is accepted only as `Authorization: Bearer <key>`. A key in any other header
(`X-Api-Key`, `api-key`, ...) is not read, so no route can be reached by a header that some
check forgot (Open WebUI's CVE-2026-45339: a key sent as `x-api-key` skipped the key's
restrictions). A session cookie never authorizes `/v1`: the cookie is what a browser attaches
to requests other sites make it send, and a key is not. That is also why `/v1` needs no
exemption from the cross-site check: the API clients it serves send no `Origin` or
`Sec-Fetch-Site` and pass it as they are, and a browser's cross-site request cannot carry a key
it does not have (sending `Authorization` across sites needs a CORS preflight, which Duet never
grants).

A key works while it is neither revoked nor expired and its owner may use Duet (`may`): an
account that is disabled, waiting for approval or whose password must be changed (an admin
reset it) gets 401 for every key it holds. In local mode there are no accounts, and the keys are
the local user's; they are still required, since other programs on the same machine can reach
the port.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request

from duet.api.errors import ApiError
from duet.api.models import canonical
from duet.auth.actors import Actor, may
from duet.auth.sessions import COOKIE, iso, token_hash
from duet.settings import Settings
from duet.store import api_keys, users
from duet.store.api_keys import ApiKey
from duet.store.users import LOCAL_USER_ID

TOKEN_PREFIX = "duet-"
# The characters of a token kept for its owner to recognise it by ("duet-" and 7 more: one in
# 2^42 chance that two of someone's keys look alike).
SHOWN_CHARS = 12
# A token as `new_token` makes it is 48 characters; a longer one is refused before hashing.
MAX_TOKEN_CHARS = 200
MAX_NAME_CHARS = 64
MAX_EXPIRY_DAYS = 3650
# How stale a key's last use may be before a request writes it again: a list of keys says when
# each was last used without a write on every request.
TOUCH_SECONDS = 60
# Headers that other APIs (and clients configured for them) carry keys in. Never read as keys:
# named here only to tell the client where Duet wants its key.
OTHER_KEY_HEADERS = ("x-api-key", "api-key", "x-goog-api-key", "openai-api-key", "x-auth-token")

BEARER_HELP = "send it as the header Authorization: Bearer <key> (make one at /account/keys)"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    token: str  # shown to its owner once and kept nowhere


def key_problem(name: str, expires_days: int | None) -> str | None:
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return f"A key's name is 1 to {MAX_NAME_CHARS} printable characters."
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        return f"A key expires after 1 to {MAX_EXPIRY_DAYS:,} days, or never."
    return None


def create_key(
    db: sqlite3.Connection,
    user_id: int,
    name: str,
    allowed_models: tuple[str, ...] | None,
    expires_days: int | None,
    now: datetime,
    keep_history: bool = False,
) -> NewKey:
    token = new_token()
    expires = None if expires_days is None else iso(now + timedelta(days=expires_days))
    key = api_keys.create_key(
        db,
        user_id,
        name,
        token_hash(token),
        token[:SHOWN_CHARS],
        allowed_models,
        expires,
        iso(now),
        keep_history,
    )
    return NewKey(key, token)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a /v1 request comes from: a user, through one of their keys."""

    user_id: int
    key: ApiKey

    def may_use(self, model: str) -> bool:
        allowed = self.key.allowed_models
        return allowed is None or canonical(model) in {canonical(name) for name in allowed}


def refused(message: str) -> ApiError:
    return ApiError(401, message, "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str:
    """The key of `Authorization: Bearer <key>`; 401, saying where a key goes, otherwise."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        elsewhere = next((h for h in OTHER_KEY_HEADERS if h in request.headers), None)
        if elsewhere is not None:
            raise refused(f"Duet does not read API keys from {elsewhere}: {BEARER_HELP}.")
        if COOKIE in request.cookies:
            raise refused(f"A signed-in session does not authorize /v1: {BEARER_HELP}.")
        raise refused(f"No API key: {BEARER_HELP}.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise refused(f"The Authorization header holds no Bearer key: {BEARER_HELP}.")
    if len(token) > MAX_TOKEN_CHARS:
        raise refused("This API key is not valid.")
    return token


def owner_may_use(db: sqlite3.Connection, settings: Settings, key: ApiKey) -> bool:
    if settings.mode == "local":
        return key.user_id == LOCAL_USER_ID
    user = users.get_user(db, key.user_id)
    if user is None or user.disabled or not user.has_password:
        return False
    actor = Actor(user.id, user.name, user.role, must_change_password=user.must_change_password)
    return may(actor, "use")


async def api_caller(request: Request) -> Caller:
    """The caller of a /v1 request, from its Bearer key; 401 for anything else."""
    db: sqlite3.Connection = request.app.state.db
    settings: Settings = request.app.state.settings
    token = bearer_token(request)
    key = api_keys.find_key(db, token_hash(token))
    if key is None:
        raise refused("This API key is not valid.")
    now = datetime.now(UTC)
    state = key.state(iso(now))
    if state == "revoked":
        raise refused("This API key was revoked.")
    if state == "expired":
        raise refused(f"This API key expired on {key.expires_at[:10]} (UTC).")  # type: ignore[index]
    if not owner_may_use(db, settings, key):
        raise refused(
            "The account this API key belongs to cannot use Duet now (it is disabled, waiting "
            "for approval, or its password must be changed first)."
        )
    if key.last_used_at is None or key.last_used_at < iso(now - timedelta(seconds=TOUCH_SECONDS)):
        api_keys.touch_key(db, key.user_id, key.id, iso(now))
    return Caller(key.user_id, key)
