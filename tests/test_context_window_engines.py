"""The context window, as the real engines report it (issue 16), and the line under the
composer built from it.

Against the dev stack's vLLM and Ollama serving the tiny model, both started with a
TINY_CONTEXT-token window (vLLM's --max-model-len; Ollama's OLLAMA_CONTEXT_LENGTH and the
Modelfile's num_ctx):
- vLLM's adapter reads `max_model_len` from /v1/models;
- both Ollama adapters (native and /v1) read the num_ctx the loaded model runs with from
  /api/ps, and /api/show's parameters and model_info are read as the adapter reads them;
- a model an engine does not serve gives no number and says why;
- through the app, the line shows the answer's own prompt tokens over that window.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import ollama
import pytest
from app_server import serve_app
from duet.devstack import TINY_CONTEXT, TINY_MODEL_NAME, DevStack
from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.ollama import num_ctx_parameter, trained_context
from duet.store.db import connect
from duet.store.messages import require_message

pytestmark = pytest.mark.engines

ONE_TOKEN = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=1)


@pytest.mark.asyncio(loop_scope="function")
async def test_vllm_reports_the_max_model_len_of_its_served_model(
    engines: Mapping[str, Engine], dev_stack: DevStack
) -> None:
    window = await engines["vllm"].context_window()
    async with httpx.AsyncClient(timeout=10) as client:
        listed = (await client.get(f"{dev_stack.vllm_url}/v1/models")).json()["data"]
    card = next(card for card in listed if card["id"] == TINY_MODEL_NAME)
    assert window.tokens == card["max_model_len"] == TINY_CONTEXT
    assert "max_model_len" in window.source and "refuses" in window.when_full


@pytest.mark.asyncio(loop_scope="function")
async def test_both_ollama_adapters_read_the_num_ctx_of_the_loaded_model(
    engines: Mapping[str, Engine], dev_stack: DevStack
) -> None:
    # An answer has Ollama load the model (it stays loaded for minutes after).
    request = ChatRequest((ChatMessage("user", "Hi"),), thinking=False, sampling=ONE_TOKEN)
    async for _ in engines["ollama"].stream_chat(request):
        pass
    async with httpx.AsyncClient(timeout=10) as client:
        running = (await client.get(f"{dev_stack.ollama_url}/api/ps")).json()["models"]
    loaded = next(
        m for m in running if m["model"] in (TINY_MODEL_NAME, f"{TINY_MODEL_NAME}:latest")
    )
    assert loaded["context_length"] == TINY_CONTEXT
    for name in ("ollama", "ollama-openai"):
        window = await engines[name].context_window()
        assert window.tokens == loaded["context_length"], name
        assert "/api/ps" in window.source and "earliest messages" in window.when_full


@pytest.mark.asyncio(loop_scope="function")
async def test_ollama_show_gives_the_modelfile_num_ctx_and_the_trained_context(
    dev_stack: DevStack,
) -> None:
    """What the adapter reads before the model is loaded, from the real /api/show."""
    async with httpx.AsyncClient(timeout=10) as client:
        raw = await client.post(f"{dev_stack.ollama_url}/api/show", json={"model": TINY_MODEL_NAME})
    info = raw.json()["model_info"]
    shown = await ollama.AsyncClient(host=dev_stack.ollama_url, trust_env=False).show(
        TINY_MODEL_NAME
    )
    assert num_ctx_parameter(shown.parameters) == TINY_CONTEXT  # the dev stack's Modelfile
    assert trained_context(shown) == info[f"{info['general.architecture']}.context_length"]


@pytest.mark.asyncio(loop_scope="function")
async def test_a_model_the_engine_does_not_serve_has_no_window_and_says_why(
    engines: Mapping[str, Engine],
) -> None:
    for name, engine in engines.items():
        window = await engine.context_window("no-such-model")
        assert window.tokens is None, name
        assert "no-such-model" in window.source or "not found" in window.source, window


@pytest.mark.parametrize("engine_name", ["vllm", "ollama", "ollama-openai"])
def test_the_line_shows_the_answers_prompt_tokens_over_its_engines_window(
    engines: Mapping[str, Engine], engine_name: str, tmp_path: Path
) -> None:
    form = {
        "content": "What is the capital of France?",
        "engine": engine_name,
        "temperature": "0.6",
        "top_p": "0.95",
        "top_k": "20",
        "max_tokens": "16",
        "system_prompt": "",
    }
    database = tmp_path / "duet.sqlite3"
    with serve_app(engines, database) as app, httpx.Client(base_url=app.url, timeout=60) as client:
        sent = client.post("/chat/send", data=form, headers={"HX-Request": "true"})
        assert sent.status_code == 200, sent.text
        conversation_id = int(sent.headers["HX-Push-Url"].removeprefix("/c/"))
        answer_id = int(re.findall(r'data-stream="/messages/(\d+)/stream"', sent.text)[0])
        db = connect(database)
        deadline = time.monotonic() + 60
        while require_message(db, answer_id).status == "streaming":
            assert time.monotonic() < deadline, "the answer did not end"
            time.sleep(0.05)
        prompt_tokens = require_message(db, answer_id).prompt_tokens
        assert prompt_tokens
        line = client.get(f"/conversations/{conversation_id}/context").text
    percent = prompt_tokens / TINY_CONTEXT * 100
    expected = f"Context: {prompt_tokens:,} of {TINY_CONTEXT:,} tokens"
    assert expected in line, line
    assert html.escape(f"({'<1' if percent < 1 else f'{percent:.0f}'} %)") in line
