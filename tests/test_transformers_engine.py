"""The third route: Hugging Face's own `transformers serve`, on this CPU, serving the tiny Qwen3.

Streaming chat with thinking on and off goes through the shared adapter test
(test_engines.test_adapters_yield_the_same_event_shape, over every route). Here: what is
particular to this server, and the two facts the route rests on, each from the server itself:
the same conversation costs the same prompt tokens as in vLLM, and closing the stream stops its
generation.
"""

from __future__ import annotations

import time

import httpx
import pytest
from duet.bench.sse_client import parse_events
from duet.devstack import TINY_MODEL_NAME, DevStack
from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import AnswerDelta, Done, ReasoningDelta, StreamEvent, Usage

pytestmark = [pytest.mark.engines, pytest.mark.asyncio(loop_scope="function")]

STORY = "Tell me a story that never ends."
CONVERSATION = (
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "What is the capital of France?"),
    ChatMessage("assistant", "Paris.", reasoning="The user asks for the capital of France."),
    ChatMessage("user", "你好，今天怎么样？ Tell me about the ocean."),  # noqa: RUF001
)


def greedy(messages: tuple[ChatMessage, ...], thinking: bool, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        messages=messages,
        thinking=thinking,
        sampling=Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=max_tokens),
    )


async def collect(engine: Engine, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in engine.stream_chat(request)]


def usage_of(events: list[StreamEvent]) -> Usage:
    [usage] = [event for event in events if isinstance(event, Usage)]
    return usage


@pytest.mark.parametrize("thinking", [True, False], ids=["thinking", "no-thinking"])
async def test_prompt_tokens_equal_vllms_for_the_same_conversation(
    engines: dict[str, Engine], thinking: bool
) -> None:
    """Both servers render Qwen3's chat template from the model's tokenizer config, earlier
    reasoning and a non-Latin turn included: the counts agree only if they render the same."""
    request = greedy(CONVERSATION, thinking, max_tokens=1)
    transformers = usage_of(await collect(engines["transformers"], request))
    vllm = usage_of(await collect(engines["vllm"], request))
    assert transformers.prompt_tokens == vllm.prompt_tokens
    assert transformers.prompt_tokens is not None and transformers.prompt_tokens > 40


async def test_with_thinking_off_the_echo_of_the_empty_think_block_is_dropped(
    dev_stack: DevStack, engines: dict[str, Engine]
) -> None:
    """On the wire the server's first delta, before any token is generated, is the template's
    prefilled `<think>\\n\\n</think>` read back as reasoning; the adapter leaves it out, so the
    first text event is the model's own."""
    payload = {
        "model": TINY_MODEL_NAME,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": True,
        "max_tokens": 4,
        "temperature": 0.0,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    url = f"{dev_stack.transformers_url}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(url, json=payload)
    chunks = [e.json() for e in parse_events(response.text.splitlines()) if e.data != "[DONE]"]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert {"reasoning_content": "\n\n"} in deltas[:2], deltas[:3]
    assert chunks[-1]["usage"]["completion_tokens"] == 4  # usage comes unasked, last
    events = await collect(engines["transformers"], greedy(CONVERSATION[1:2], False, 8))
    assert not [event for event in events if isinstance(event, ReasoningDelta)]
    assert "Paris" in "".join(e.text for e in events if isinstance(e, AnswerDelta))


# Tokens' time the next request may wait for its first token after a Stop: far less than the
# rest of the stopped story's 3,000-token budget, far more than a machine stall.
QUEUED_BEHIND_TOKENS = 256


async def test_closing_the_stream_stops_the_generation(engines: dict[str, Engine]) -> None:
    """`transformers serve` generates one request at a time on one inference thread, so a
    request sent right after a Stop waits for whatever still runs there. After the stream of a
    story with a 3,000-token budget is closed at its first text, the same greedy request with
    64 tokens more than were read ends at its budget (`length`: the story would have gone on)
    and yet its first token comes within 256 tokens' time of asking: nothing was left running
    ahead of it. Were the story still being written, it would wait for the rest of its budget
    (a run with the stream left open waited 201 s), far more than 256 tokens; a stall of this
    busy machine on the passing side costs seconds at most."""
    engine = engines["transformers"]
    stream = engine.stream_chat(greedy((ChatMessage("user", STORY),), False, max_tokens=3000))
    read = 0
    async for event in stream:
        if isinstance(event, AnswerDelta):
            read += 1
            break
    await stream.aclose()

    extra = 64
    asked = time.perf_counter()
    events = await collect(engine, greedy((ChatMessage("user", STORY),), False, read + extra))
    texts = [event for event in events if isinstance(event, AnswerDelta)]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "length", events[-3:]
    tokens = usage_of(events).completion_tokens
    assert tokens == read + extra
    first_token = texts[0].at - asked
    per_token = (texts[-1].at - texts[0].at) / (len(texts) - 1)
    assert first_token < QUEUED_BEHIND_TOKENS * per_token, (
        f"the next request's first token took {first_token:.2f} s, {per_token * 1000:.0f} ms a"
        f" token: it waited behind the stopped story"
    )
