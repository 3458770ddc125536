"""The real engines, on this CPU, serving the tiny Qwen3 model (issue: real engines here).

What is checked against live vLLM and Ollama servers over loopback:
- each streams: vLLM's OpenAI chat completions (SSE) and Ollama's native /api/chat (NDJSON);
- with thinking on, each splits reasoning from the answer in its own wire field, and with
  thinking off there is no reasoning at all;
- the same conversation costs the same number of prompt tokens in both, which holds only if
  Duet's Modelfile TEMPLATE renders exactly what the Hugging Face chat template renders;
- the adapters turn both wire formats into the same typed events, and closing a stream makes
  vLLM abort the request.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx
import ollama
import pytest
from duet.bench.sse_client import parse_events
from duet.devstack import TINY_MODEL_NAME, DevStack
from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import AnswerDelta, Done, ReasoningDelta, StreamError, Usage
from duet.engines.http import EngineError
from duet.engines.ollama import OllamaEngine
from duet.engines.routes import ROUTE_NAMES
from duet.stackcheck import TOOL_TURNS, WEATHER_TOOL
from vllm_metrics import VllmMetrics

pytestmark = [pytest.mark.engines, pytest.mark.asyncio(loop_scope="function")]

GREEDY = {"temperature": 0.0, "max_tokens": 96, "seed": 0}
QUESTION = "What is the capital of France?"


async def sse_chunks(url: str, payload: dict) -> list[dict]:
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("POST", url, json=payload) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines()]
    return [event.json() for event in parse_events(lines) if event.data != "[DONE]"]


async def ndjson_lines(url: str, payload: dict) -> list[dict]:
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("POST", url, json=payload) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) async for line in response.aiter_lines() if line]


def vllm_payload(messages: list[dict], thinking: bool, **extra: object) -> dict:
    return {
        "model": TINY_MODEL_NAME,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "chat_template_kwargs": {"enable_thinking": thinking},
        **GREEDY,
        **extra,
    }


def ollama_payload(messages: list[dict], thinking: bool) -> dict:
    return {
        "model": TINY_MODEL_NAME,
        "messages": messages,
        "stream": True,
        "think": thinking,
        "options": {"temperature": 0, "num_predict": GREEDY["max_tokens"], "seed": 0},
    }


@dataclass(frozen=True)
class RawStream:
    """What one engine's own wire format said, read without Duet's adapters."""

    chunks: int  # upstream chunks that carried text
    reasoning: str
    answer: str
    prompt_tokens: int
    completion_tokens: int


async def vllm_raw(
    stack: DevStack, messages: list[dict], thinking: bool, **extra: object
) -> RawStream:
    chunks = await sse_chunks(
        f"{stack.vllm_url}/v1/chat/completions", vllm_payload(messages, thinking, **extra)
    )
    deltas = [choice["delta"] for chunk in chunks for choice in chunk.get("choices", ())]
    usage = chunks[-1]["usage"]  # include_usage: a last chunk with the counts and no choices
    return RawStream(
        chunks=sum(1 for d in deltas if d.get("content") or d.get("reasoning")
                   or d.get("reasoning_content")),
        # The field was renamed from reasoning_content to reasoning: read both.
        reasoning="".join(d.get("reasoning") or d.get("reasoning_content") or "" for d in deltas),
        answer="".join(d.get("content") or "" for d in deltas),
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )  # fmt: skip


async def ollama_raw(
    stack: DevStack, messages: list[dict], thinking: bool, **extra: object
) -> RawStream:
    lines = await ndjson_lines(
        f"{stack.ollama_url}/api/chat", ollama_payload(messages, thinking) | extra
    )
    assert lines[-1]["done"] is True
    messages_out = [line.get("message", {}) for line in lines]
    return RawStream(
        chunks=sum(1 for m in messages_out if m.get("content") or m.get("thinking")),
        reasoning="".join(m.get("thinking", "") for m in messages_out),
        answer="".join(m.get("content", "") for m in messages_out),
        prompt_tokens=lines[-1]["prompt_eval_count"],
        completion_tokens=lines[-1]["eval_count"],
    )


RAW = {"vllm": vllm_raw, "ollama": ollama_raw}


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
@pytest.mark.parametrize("engine", list(RAW))
async def test_engine_streams_and_splits_reasoning(
    dev_stack: DevStack, engine: str, thinking: bool
) -> None:
    raw = await RAW[engine](dev_stack, [{"role": "user", "content": QUESTION}], thinking)
    # More than one chunk: streamed. Not "many": when vLLM's API server falls behind (a stall on
    # this shared machine), vLLM merges the waiting tokens into one chunk.
    assert raw.chunks > 1, "a streamed answer arrives in more than one chunk"
    assert "Paris" in raw.answer
    assert "<think>" not in raw.answer and "</think>" not in raw.answer
    if thinking:
        assert "capital of France" in raw.reasoning
    else:
        assert raw.reasoning == ""
    assert raw.prompt_tokens > 0 and raw.completion_tokens > 0


# The tool and its round trip in each wire format, as `duet doctor --stack` sends them.
WEATHER_QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
TOOL_ROUND_TRIP = {
    "vllm": [WEATHER_QUESTION, *TOOL_TURNS["openai"]],
    "ollama": [WEATHER_QUESTION, *TOOL_TURNS["ollama"]],
}
EARLIER_REASONING = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is **Paris**.", "reasoning": "R1"},
    {"role": "user", "content": "Hello!"},
]

CONVERSATIONS = {
    "one-turn": [{"role": "user", "content": "Hello!"}],
    "system-and-turns": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "List three colors."},
        {"role": "assistant", "content": "Three colors:\n\n1. Red\n2. Green\n3. Blue"},
        {"role": "user", "content": "你好，今天怎么样？ Tell me about the ocean."},  # noqa: RUF001,
    ],
}


async def prompt_tokens(
    stack: DevStack,
    vllm_messages: list[dict],
    ollama_messages: list[dict],
    thinking: bool,
    tools: list[dict] | None = None,
) -> tuple[int, int]:
    """Prompt token counts of one conversation in vLLM (HF template) and Ollama (Modelfile)."""
    vllm_extra: dict = {"max_tokens": 1}
    ollama_extra: dict = {}
    if tools:
        # tool_choice none: vLLM still renders the tools into the prompt but needs no parser.
        vllm_extra |= {"tools": tools, "tool_choice": "none"}
        ollama_extra["tools"] = tools
    vllm, ollama = await asyncio.gather(
        vllm_raw(stack, vllm_messages, thinking, **vllm_extra),
        ollama_raw(stack, ollama_messages, thinking, **ollama_extra),
    )
    return vllm.prompt_tokens, ollama.prompt_tokens


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
async def test_prompt_token_counts_match(dev_stack: DevStack, name: str, thinking: bool) -> None:
    messages = CONVERSATIONS[name]
    vllm_count, ollama_count = await prompt_tokens(dev_stack, messages, messages, thinking)
    assert vllm_count == ollama_count


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
async def test_prompt_token_counts_match_with_earlier_reasoning(
    dev_stack: DevStack, thinking: bool
) -> None:
    """Both templates drop the reasoning of turns before the last user message."""
    ollama_messages = [
        {k.replace("reasoning", "thinking"): v for k, v in m.items()} for m in EARLIER_REASONING
    ]
    without = [{k: v for k, v in m.items() if k != "reasoning"} for m in EARLIER_REASONING]
    vllm_count, ollama_count = await prompt_tokens(
        dev_stack, EARLIER_REASONING, ollama_messages, thinking
    )
    assert vllm_count == ollama_count
    assert (await prompt_tokens(dev_stack, without, without, thinking)) == (vllm_count,) * 2


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
async def test_prompt_token_counts_match_for_a_tool_round_trip(
    dev_stack: DevStack, thinking: bool
) -> None:
    system = {"role": "system", "content": "You are a helpful assistant."}
    vllm_count, ollama_count = await prompt_tokens(
        dev_stack,
        [system, *TOOL_ROUND_TRIP["vllm"]],
        [system, *TOOL_ROUND_TRIP["ollama"]],
        thinking,
        tools=[WEATHER_TOOL],
    )
    assert vllm_count == ollama_count


def request(text: str, thinking: bool, max_tokens: int = 96) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage("user", text),),
        thinking=thinking,
        sampling=Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=max_tokens, seed=0),
    )


@pytest.mark.parametrize("engine_name", ROUTE_NAMES)
@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
async def test_adapters_yield_the_same_event_shape(
    engines: dict[str, Engine], engine_name: str, thinking: bool
) -> None:
    events = [e async for e in engines[engine_name].stream_chat(request(QUESTION, thinking))]
    errors = [e for e in events if isinstance(e, StreamError)]
    assert not errors, errors
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert "Paris" in answer
    assert ("capital of France" in reasoning) is thinking
    assert isinstance(events[-1], Done)
    usages = [e for e in events if isinstance(e, Usage)]
    assert len(usages) == 1 and usages[0].completion_tokens
    stamps = [e.at for e in events]
    assert stamps == sorted(stamps), "arrival stamps follow the stream's order"
    if thinking:
        first_answer = next(i for i, e in enumerate(events) if isinstance(e, AnswerDelta))
        assert all(not isinstance(e, ReasoningDelta) for e in events[first_answer:])


async def test_closing_the_stream_aborts_the_vllm_request(
    engines: dict[str, Engine], vllm_metrics: VllmMetrics
) -> None:
    """Closing the adapter's stream closes the connection, and vLLM aborts the request: it stops
    running long before its 3,000-token budget is spent, without ending on its own."""
    max_tokens = 3000
    before = vllm_metrics.quiet_books()
    stream = engines["vllm"].stream_chat(
        request("Tell me a story that never ends.", thinking=False, max_tokens=max_tokens)
    )
    async for event in stream:
        if isinstance(event, AnswerDelta | ReasoningDelta):
            break
    await stream.aclose()
    await asyncio.to_thread(vllm_metrics.assert_aborted_since, before, max_tokens)


async def test_a_failed_health_request_says_what_failed(dev_stack: DevStack) -> None:
    """The adapters' small GETs (the /v1 health checks) turn HTTP errors into EngineErrors with
    the status, which the health badges show."""
    engine = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, TINY_MODEL_NAME)
    try:
        assert (await engine.get_json("/v1/models"))["data"]
        with pytest.raises(EngineError) as missing:
            await engine.get_json("/api/no-such-route")
        assert missing.value.status == 404 and "HTTP 404" in missing.value.message
    finally:
        await engine.aclose()


async def test_ollama_health_says_whether_the_model_is_created_and_loaded(
    dev_stack: DevStack,
) -> None:
    """Through the official client: the tiny model is listed under its default tag, and after
    an answer it is in memory; a model never created is down with a sentence that says so."""
    engine = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, TINY_MODEL_NAME)
    absent = OllamaEngine("ollama", "Ollama", dev_stack.ollama_url, "no-such-model")
    try:
        answer = engine.stream_chat(request(QUESTION, thinking=False, max_tokens=4))
        assert [event async for event in answer if isinstance(event, Done)]
        health = await engine.health()
        assert health.up, health.detail
        assert f"{TINY_MODEL_NAME}:latest" in health.models
        assert health.detail.startswith(f"{TINY_MODEL_NAME}:latest is loaded with a 4,096-token")
        missing = await absent.health()
        assert not missing.up and missing.models == health.models
        assert missing.detail == "no-such-model has not been created in Ollama"
    finally:
        await engine.aclose()
        await absent.aclose()


async def test_the_dev_stack_gives_ollama_one_compute_thread(dev_stack: DevStack) -> None:
    """As vLLM's CPU backend leaves a core to everything else, so does the dev stack's Ollama
    (devstack.TINY_OLLAMA_THREADS): the model Ollama serves carries num_thread 1."""
    async with ollama.AsyncClient(host=dev_stack.ollama_url, timeout=10) as client:
        shown = await client.show(TINY_MODEL_NAME)
    assert shown.parameters is not None
    parameters = shown.parameters.split("\n")
    assert [line.split() for line in parameters if line.startswith("num_thread")] == [
        ["num_thread", "1"]
    ]
