"""Open WebUI as a relay under test (`duet bench relay --open-webui URL`): how the benchmark
signs in to it and asks it for the same answer as every other path.

Read from Open WebUI's own source (the release in `versions.env`, installed by
services/dev/install-open-webui.sh and started by services/dev/run-open-webui.sh):

- With `WEBUI_AUTH=False` its API still wants a token: `POST /api/v1/auths/signin` with any
  e-mail and password signs in as the one account it makes for that mode (admin@localhost) and
  answers with a `token`, sent as `Authorization: Bearer` (routers/auths.py, `signin`).
- `POST /api/chat/completions` is its own chat endpoint, the one its page posts to. Asked
  without a chat or session id, as here, it streams the completion back over HTTP as OpenAI's
  chunks (its page instead gets the text over its socket, in batches of
  `CHAT_RESPONSE_STREAM_DELTA_CHUNK_SIZE`). For an Ollama model it calls Ollama's native
  /api/chat and turns each of its lines into one chunk (utils/response.py,
  `convert_streaming_response_ollama_to_openai`), with reasoning as `reasoning_content`.
- The sampling goes in `params`, which it hands to Ollama as its `options` (`think` lifted to
  the top level: utils/payload.py, `apply_params_to_form_data` and
  `convert_payload_openai_to_ollama`). Top-level `temperature` and the like are not passed on
  for an Ollama model, so they are not sent there.
- Its models are named as Ollama lists them, with their tag (`qwen3-duet-tiny:latest`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

CHAT_COMPLETIONS = "/api/chat/completions"
SIGN_IN = "/api/v1/auths/signin"
# What Open WebUI makes of a sign-in with authentication off is its own account, whatever the
# form says; these only fill the form.
SIGN_IN_FORM = {"email": "admin@localhost", "password": "admin"}


def model_name(ollama_model: str) -> str:
    """The name Open WebUI lists an Ollama model by: Ollama's, with its tag."""
    return ollama_model if ":" in ollama_model else f"{ollama_model}:latest"


def chat_body(ollama_payload: Mapping[str, Any]) -> dict[str, Any]:
    """The request Duet's Ollama adapter sends Ollama (`OllamaEngine.payload`) as Open WebUI's
    chat completions take it for an Ollama model: the same messages, and the same options and
    thinking in `params`, which it hands back to Ollama as they are."""
    return {
        "model": model_name(ollama_payload["model"]),
        "messages": list(ollama_payload["messages"]),
        "stream": True,
        "params": {**ollama_payload["options"], "think": ollama_payload["think"]},
    }


def sign_in(url: str) -> str:
    """The token Open WebUI at `url` gives a client that signs in with authentication off.
    RuntimeError if it gives none (authentication on, or not Open WebUI)."""
    try:
        response = httpx.post(url + SIGN_IN, json=SIGN_IN_FORM, timeout=60)
    except httpx.HTTPError as error:
        raise RuntimeError(f"Open WebUI at {url} did not answer: {error}") from error
    token = response.json().get("token") if response.status_code == 200 else None
    if not token:
        raise RuntimeError(
            f"signing in to Open WebUI at {url} failed ({response.status_code}): is it running"
            f" with WEBUI_AUTH=False on a fresh data folder? {response.text[:300]}"
        )
    return str(token)
