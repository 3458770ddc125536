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
