"""Server-side sessions: a random token in an HttpOnly, SameSite=Lax cookie; the database
keeps only its SHA-256, with idle and absolute expiry.

A session is looked up on every request of a signed-in user; its last use is written at most
once every TOUCH_SECONDS, so that reading a page costs no write.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from duet.settings import Settings
from duet.store import sessions, users
from duet.store.sessions import Session
from duet.store.users import User

COOKIE = "duet_session"
TOUCH_SECONDS = 300


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: Session
    user: User


def start_session(db: sqlite3.Connection, user: User, settings: Settings, request: Request) -> str:
    """A new session for `user`; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(days=settings.session_max_days)
    client = request.client.host if request.client else ""
    sessions.create_session(
        db,
        user.id,
        token_hash(token),
        iso(expires),
        request.headers.get("user-agent", ""),
        client,
    )
    return token


def session_of(db: sqlite3.Connection, token: str, settings: Settings) -> SignedIn | None:
    """The live session and its user for a cookie's token; an expired one is deleted."""
    session = sessions.find_session(db, token_hash(token))
    if session is None:
        return None
    now = datetime.now(UTC)
    idle_limit = now - timedelta(hours=settings.session_idle_hours)
    if session.expires_at < iso(now) or session.last_seen_at < iso(idle_limit):
        sessions.delete_session(db, session.id)
        return None
    user = users.get_user(db, session.user_id)
    if user is None or user.disabled or not user.has_password:
        sessions.delete_session(db, session.id)
        return None
    if session.last_seen_at < iso(now - timedelta(seconds=TOUCH_SECONDS)):
        sessions.touch_session(db, session.id, iso(now))
    return SignedIn(session, user)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, token: str, request: Request, settings: Settings) -> None:
    secure = settings.secure_cookies == "on" or (
        settings.secure_cookies == "auto" and is_https(request)
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(settings.session_max_days * 86400),
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
