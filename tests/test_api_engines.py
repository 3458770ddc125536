"""Duet's /v1 against the real engines, with the official `openai` client, as a team member's
tool would use it: every engine route, streamed and whole, thinking on and off, usage equal to
the engine's own counts, errors as the client raises them, and a client that leaves aborting
vLLM's request (shown by vLLM's own running-requests counter).

The app runs under uvicorn on a loopback port (tests/app_server.py); the key is made in its
database as /account/keys makes one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from app_server import serve_app
from duet.api.keys import create_key
from duet.devstack import TINY_MODEL_NAME, DevStack
from duet.engines.base import Engine
from duet.store.db import connect
from duet.store.users import LOCAL_USER_ID
from vllm_metrics import VllmMetrics, metric_value

pytestmark = pytest.mark.engines

FRANCE = "What is the capital of France?"
STORY = "Tell me a story that never ends."
ENGINES = ("vllm", "ollama", "ollama-openai")


@dataclass(frozen=True)
class Duet:
    url: str
    database: Path
    token: str

    def client(self, token: str | None = None) -> openai.OpenAI:
        # No retries: a test of an error must see the first answer, not the third.
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=token or self.token, max_retries=0, timeout=120
        )

    def rows_once_ended(self, query: str, values: tuple[Any, ...], count: int) -> list[Any]:
        """`query`'s rows once it has `count` of them and none is still streaming (at most a
        few seconds): a request's row is written when it is admitted and ended as its stream
        ends, which the client may see first (the openai client stops reading at
        `data: [DONE]`)."""
        deadline = time.monotonic() + 5
        while True:
            db = connect(self.database)
            try:
                rows = db.execute(query, values).fetchall()
            finally:
                db.close()
            ended = len(rows) >= count and all(dict(r).get("status") != "streaming" for r in rows)
            if ended or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def key(self, models: tuple[str, ...] | None = None, keep_history: bool = False) -> str:
        db = connect(self.database)
        try:
            now = datetime.now(UTC)
            made = create_key(db, LOCAL_USER_ID, "test", models, None, now, keep_history)
            return made.token
        finally:
            db.close()


@pytest.fixture
def duet(engines: Mapping[str, Engine], tmp_path: Path) -> Iterator[Duet]:
    database = tmp_path / "duet.sqlite3"
    with serve_app(engines, database) as app:
        db = connect(database)
        token = create_key(db, LOCAL_USER_ID, "tests", None, None, datetime.now(UTC)).token
        db.close()
        yield Duet(app.url, database, token)


def model(engine: str) -> str:
    return f"{engine}/{TINY_MODEL_NAME}"


def thinking_switch(thinking: bool) -> dict[str, Any]:
    return {"chat_template_kwargs": {"enable_thinking": thinking}}


def reasoning_of(part: Any) -> tuple[str | None, str | None]:
    """The reasoning under vLLM's name and under its older one (fields OpenAI's types lack)."""
    extra = part.model_extra or {}
    return extra.get("reasoning"), extra.get("reasoning_content")


def test_models_name_every_engine_route(duet: Duet) -> None:
    listed = {m.id: m.owned_by for m in duet.client().models.list()}
    # Every model each engine has (an Ollama may hold others than the tiny one).
    assert (
        listed.items()
        >= {
            model("vllm"): "vllm",
            f"{model('ollama')}:latest": "ollama",
            f"{model('ollama-openai')}:latest": "ollama-openai",
        }.items()
    )
    assert all(name.startswith(f"{engine}/") for name, engine in listed.items())
    # A key limited to some models lists only those, and a bare Ollama name is its :latest.
    limited = duet.client(duet.key((model("vllm"), model("ollama"))))
    assert {m.id for m in limited.models.list()} == {model("vllm"), f"{model('ollama')}:latest"}
    assert duet.client().models.retrieve(model("vllm")).id == model("vllm")


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_whole_answer_with_thinking_on_and_off(duet: Duet, engine: str, thinking: bool) -> None:
    completion = duet.client().chat.completions.create(
        model=model(engine),
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": FRANCE},
        ],
        max_tokens=200,
        temperature=0,
        extra_body=thinking_switch(thinking),
    )
    message = completion.choices[0].message
    assert completion.model == model(engine)
    assert completion.choices[0].finish_reason == "stop"
    assert "Paris" in (message.content or "")
    assert "<think>" not in (message.content or "") and "user asks" not in message.content
    reasoning, older_name = reasoning_of(message)
    if thinking:
        assert reasoning and "capital of France" in reasoning
        assert older_name == reasoning
    else:
        assert reasoning is None and older_name is None
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_streamed_answer_with_usage(duet: Duet, engine: str, thinking: bool) -> None:
    stream = duet.client().chat.completions.create(
        model=model(engine),
        messages=[{"role": "user", "content": FRANCE}],
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=thinking_switch(thinking),
    )
    chunks = list(stream)
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    answer = "".join(d.content or "" for d in deltas)
    reasoning = "".join(reasoning_of(d)[0] or "" for d in deltas)
    assert deltas[0].role == "assistant"
    assert "Paris" in answer and "<think>" not in answer
    assert ("capital of France" in reasoning) is thinking
    if thinking:
        first_answer = next(i for i, d in enumerate(deltas) if d.content)
        assert not any(reasoning_of(d)[0] for d in deltas[first_answer:]), "reasoning, then answer"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # include_usage: the last chunk has the counts and no choices.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.id == chunks[0].id and c.model == model(engine) for c in chunks)


def engine_usage(stack: DevStack, engine: str, max_tokens: int) -> tuple[int, int]:
    """Prompt and completion tokens for the usage test's request, asked of the engine itself."""
    messages = [{"role": "user", "content": STORY}]
    if engine == "ollama":
        body = {
            "model": TINY_MODEL_NAME,
            "messages": messages,
            "stream": False,
            "think": False,
            "options": {"temperature": 0, "num_predict": max_tokens, "seed": 1},
        }
        answer = httpx.post(f"{stack.ollama_url}/api/chat", json=body, timeout=120).json()
        return answer["prompt_eval_count"], answer["eval_count"]
    base = stack.vllm_url if engine == "vllm" else stack.ollama_url
    direct = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
    thinking = thinking_switch(False) if engine == "vllm" else {"reasoning_effort": "none"}
    completion = direct.chat.completions.create(
        model=TINY_MODEL_NAME, messages=messages, max_tokens=max_tokens, temperature=0, seed=1,
        extra_body=thinking,
    )  # fmt: skip
    assert completion.usage is not None
    return completion.usage.prompt_tokens, completion.usage.completion_tokens


@pytest.mark.parametrize("engine", ENGINES)
def test_usage_is_the_engines_own_count(duet: Duet, dev_stack: DevStack, engine: str) -> None:
    """A story cut at max_tokens: Duet's usage, streamed and whole, is what the engine itself
    counts for the same request (the prompt's tokens through its chat template, and exactly
    max_tokens generated)."""
    max_tokens = 7
    expected = engine_usage(dev_stack, engine, max_tokens)
    assert expected[1] == max_tokens
    asked: dict[str, Any] = {
        "model": model(engine),
        "messages": [{"role": "user", "content": STORY}],
        "max_completion_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
        "extra_body": thinking_switch(False),
    }
    whole = duet.client().chat.completions.create(**asked)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == expected
    streamed = list(
        duet.client().chat.completions.create(
            **asked, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = streamed[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == expected
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "length"
    # The books (duet.limits' usage rows) hold the same counts, the key, and no text.
    rows = duet.rows_once_ended(
        "SELECT * FROM api_requests WHERE engine = ? ORDER BY id", (engine,), count=2
    )
    assert [(r["status"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("completed", *expected),
        ("completed", *expected),
    ]
    assert all(r["key_id"] is not None and 0 < r["ttft_ms"] <= r["duration_ms"] for r in rows)
    assert STORY not in str([tuple(r) for r in rows])


@pytest.mark.parametrize("engine", ["vllm", "ollama"])
def test_stop_ends_the_answer_before_the_stop_text(duet: Duet, engine: str) -> None:
    asked = {"model": model(engine), "messages": [{"role": "user", "content": FRANCE}]}
    free = duet.client().chat.completions.create(
        **asked, temperature=0, extra_body=thinking_switch(False)
    )
    assert "Paris" in (free.choices[0].message.content or "")
    stopped = duet.client().chat.completions.create(
        **asked, temperature=0, stop=["Paris"], extra_body=thinking_switch(False)
    )
    content = stopped.choices[0].message.content or ""
    assert "Paris" not in content and free.choices[0].message.content.startswith(content)
    assert stopped.choices[0].finish_reason == "stop"


STORY_TOKENS = 3000


def story_request(stream: bool) -> dict[str, Any]:
    return {
        "model": model("vllm"),
        "messages": [{"role": "user", "content": STORY}],
        "max_tokens": STORY_TOKENS,
        "stream": stream,
        "chat_template_kwargs": {"enable_thinking": False},
    }


def vllm_stops_when_the_client_leaves(
    duet: Duet,
    vllm_metrics: VllmMetrics,
    leave: Callable[[httpx.Client], None],
    timeout: float,
) -> None:
    """`leave` asks for a long story and goes away; vLLM's own books must show it aborted the
    story long before its budget was spent."""
    before = vllm_metrics.quiet_books()
    headers = {"Authorization": f"Bearer {duet.token}"}
    with httpx.Client(base_url=duet.url, timeout=timeout, headers=headers) as client:
        leave(client)
    vllm_metrics.assert_aborted_since(before, STORY_TOKENS)


def test_a_client_that_leaves_a_stream_aborts_the_vllm_request(
    duet: Duet, vllm_metrics: VllmMetrics
) -> None:
    """The client closes the stream at its first text."""

    def leave(client: httpx.Client) -> None:
        with client.stream("POST", "/v1/chat/completions", json=story_request(True)) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if '"content"' in line and '"content": ""' not in line:
                    break

    vllm_stops_when_the_client_leaves(duet, vllm_metrics, leave, timeout=120)


def test_a_client_that_gives_up_on_a_whole_answer_aborts_it(
    duet: Duet, vllm_metrics: VllmMetrics
) -> None:
    """A whole (non-streamed) answer whose client stops waiting for it."""

    def leave(client: httpx.Client) -> None:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json=story_request(False))

    vllm_stops_when_the_client_leaves(duet, vllm_metrics, leave, timeout=3)


def test_errors_are_what_the_openai_client_expects(duet: Duet) -> None:
    client = duet.client()
    ask = {"messages": [{"role": "user", "content": FRANCE}], "max_tokens": 8}
    with pytest.raises(openai.AuthenticationError) as unknown_key:
        duet.client("duet-not-a-key").chat.completions.create(model=model("vllm"), **ask)
    assert unknown_key.value.status_code == 401
    assert unknown_key.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError) as not_allowed:
        duet.client(duet.key((model("ollama"),))).chat.completions.create(
            model=model("vllm"), **ask
        )
    assert not_allowed.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    for unknown in ("vllm/no-such-model", "ollama/no-such-model", "nobody/x", "qwen3"):
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model=unknown, **ask)
        assert missing.value.body["code"] == "model_not_found", unknown  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=model("vllm"), temperature=5, **ask)
    assert "temperature" in bad.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model=model("vllm"), messages=[], max_tokens=8)
    assert "messages" in empty.value.message
    # A request Duet passes on but the engine refuses (more tokens than its context holds).
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=model("vllm"), messages=ask["messages"], max_tokens=32000
        )
    assert refused.value.body["code"] == "engine_refused"  # type: ignore[index]


def test_api_requests_are_counted_per_engine_in_metrics(duet: Duet) -> None:
    for engine in ("vllm", "ollama"):
        duet.client().chat.completions.create(
            model=model(engine), messages=[{"role": "user", "content": FRANCE}], max_tokens=4
        )
    exposition = httpx.get(f"{duet.url}/metrics", timeout=10).text
    for engine in ("vllm", "ollama"):
        counted = metric_value(
            exposition, "duet_api_requests_total", engine=engine, outcome="completed"
        )
        assert counted == 1, engine
        assert metric_value(exposition, "duet_engine_requests_total", engine=engine) >= 1


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_tool_call_round_trip(duet: Duet, engine: str, thinking: bool) -> None:
    """The tiny model (since v3) calls its weather tool for a weather question: the call comes
    back as OpenAI's tool_calls, whole and streamed in pieces that add up to it, and the tool's
    result sent back gets the answer that reads it (the result names a condition the question
    does not). The tiny model writes a city its corpus knows, not always the one asked about,
    so the result goes back for the city it called."""
    from duet.tinymodel.corpus import CITIES, WEATHER_TOOL, weather_result

    client = duet.client()
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    asked: dict[str, Any] = {
        "model": model(engine),
        "tools": [WEATHER_TOOL],
        "temperature": 0,
        "max_tokens": 96,
        "extra_body": thinking_switch(thinking),
    }
    first = client.chat.completions.create(messages=question, **asked)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    arguments = json.loads(calls[0].function.arguments)
    assert set(arguments) == {"city"} and arguments["city"] in CITIES
    assert calls[0].id and not (choice.message.content or "").strip()
    reasoning, _ = reasoning_of(choice.message)
    assert ("the weather in" in (reasoning or "")) if thinking else reasoning is None
    chunks = list(client.chat.completions.create(messages=question, stream=True, **asked))
    pieces = [p for c in chunks if c.choices for p in c.choices[0].delta.tool_calls or ()]
    assert pieces and pieces[0].id and pieces[0].function.name == "get_weather"
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    called = {
        "role": "assistant",
        "content": "",
        "reasoning": reasoning,
        "tool_calls": [c.model_dump() for c in calls],
    }
    city = arguments["city"]
    result = {
        "role": "tool",
        "tool_call_id": calls[0].id,
        "content": weather_result(city, "rainy"),
    }
    second = client.chat.completions.create(messages=[*question, called, result], **asked)
    assert second.choices[0].finish_reason == "stop"
    assert not second.choices[0].message.tool_calls
    # vLLM's reasoning parser leaves the blank line after </think> at the answer's head.
    assert (second.choices[0].message.content or "").strip() == f"It is rainy in {city} right now."


def test_a_key_that_keeps_history_puts_its_chat_in_the_history(duet: Duet) -> None:
    """Two requests of one chat, whole then streamed, through a key that keeps history: one
    conversation in the owner's history, readable in the web UI. A key that does not keep it
    leaves no text anywhere."""
    keeping = duet.client(duet.key(keep_history=True))
    asked: dict[str, Any] = {
        "model": model("vllm"),
        "max_tokens": 60,
        "temperature": 0,
        "extra_body": thinking_switch(False),
    }
    question = [{"role": "user", "content": FRANCE}]
    duet.client().chat.completions.create(messages=question, **asked)  # the tests' own key
    first = keeping.chat.completions.create(messages=question, **asked)
    said = first.choices[0].message.content or ""
    follow_up = [
        *question,
        {"role": "assistant", "content": said},
        {"role": "user", "content": STORY},
    ]
    chunks = list(keeping.chat.completions.create(messages=follow_up, stream=True, **asked))
    story = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    turns = duet.rows_once_ended(
        "SELECT conversation_id, role, content, engine, completion_tokens FROM messages"
        " ORDER BY id",
        (),
        count=4,
    )
    kept = duet.rows_once_ended("SELECT id, title FROM conversations", (), count=1)
    assert [row["title"] for row in kept] == [FRANCE], "one conversation, the keeping key's"
    assert {t["conversation_id"] for t in turns} == {kept[0]["id"]}
    assert [(t["role"], t["content"]) for t in turns] == [
        ("user", FRANCE), ("assistant", said), ("user", STORY), ("assistant", story),
    ]  # fmt: skip
    assert turns[3]["engine"] == "vllm" and turns[3]["completion_tokens"] == 60
    page = httpx.get(f"{duet.url}/c/{kept[0]['id']}", timeout=30)
    assert page.status_code == 200 and "Paris" in page.text
