"""Every knob Duet has, read from the environment in one place.

Each field names its variable and default; `.env.example` at the repository root lists the same
variables with the same defaults (a test keeps the two in step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


def default_cache() -> Path:
    return Path(os.environ.get("DUET_CACHE", Path.home() / ".cache" / "duet"))


@dataclass(frozen=True)
class Settings:
    # Where the engines listen. In Compose these are service names on the internal network.
    vllm_url: str = "http://127.0.0.1:8000"
    ollama_url: str = "http://127.0.0.1:11434"
    # The model each engine serves; vLLM's is the served model name, Ollama's the model tag.
    vllm_model: str = "Qwen/Qwen3-14B-AWQ"
    ollama_model: str = "qwen3-duet"
    # vLLM's --api-key, if set there; sent as a Bearer token.
    vllm_api_key: str = ""
    # `transformers serve`, a third engine route: absent (not shown, not offered) while its URL
    # is empty. Its model is the name or local path the server was started with; the server
    # refuses a request naming any other.
    transformers_url: str = ""
    transformers_model: str = "Qwen/Qwen3-14B"
    # Seconds an idle connection to each engine's server is kept for the next request. Each
    # must be under that server's own idle limit: a request sent on a connection the server is
    # closing at that moment fails (aiohttp retries only idempotent requests, and a chat is a
    # POST). vLLM closes idle connections after VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds, 5 unless
    # set (vllm/envs.py; the compose file and `duet dev` set 65, and this to 60); `transformers
    # serve` after uvicorn's default 5; Ollama's server sets no idle limit (server/routes.go: an
    # http.Server without IdleTimeout or ReadTimeout). Past it, the next request opens a new
    # connection, about a millisecond on loopback.
    vllm_connection_idle_seconds: float = 4.0
    ollama_connection_idle_seconds: float = 60.0
    transformers_connection_idle_seconds: float = 4.0
    # SQLite database file for conversations and runs.
    database: str = "duet.sqlite3"
    # The web UI binds here. 127.0.0.1 keeps a local chat private; 0.0.0.0 shares it on a LAN.
    host: str = "127.0.0.1"
    port: int = 8080
    # Longest user message accepted, in characters.
    max_message_chars: int = 32000
    # Seconds to wait for an engine to send its first byte before giving up.
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    # Host names and addresses this instance answers to, comma-separated, besides the loopback
    # names (127.0.0.1, localhost, [::1]) and DUET_HOST when it names one address. Add the LAN
    # name and address when sharing. A request with any other Host header is refused (400),
    # which stops DNS rebinding; ports are not compared (duet.security.CheckHost says why).
    allowed_hosts: str = ""
    # Largest request body, in bytes, refused (413) before it is read. It must hold a message
    # and a system prompt of DUET_MAX_MESSAGE_CHARS characters each once URL-encoded (up to 12
    # bytes a character) and a compare answer's browser timings (about 30 bytes a chunk).
    max_body_bytes: int = 2097152
    # Seconds a client has to send a request's whole body once its headers are in (408 after).
    body_timeout: float = 30.0
    # Seconds a client has to send a request's line and headers, from connecting or from the
    # first byte of a request on a kept-open connection, and their largest size in bytes.
    # uvicorn has neither limit of its own (duet.server says what each bound covers).
    header_timeout: float = 10.0
    max_header_bytes: int = 65536
    # Seconds an idle kept-open connection waits for its next request before it is closed.
    keep_alive_timeout: float = 5.0
    # Connections, and requests in progress, the server holds at once; past this it answers
    # 503. Each browser tab holds up to 6 connections, each open answer stream one.
    max_connections: int = 1000
    # Event streams one client address may hold open at once (429 past it). A browser opens
    # at most 6 connections to one server; addresses behind one NAT share the limit.
    max_streams_per_client: int = 16
    # `local`: one private user, no sign-in, allowed only while the UI can be reached from its
    # own machine alone. `accounts`: team mode, everyone signs in (docs/team.md).
    mode: str = "local"
    # Inside the web UI container, which listens on all interfaces, the host address the
    # compose file publishes its port on (the compose file sets it): a loopback address keeps
    # `local` mode allowed there.
    published_host: str = ""
    # Session cookies marked Secure: `auto` when the request came over HTTPS, `on` always (a
    # TLS proxy in front that speaks plain HTTP to Duet), `off` never.
    secure_cookies: str = "auto"
    # A session ends after this many hours without a request, and this many days after sign-in.
    session_idle_hours: float = 72.0
    session_max_days: float = 30.0
    # Days a deleted conversation stays in the trash, where its owner can restore it; after
    # that it is deleted for good (checked at start-up and every hour).
    trash_days: float = 30.0
    # Shortest password accepted.
    min_password_length: int = 10
    # Wrong passwords allowed per account, and per client address, in a window of this many
    # seconds; past it, sign-in waits until the window has passed.
    signin_attempts: int = 5
    signin_window_seconds: int = 300
    # In accounts mode /metrics answers admins, and a scraper sending this as a Bearer token
    # (empty: no scraper token; choose a long random one, e.g. `openssl rand -hex 32`).
    metrics_token: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is None:
                continue
            kind = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError as error:
                raise ValueError(f"{env_name(f.name)}={raw!r}: expected {kind.__name__}") from error
        return cls(**values)  # type: ignore[arg-type]


def env_name(field_name: str) -> str:
    return "DUET_" + field_name.upper()
