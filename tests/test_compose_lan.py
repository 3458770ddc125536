"""Duet on a LAN. The compose file's switch (compose/lan.yml): the default stack is a private
local chat, the switch shares the UI on every interface with accounts on, and Duet's own mode
check is run on the settings the web UI's container would get, as `docker compose config`
resolves them. And `duet serve` itself refuses local mode on an address others can reach."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from compose_config import VARIANTS, find_compose, resolved, run_config
from down_engine import closed_port
from duet.auth.mode import ModeError, check_mode
from duet.security import allowed_hosts
from duet.settings import Settings

LAN = "compose/lan.yml"
LAN_NAMES = "duet.lan,192.168.1.20"


@pytest.fixture(scope="module")
def compose() -> Path:
    return find_compose()


def webui(compose: Path, overrides: list[str], tmp_path: Path, **knobs: str) -> dict[str, Any]:
    service: dict[str, Any] = resolved(compose, overrides, tmp_path, **knobs)["services"]["webui"]
    return service


def container_settings(service: dict[str, Any]) -> Settings:
    """The settings `duet serve` reads inside the container: a variable Compose leaves without
    a value is not set there at all."""
    environment = {k: v for k, v in service["environment"].items() if v is not None}
    return Settings.from_env(environment)


def published(service: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(p["host_ip"], p["published"], p["target"]) for p in service["ports"]]


def test_default_stack_is_a_private_local_chat(compose: Path, tmp_path: Path) -> None:
    service = webui(compose, [], tmp_path)
    assert published(service) == [("127.0.0.1", "8080", 8080)]
    settings = container_settings(service)
    assert (settings.mode, settings.host, settings.published_host) == (
        "local",
        "0.0.0.0",
        "127.0.0.1",
    )
    check_mode(settings)  # allowed: listening on all interfaces, published on loopback only


@pytest.mark.parametrize("variant", VARIANTS)
def test_lan_switch_publishes_on_all_interfaces_with_accounts(
    compose: Path, variant: str, tmp_path: Path
) -> None:
    overrides, _ = VARIANTS[variant]
    service = webui(compose, [*overrides, LAN], tmp_path, DUET_ALLOWED_HOSTS=LAN_NAMES)
    # One mapping: the loopback one is replaced, not kept beside it on the same host port.
    assert published(service) == [("0.0.0.0", "8080", 8080)]
    settings = container_settings(service)
    assert (settings.mode, settings.published_host) == ("accounts", "0.0.0.0")
    check_mode(settings)
    assert {"duet.lan", "192.168.1.20"} <= allowed_hosts(settings)


def test_lan_switch_keeps_the_port_knob(compose: Path, tmp_path: Path) -> None:
    service = webui(compose, [LAN], tmp_path, DUET_ALLOWED_HOSTS=LAN_NAMES, WEBUI_PORT="9090")
    assert published(service) == [("0.0.0.0", "9090", 8080)]


def test_lan_switch_cannot_be_turned_back_to_local(compose: Path, tmp_path: Path) -> None:
    # .env.example sets DUET_MODE=local; a copy of it must not open the LAN without sign-in.
    service = webui(compose, [LAN], tmp_path, DUET_ALLOWED_HOSTS=LAN_NAMES, DUET_MODE="local")
    assert container_settings(service).mode == "accounts"


def test_lan_switch_needs_the_names_the_team_uses(compose: Path, tmp_path: Path) -> None:
    # Without them every teammate's request would be refused for its Host header.
    done = run_config(compose, [LAN], tmp_path)
    assert done.returncode != 0
    assert "set DUET_ALLOWED_HOSTS to the names and addresses" in done.stderr


def test_a_lan_bind_without_accounts_is_refused(compose: Path, tmp_path: Path) -> None:
    # WEBUI_BIND=0.0.0.0 alone publishes the port on the LAN, still in local mode: Duet must
    # refuse to start there and say how to turn accounts on.
    service = webui(compose, [], tmp_path, WEBUI_BIND="0.0.0.0")
    assert published(service) == [("0.0.0.0", "8080", 8080)]
    settings = container_settings(service)
    assert (settings.mode, settings.published_host) == ("local", "0.0.0.0")
    with pytest.raises(ModeError, match="DUET_MODE=accounts"):
        check_mode(settings)
    # The same bind with accounts on starts.
    accounts = webui(compose, [], tmp_path, WEBUI_BIND="0.0.0.0", DUET_MODE="accounts")
    check_mode(container_settings(accounts))


@pytest.mark.parametrize(
    ("environment", "arguments"),
    [({"DUET_HOST": "0.0.0.0"}, []), ({}, ["--host", "0.0.0.0"])],
    ids=["DUET_HOST", "--host"],
)
def test_serve_refuses_local_mode_on_all_interfaces(
    environment: dict[str, str], arguments: list[str], tmp_path: Path
) -> None:
    database = tmp_path / "duet.sqlite3"
    # Only what the test sets: no DUET_MODE, no DUET_PUBLISHED_HOST from the developer's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUET_")}
    env |= {"DUET_DATABASE": str(database), "DUET_PORT": str(closed_port()), **environment}
    done = subprocess.run(
        [sys.executable, "-m", "duet.cli", "serve", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # had it started, uvicorn would serve until killed
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("duet serve: Duet would be reachable from other machines on all")
    assert "set DUET_MODE=accounts" in lines[0]
    assert not database.exists()  # refused before anything was written
