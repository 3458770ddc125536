"""Tool calls in the adapters, without engines: what goes out, and what comes back as events.

The streams were recorded from the real engines serving the tiny model v3 (vLLM 0.32.0 with
`--reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser hermes`; Ollama v0.24.0
with Duet's TEMPLATE, native and /v1) for "What is the weather in Paris?" with the weather tool
offered, thinking on and greedy sampling: every line as it came, kept in
tests/recorded_tool_streams.json. tests/test_tools.py makes the same requests against live
engines.
"""

from __future__ import annotations

import json
from pathlib import Path

from duet.engines.base import ChatMessage, ChatRequest, Sampling
from duet.engines.events import (
    AnswerDelta,
    Done,
    ReasoningDelta,
    ToolCall,
    ToolCallDelta,
    tool_calls,
)
from duet.engines.ollama import OllamaEngine, events_from_line
from duet.engines.openai import OllamaOpenAIEngine, VllmEngine, events_from_chunk, parse_sse_line
from duet.tinymodel.corpus import WEATHER_TOOL

# Each stream as it came from the engine, line by line (see "about" in the file).
RECORDED = json.loads(Path(__file__).with_name("recorded_tool_streams.json").read_text())
VLLM_STREAM, OLLAMA_OPENAI_STREAM, OLLAMA_STREAM = (
    RECORDED[name] for name in ("vllm", "ollama-openai", "ollama")
)

SAMPLING = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=64)
CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
CONVERSATION = (
    ChatMessage("user", "What is the weather in Paris?"),
    ChatMessage("assistant", "", reasoning="I will call get_weather.", tool_calls=(CALL,)),
    ChatMessage("tool", '{"city": "Paris", "condition": "rainy"}', tool_call_id="call_1"),
)
REQUEST = ChatRequest(CONVERSATION, thinking=True, sampling=SAMPLING, tools=(WEATHER_TOOL,))


def test_openai_payload_carries_tools_calls_and_results() -> None:
    for engine in (
        VllmEngine("vllm", "vLLM", "http://x", "m"),
        OllamaOpenAIEngine("ollama-openai", "Ollama (/v1)", "http://x", "m"),
    ):
        payload = engine.payload(REQUEST)
        assert payload["tools"] == [WEATHER_TOOL]
        assert "tool_choice" not in payload  # "auto", the default: the model decides
        assert payload["messages"][1:] == [
            {
                "role": "assistant",
                "content": "",
                "reasoning": "I will call get_weather.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "content": '{"city": "Paris", "condition": "rainy"}',
                "tool_call_id": "call_1",
            },
        ]


def test_ollama_payload_sends_arguments_as_an_object_and_names_the_tool() -> None:
    payload = OllamaEngine("ollama", "Ollama", "http://x", "m").payload(REQUEST)
    assert payload["tools"] == [WEATHER_TOOL]
    assert payload["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "thinking": "I will call get_weather.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {
            "role": "tool",
            "content": '{"city": "Paris", "condition": "rainy"}',
            "tool_call_id": "call_1",
            "tool_name": "get_weather",
        },
    ]


def test_arguments_that_are_no_object_go_to_ollama_as_they_are() -> None:
    broken = ChatMessage("assistant", "", tool_calls=(ToolCall("c", "f", "not json"),))
    chat = ChatRequest((broken,), thinking=False, sampling=SAMPLING)
    entry = OllamaEngine("ollama", "Ollama", "http://x", "m").payload(chat)["messages"][0]
    assert entry["tool_calls"][0]["function"]["arguments"] == "not json"


def test_requests_without_tools_say_nothing_of_them() -> None:
    chat = ChatRequest((ChatMessage("user", "Hi"),), thinking=False, sampling=SAMPLING)
    for engine in (
        VllmEngine("vllm", "vLLM", "http://x", "m"),
        OllamaEngine("ollama", "Ollama", "http://x", "m"),
    ):
        payload = engine.payload(chat)
        assert "tools" not in payload
        assert payload["messages"] == [{"role": "user", "content": "Hi"}]


def test_tool_calls_assembles_pieces_by_index() -> None:
    deltas = [
        ToolCallDelta(0, "a", "get_weather", "", at=1.0, chunk=0),
        ToolCallDelta(1, "b", "get_time", '{"zone": ', at=1.0, chunk=0),
        ToolCallDelta(0, None, None, '{"city": ', at=2.0, chunk=1),
        ToolCallDelta(0, None, None, '"Paris"}', at=3.0, chunk=2),
        ToolCallDelta(1, None, None, '"UTC"}', at=3.0, chunk=2),
    ]
    assert tool_calls(deltas) == [
        ToolCall("a", "get_weather", '{"city": "Paris"}'),
        ToolCall("b", "get_time", '{"zone": "UTC"}'),
    ]
    assert tool_calls([]) == []


def sse_events(lines: list[str]) -> tuple[list, str | None]:
    """What the OpenAI-format adapters make of these lines: the events, and the finish reason."""
    events, finish = [], None
    for index, line in enumerate(lines):
        chunk = parse_sse_line(line)
        if chunk is None:
            continue
        got, reason = events_from_chunk(chunk, at=float(index), index=index)
        events += got
        finish = reason or finish
    return events, finish


def test_vllm_streams_a_call_in_pieces_that_make_one_call() -> None:
    events, finish = sse_events(VLLM_STREAM)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) == 7  # the name first, then the arguments in six pieces
    assert (deltas[0].id, deltas[0].name, deltas[0].arguments) == (
        "chatcmpl-tool-830dcc8fbbb6dc0c",
        "get_weather",
        "",
    )
    assert all(d.id is None and d.name is None for d in deltas[1:])
    assert len({d.chunk for d in deltas}) == 7  # one per upstream chunk
    assert tool_calls(deltas) == [
        ToolCall("chatcmpl-tool-830dcc8fbbb6dc0c", "get_weather", '{"city": "Paris"}')
    ]
    assert finish == "tool_calls"
    # Before the call: the reasoning, and the blank line vLLM sends after </think> as answer.
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning.strip() == "The user asks about the weather in Paris. I will call get_weather."
    assert [e.text for e in events if isinstance(e, AnswerDelta)] == ["\n\n"]


def test_ollama_openai_sends_a_call_whole() -> None:
    events, finish = sse_events(OLLAMA_OPENAI_STREAM)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert tool_calls(deltas) == [ToolCall("call_6edx23kn", "get_weather", '{"city":"Paris"}')]
    assert finish == "tool_calls"


def test_ollama_native_call_becomes_json_text_and_the_answer_ends_for_it() -> None:
    events = [
        event
        for index, line in enumerate(OLLAMA_STREAM)
        for event in events_from_line(json.loads(line), at=float(index), index=index)
    ]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert tool_calls(deltas) == [ToolCall("call_ng58phrx", "get_weather", '{"city": "Paris"}')]
    # The line says "stop"; the adapter's stream (below) says what Ollama's /v1 says.
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"


async def test_ollama_adapter_ends_a_calling_answer_with_tool_calls(monkeypatch) -> None:
    async def recorded(*args, **kwargs):
        for index, line in enumerate(OLLAMA_STREAM):
            yield float(index), line

    monkeypatch.setattr("duet.engines.ollama.post_lines", recorded)
    engine = OllamaEngine("ollama", "Ollama", "http://x", "m")
    events = [e async for e in engine.stream_chat(REQUEST)]
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"
    assert len([e for e in events if isinstance(e, ToolCallDelta)]) == 1
