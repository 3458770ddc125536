"""Tool calls in the adapters, without engines: what goes out, and how pieces become calls.

tests/test_tools.py makes such requests against the live engines.
"""

from __future__ import annotations

from duet.engines.base import ChatMessage, ChatRequest, Sampling
from duet.engines.events import ToolCall, ToolCallDelta, tool_calls
from duet.engines.ollama import OllamaEngine
from duet.engines.openai import OllamaOpenAIEngine, VllmEngine
from duet.tinymodel.corpus import WEATHER_TOOL

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
