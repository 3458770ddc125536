"""The context-window line under the composer (issue 16): the last answer's prompt tokens as
a share of its engine's window, a warning from 80 %, and "not known" where the engine does not
say. What the engines themselves report is tested against them in
test_context_window_engines.py; here the app's side, with engines that answer a fixed window
or are down.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest
from down_engine import DownEngine, closed_port
from duet.app import create_app
from duet.engines.base import ContextWindow
from duet.engines.ollama import num_ctx_parameter, trained_context
from duet.settings import Settings
from duet.store import conversations, messages
from duet.store.messages import AnswerRecord
from duet.store.users import LOCAL_USER_ID
from duet.views.context_use import NEAR_FULL
from fastapi.testclient import TestClient
from test_views import HX, LOCAL

WINDOW = 4096


class FixedWindow(DownEngine):
    """A down engine that knows its window: what the view does with a known one."""

    async def context_window(self, model: str | None = None) -> ContextWindow:
        return ContextWindow(WINDOW, "a fixed window", "it refuses a longer prompt")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    port = closed_port()
    engines = {
        "vllm": FixedWindow("vllm", "vLLM", port),
        "ollama": DownEngine("ollama", "Ollama", port),
    }
    app = create_app(Settings(), engines=engines, database=tmp_path / "duet.sqlite3")  # type: ignore[arg-type]
    with TestClient(app, base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def db(client: TestClient) -> sqlite3.Connection:
    return client.app.state.db  # type: ignore[attr-defined, no-any-return]


def conversation_with(db: sqlite3.Connection, *answers: tuple[str, int | None]) -> int:
    """A conversation whose answers came from these engines with these prompt tokens."""
    conversation = conversations.create_conversation(db, LOCAL_USER_ID, "tokens")
    for engine, prompt_tokens in answers:
        messages.add_user_message(db, conversation.id, "question")
        answer = messages.start_assistant_message(
            db, conversation.id, engine=engine, model="qwen3-test", thinking=False, parameters={}
        )
        record = AnswerRecord("complete", content="answer", prompt_tokens=prompt_tokens)
        messages.save_assistant(db, answer.id, record)
    return conversation.id


def context_line(client: TestClient, conversation_id: int) -> str:
    response = client.get(f"/conversations/{conversation_id}/context", headers=HX)
    assert response.status_code == 200, response.text
    return response.text


def test_the_line_shows_the_last_prompt_as_a_share_of_the_window(
    client: TestClient, db: sqlite3.Connection
) -> None:
    line = context_line(client, conversation_with(db, ("vllm", 100), ("vllm", 1024)))
    assert "Context: 1,024 of 4,096 tokens" in line and "(25 %)" in line
    assert "near-full" not in line and "Nearly full" not in line
    assert "hx-" not in line  # the box around it asks again, not what it holds


def test_the_line_warns_once_the_prompt_nears_the_window(
    client: TestClient, db: sqlite3.Connection
) -> None:
    near = math.ceil(WINDOW * NEAR_FULL)  # the first count at 80 % or more
    line = context_line(client, conversation_with(db, ("vllm", near)))
    assert "near-full" in line and "Nearly full: it refuses a longer prompt" in line
    below = context_line(client, conversation_with(db, ("vllm", near - 1)))
    assert "Nearly full" not in below


def test_an_engine_that_does_not_say_its_window_is_said_so(
    client: TestClient, db: sqlite3.Connection
) -> None:
    line = context_line(client, conversation_with(db, ("ollama", 300)))
    assert "300 prompt tokens; the window is not known: Ollama could not be asked" in line
    gone = context_line(client, conversation_with(db, ("llama.cpp", 300)))
    assert "the engine llama.cpp is no longer configured" in gone


def test_the_last_answer_with_a_count_decides_and_none_hides_the_line(
    client: TestClient, db: sqlite3.Connection
) -> None:
    # An answer that failed before the engine counted its prompt leaves the previous count.
    line = context_line(client, conversation_with(db, ("vllm", 2048), ("vllm", None)))
    assert "2,048 of 4,096" in line
    assert context_line(client, conversation_with(db)) == ""


def test_the_chat_page_loads_the_line_after_itself(
    client: TestClient, db: sqlite3.Connection
) -> None:
    conversation_id = conversation_with(db, ("vllm", 10))
    page = client.get(f"/c/{conversation_id}").text
    box = page.split('id="context-use"')[1].split(">")[0]
    assert f'hx-get="/conversations/{conversation_id}/context"' in box
    # After the page, whenever an answer ends on it, or another answer is chosen to go on from
    # (views/answer_versions.py).
    trigger = box.split('hx-trigger="')[1].split('"')[0]
    assert trigger.split(", ") == [
        "load",
        "duet:answer-ended from:document",
        "duet:answer-chosen from:document",
    ]
    new_chat = client.get("/").text.split('id="context-use"')[1].split(">")[0]
    assert "hx-get" not in new_chat  # nothing to ask before the first answer


def test_ollama_show_parameters_and_model_info_are_read() -> None:
    # /api/show's parameters: one "name value" per line, padded as Ollama writes them.
    parameters = 'num_ctx                        4096\nstop                           "<|im_end|>"'
    assert num_ctx_parameter(parameters) == 4096
    assert num_ctx_parameter('stop "<|im_end|>"') is None and num_ctx_parameter(None) is None
    # model_info, as /api/show sends it: the GGUF's metadata, named by its architecture.
    info = {"general.architecture": "qwen3", "qwen3.context_length": 40960}
    assert trained_context(ollama.ShowResponse.model_validate({"model_info": info})) == 40960
    assert trained_context(ollama.ShowResponse.model_validate({"model_info": {}})) is None
