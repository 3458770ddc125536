"""`local` or `accounts`: a private instance without sign-in is allowed only where no one else
can reach it."""

from __future__ import annotations

import ipaddress

from duet.settings import Settings

MODES = ("local", "accounts")
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


class ModeError(ValueError):
    """The settings choose a mode this instance may not run in; the message says what to do."""


def is_loopback(address: str) -> bool:
    name = address.strip().strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_mode(settings: Settings) -> None:
    """Refuse `local` mode where the UI can be reached from other machines: listening on a
    non-loopback address, or on all interfaces (inside the web UI container) unless the
    compose file says the port is published on a loopback address (DUET_PUBLISHED_HOST)."""
    if settings.mode not in MODES:
        raise ModeError(f"DUET_MODE={settings.mode!r}: choose local or accounts.")
    if settings.mode == "accounts":
        return
    if is_loopback(settings.host):
        return
    if settings.host in WILDCARDS and is_loopback(settings.published_host):
        return
    where = settings.host if settings.host not in WILDCARDS else "all interfaces"
    if settings.host in WILDCARDS and settings.published_host:
        where = f"{settings.published_host} (DUET_PUBLISHED_HOST)"
    raise ModeError(
        f"Duet would be reachable from other machines on {where} with no sign-in, so it will "
        "not start in local mode. For a team, set DUET_MODE=accounts (docs/team.md); for a "
        "private chat, listen on 127.0.0.1 (DUET_HOST, or WEBUI_BIND in the compose file)."
    )
