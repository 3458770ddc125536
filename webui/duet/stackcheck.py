"""`duet doctor --stack`: does a running stack behave as Duet's tests say it does?

It talks to the engines the web UI is configured for (DUET_VLLM_URL, DUET_OLLAMA_URL and the
models, as `duet serve` reads them), through the same adapters (`duet.engines`), and gives one
verdict per line:

- each engine answers, serves the configured model, and which release it is (against the
  release Duet's tests ran, `duet/versions.env`);
- the same conversations cost the same prompt tokens in vLLM and Ollama: system prompt,
  multi-turn, an earlier turn with reasoning, a tool call round trip and non-ASCII text, each
  with thinking on and off. vLLM renders prompts with the model's own chat template, Ollama
  with its Modelfile's TEMPLATE; equal counts are the evidence that the two agree, and so that
  both engines answer the same prompt;
- thinking arrives split from the answer by both engines, and not at all when it is off;
- streams arrive unbuffered: about one chunk per generated token from each engine;
- single-stream decode speed against the ceiling the GPU's memory bandwidth sets (bandwidth ÷
  bytes of weights read per token), from a small table of common cards.

Every request is small (one token for the prompt counts, a few dozen to a few hundred tokens
otherwise), so the check takes seconds on a GPU. It uses the native Ollama API, the one Duet
streams from by default.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from duet.doctor import VLLM_MODELS, Finding, Gpu, query_gpus, report
from duet.engines import build_engines
from duet.engines.base import ChatMessage, ChatRequest, Engine, Sampling
from duet.engines.events import (
    AnswerDelta,
    Done,
    EngineName,
    ReasoningDelta,
    StreamError,
    Usage,
)
from duet.engines.http import EngineError, HTTPEngine, post_lines
from duet.engines.ollama import MANAGEMENT_ERRORS, OllamaEngine, events_from_line
from duet.engines.openai import OpenAICompatibleEngine, events_from_chunk, parse_sse_line
from duet.sampling import recommended_sampling
from duet.settings import Settings
from duet.versions import OLLAMA_VERSION, VLLM_VERSION

# The engines compared, with the release Duet's tests ran: vLLM, and Ollama's native API.
CHECKED: dict[EngineName, str] = {"vllm": VLLM_VERSION, "ollama": OLLAMA_VERSION}
LABELS = {"vllm": "vLLM", "ollama": "Ollama"}

# --- the conversations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    name: str
    messages: tuple[ChatMessage, ...]
    # Appends an assistant tool call and its result, and offers the tool, in each wire format.
    tool_round_trip: bool = False


# Accents, Chinese with its full-width punctuation, Cyrillic and an emoji: bytes a tokenizer and
# a template must carry through unchanged.
NON_ASCII = "Bonjour, ça va ? 你好，今天怎么样？ Привет! 🙂 Tell me about the sea."  # noqa: RUF001
SYSTEM = ChatMessage("system", "You are a helpful assistant. Answer briefly.")
CONVERSATIONS = (
    Conversation("system prompt", (SYSTEM, ChatMessage("user", "List three colors."))),
    Conversation(
        "multi-turn",
        (
            ChatMessage("user", "List three colors."),
            ChatMessage("assistant", "Three colors:\n\n1. Red\n2. Green\n3. Blue"),
            ChatMessage("user", "Now three animals."),
        ),
    ),
    Conversation(
        "earlier turn with reasoning",
        (
            ChatMessage("user", "What is the capital of France?"),
            ChatMessage(
                "assistant",
                "The capital of France is **Paris**.",
                reasoning="The user asks for the capital of France. That is Paris.",
            ),
            ChatMessage("user", "And of Italy?"),
        ),
    ),
    Conversation(
        "tool call round trip",
        (SYSTEM, ChatMessage("user", "What is the weather in Paris?")),
        tool_round_trip=True,
    ),
    Conversation("non-ASCII text", (ChatMessage("user", NON_ASCII),)),
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
TOOL_RESULT = "Sunny, 21 °C"
# The call and its result as each API takes them. OpenAI clients send the arguments as a JSON
# string; compact, it is what Qwen3's chat template and Duet's TEMPLATE both print.
TOOL_TURNS = {
    "openai": [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": TOOL_RESULT},
    ],
    "ollama": [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": TOOL_RESULT},
    ],
}

ONE_TOKEN = Sampling(temperature=0.0, top_p=1.0, top_k=0, max_tokens=1, seed=0)
QUESTION = "What is the capital of France?"
ENDLESS = "Tell me a story that never ends."
THINKING_BUDGET = 1024  # tokens: room for a short question's reasoning and its answer
ANSWER_BUDGET = 96
STREAM_TOKENS = 128
# A stream that arrives in fewer chunks than this share of its tokens is being held somewhere.
MIN_CHUNKS_PER_TOKEN = 0.5
MIN_TOKENS_TO_JUDGE = 16
# Below this share of the bandwidth ceiling, something other than the card sets the speed.
MIN_SHARE_OF_CEILING = 0.4


def sampling(thinking: bool, max_tokens: int) -> Sampling:
    return replace(recommended_sampling(thinking), max_tokens=max_tokens, seed=0)


# --- reading an engine's answer ------------------------------------------------------------------


@dataclass
class Answer:
    """One streamed answer, as the adapter's events told it."""

    reasoning: str = ""
    text: str = ""
    reasoning_after_text: bool = False
    chunk_times: dict[int, float] = field(default_factory=dict)  # text chunk → arrival
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


async def stream_answer(engine: Engine, request: ChatRequest) -> Answer:
    """Run one request through the adapter; EngineError if the engine refuses or breaks off."""
    answer = Answer()
    async for event in engine.stream_chat(request):
        if isinstance(event, StreamError):
            raise EngineError(event.message, event.status)
        if isinstance(event, ReasoningDelta):
            answer.reasoning += event.text
            answer.reasoning_after_text |= bool(answer.text)
        elif isinstance(event, AnswerDelta):
            answer.text += event.text
        elif isinstance(event, Usage):
            answer.prompt_tokens = event.prompt_tokens
            answer.completion_tokens = event.completion_tokens
        elif isinstance(event, Done):
            answer.finish_reason = event.finish_reason
        if isinstance(event, ReasoningDelta | AnswerDelta):
            answer.chunk_times.setdefault(event.chunk, event.at)
    return answer


def wire_format(engine: Engine) -> str:
    return "ollama" if isinstance(engine, OllamaEngine) else "openai"


async def prompt_tokens(engine: HTTPEngine, conversation: Conversation, thinking: bool) -> int:
    """What the engine counts as the prompt of `conversation`, generating one token.

    The adapter builds the request; a tool round trip adds its turns and the tool in the
    engine's own format, which Duet's typed messages do not carry. vLLM is asked with
    tool_choice "none": it renders the tools into the prompt all the same, and needs no tool
    call parser for it."""
    payload = engine.payload(ChatRequest(conversation.messages, thinking, ONE_TOKEN))
    if conversation.tool_round_trip:
        payload["messages"] += TOOL_TURNS[wire_format(engine)]
        payload["tools"] = [WEATHER_TOOL]
        if wire_format(engine) == "openai":
            payload["tool_choice"] = "none"
    return await payload_prompt_tokens(engine, payload)


async def payload_prompt_tokens(engine: HTTPEngine, payload: dict[str, Any]) -> int:
    """Send a request the adapter built (and the caller extended); read its prompt count with
    the adapter's own parsers."""
    if isinstance(engine, OllamaEngine):
        path, headers = "/api/chat", {}
    elif isinstance(engine, OpenAICompatibleEngine):
        path, headers = "/v1/chat/completions", engine.headers
    else:
        raise TypeError(f"no wire format known for {type(engine).__name__}")
    lines = post_lines(engine.client, engine.url(path), payload, engine.label, headers)
    counted = None
    async for at, line in lines:
        if isinstance(engine, OllamaEngine):
            events = events_from_line(json.loads(line), at, 0)
        else:
            chunk = parse_sse_line(line)
            events = events_from_chunk(chunk, at, 0)[0] if chunk else []
        for event in events:
            if isinstance(event, StreamError):
                raise EngineError(event.message, event.status)
            if isinstance(event, Usage) and event.prompt_tokens is not None:
                counted = event.prompt_tokens
    if counted is None:
        raise EngineError(f"{engine.label} reported no prompt token count")
    return counted


# --- the checks ----------------------------------------------------------------------------------


async def engine_finding(name: str, engine: HTTPEngine, pinned: str) -> Finding:
    label = LABELS[name]
    health = await engine.health()
    if not health.up:
        return Finding(
            label,
            "problem",
            health.detail or f"{label} does not serve {engine.model}",
            f"check DUET_{name.upper()}_URL and DUET_{name.upper()}_MODEL "
            f"(served: {', '.join(health.models) or 'nothing'})",
        )
    version_path = "/api/version" if name == "ollama" else "/version"
    try:
        version = (await engine.get_json(version_path)).get("version", "unknown")
    except (EngineError, AttributeError):
        version = "unknown"
    served = f"{label} {version} at {engine.base_url} serves {engine.model}"
    if version != pinned:
        return Finding(
            label,
            "note",
            f"{served}; Duet's tests ran {pinned}: the lines below say whether this one "
            "behaves the same",
        )
    return Finding(label, "ok", f"{served}, the release Duet's tests ran")


async def tools_rendered(engine: HTTPEngine, conversation: Conversation) -> bool:
    """Whether vLLM puts the offered tools into the prompt at tool_choice "none" (it does not
    when run with --exclude-tools-when-tool-choice-none): with them the prompt is longer."""
    payload = engine.payload(ChatRequest(conversation.messages, False, ONE_TOKEN))
    without = await payload_prompt_tokens(engine, payload)
    with_tools = await payload_prompt_tokens(
        engine, payload | {"tools": [WEATHER_TOOL], "tool_choice": "none"}
    )
    return with_tools > without


async def parity_finding(
    conversation: Conversation, vllm: HTTPEngine, ollama: HTTPEngine
) -> Finding:
    check = f"prompt tokens, {conversation.name}"
    if conversation.tool_round_trip:
        try:
            rendered = await tools_rendered(vllm, conversation)
        except EngineError as error:
            if error.status == 400:
                return Finding(
                    check, "note", f"not checked: vLLM runs without tool calling ({error})"
                )
            return Finding(check, "problem", f"the request failed: {error}")
        if not rendered:
            return Finding(
                check,
                "note",
                "not checked: vLLM leaves tools out of the prompt at tool_choice none "
                "(--exclude-tools-when-tool-choice-none)",
            )
    counts: dict[bool, tuple[int, int]] = {}
    try:
        for thinking in (True, False):
            vllm_count, ollama_count = await asyncio.gather(
                prompt_tokens(vllm, conversation, thinking),
                prompt_tokens(ollama, conversation, thinking),
            )
            counts[thinking] = (vllm_count, ollama_count)
    except EngineError as error:
        return Finding(check, "problem", f"the request failed: {error}")
    differ = [
        f"thinking {'on' if thinking else 'off'}: vLLM {v} prompt tokens, Ollama {o}"
        for thinking, (v, o) in counts.items()
        if v != o
    ]
    if differ:
        return Finding(
            check,
            "problem",
            "; ".join(differ) + ": Ollama's TEMPLATE renders this conversation differently "
            "from the model's chat template, so the engines answer different prompts",
            "create the Ollama model from a Modelfile `duet modelfile` wrote (its TEMPLATE "
            "mirrors Qwen3's chat template); with Ollama 0.30 or newer also set "
            "OLLAMA_GO_TEMPLATE=1 so that the Modelfile's TEMPLATE is the one used",
        )
    on, off = counts[True][0], counts[False][0]
    return Finding(check, "ok", f"the same in both: {on} tokens thinking on, {off} off")


def has_tags(text: str) -> bool:
    return "<think>" in text or "</think>" in text


async def thinking_finding(name: str, engine: Engine) -> Finding:
    check = f"thinking, {LABELS[name]}"
    try:
        on = await stream_answer(
            engine,
            ChatRequest((ChatMessage("user", QUESTION),), True, sampling(True, THINKING_BUDGET)),
        )
        off = await stream_answer(
            engine,
            ChatRequest((ChatMessage("user", QUESTION),), False, sampling(False, ANSWER_BUDGET)),
        )
    except EngineError as error:
        return Finding(check, "problem", f"the request failed: {error}")
    wrong = []
    if not on.reasoning:
        wrong.append("thinking on, no reasoning arrived apart from the answer")
    if not on.text:
        wrong.append(
            f"thinking on, no answer after {on.completion_tokens} tokens of reasoning"
            if on.finish_reason == "length"
            else "thinking on, no answer arrived"
        )
    if on.reasoning_after_text:
        wrong.append("thinking on, reasoning arrived after the answer had begun")
    if has_tags(on.text) or has_tags(on.reasoning) or has_tags(off.text):
        wrong.append("<think> tags arrived as text")
    if off.reasoning:
        wrong.append(f"thinking off, reasoning arrived anyway ({off.reasoning[:60]!r})")
    if not off.text:
        wrong.append("thinking off, no answer arrived")
    if wrong:
        return Finding(
            check,
            "problem",
            "; ".join(wrong),
            "vLLM needs --reasoning-parser qwen3; Ollama needs a TEMPLATE that renders "
            ".Thinking (a Modelfile `duet modelfile` wrote)",
        )
    return Finding(
        check,
        "ok",
        f"thinking on: {len(on.reasoning):,} characters of reasoning, then the answer; "
        "thinking off: the answer alone",
    )


@dataclass(frozen=True)
class Stream:
    """How one long answer arrived: its tokens, the chunks carrying text, their arrival span."""

    tokens: int
    chunks: int
    span: float  # seconds from the first text chunk to the last

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first, as vLLM's TPOT counts them."""
        return (self.tokens - 1) / self.span if self.span > 0 else 0.0


async def measure_stream(engine: Engine) -> Stream:
    answer = await stream_answer(
        engine,
        ChatRequest((ChatMessage("user", ENDLESS),), False, sampling(False, STREAM_TOKENS)),
    )
    times = sorted(answer.chunk_times.values())
    span = times[-1] - times[0] if times else 0.0
    return Stream(answer.completion_tokens or 0, len(times), span)


def streaming_finding(name: str, stream: Stream) -> Finding:
    check = f"streaming, {LABELS[name]}"
    seen = f"{stream.tokens} tokens arrived in {stream.chunks} chunks"
    if stream.tokens < MIN_TOKENS_TO_JUDGE:
        return Finding(check, "note", f"not judged: the answer was too short ({seen})")
    if stream.chunks < stream.tokens * MIN_CHUNKS_PER_TOKEN:
        return Finding(
            check,
            "problem",
            f"{seen}: tokens are held and sent in bursts",
            "look for a buffering proxy between Duet and the engine, or a stream interval "
            "above 1 (vLLM's --stream-interval)",
        )
    return Finding(check, "ok", f"{seen}: unbuffered")


# Memory bandwidth in GB/s (10^9 bytes a second), from NVIDIA's data sheets, by the name
# nvidia-smi reports (matched as a whole word, the longest name first).
GPU_BANDWIDTH_GBS = {
    "GeForce RTX 3090": 936,
    "GeForce RTX 3090 Ti": 1008,
    "GeForce RTX 4080": 717,
    "GeForce RTX 4090": 1008,
    "GeForce RTX 5090": 1792,
    "RTX A6000": 768,
    "RTX 6000 Ada Generation": 960,
    "A10": 600,
    "L4": 300,
    "L40S": 864,
    "A100-SXM4-40GB": 1555,
    "A100-PCIE-40GB": 1555,
    "A100-SXM4-80GB": 2039,
    "A100 80GB PCIe": 1935,
    "H100 80GB HBM3": 3350,
    "H100 PCIe": 2000,
    "Tesla T4": 320,
}


def bandwidth_of(gpu_name: str) -> float | None:
    """The card's memory bandwidth in bytes a second, or None for a card not in the table."""
    for known in sorted(GPU_BANDWIDTH_GBS, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(known)}(?![\w-])", gpu_name):
            return GPU_BANDWIDTH_GBS[known] * 1e9
    return None


def speed_finding(name: str, stream: Stream, gpu: str | None, weights: float | None) -> Finding:
    """Single-stream decode speed against bandwidth ÷ bytes read per token. At this short
    context the KV cache read per token is a fraction of a percent of the weights'."""
    check = f"decode speed, {LABELS[name]}"
    rate = f"{stream.decode_rate:.1f} tokens/s single-stream"
    if stream.tokens < MIN_TOKENS_TO_JUDGE:
        return Finding(check, "note", f"not judged: the answer was too short ({stream.tokens})")
    if gpu is None:
        return Finding(check, "note", f"{rate}; no GPU found (nvidia-smi), so no ceiling")
    bandwidth = bandwidth_of(gpu)
    if bandwidth is None:
        return Finding(check, "note", f"{rate}; no bandwidth known for {gpu}")
    if weights is None:
        return Finding(check, "note", f"{rate}; the size of the model's weights is not known")
    ceiling = bandwidth / weights
    share = stream.decode_rate / ceiling
    measured = (
        f"{rate}, {share:.0%} of the {ceiling:,.0f} tokens/s that {gpu}'s "
        f"{bandwidth / 1e9:,.0f} GB/s allow for {weights / 1e9:.1f} GB of weights"
    )
    if share < MIN_SHARE_OF_CEILING:
        return Finding(
            check,
            "problem",
            measured,
            "something other than the card sets the speed: layers on the CPU (`ollama ps`), "
            "another process on the card (nvidia-smi), or a card other than the one named",
        )
    return Finding(check, "ok", measured)


async def weights_bytes(name: str, engine: HTTPEngine) -> float | None:
    """Bytes of weights read per token: Ollama says how big its model is; for vLLM, the sizes
    Duet knows (duet.doctor.VLLM_MODELS)."""
    if isinstance(engine, OllamaEngine):
        try:
            listed = await engine.management.list()
        except MANAGEMENT_ERRORS:
            return None
        names = (engine.model, f"{engine.model}:latest")
        return next((float(m.size) for m in listed.models if m.model in names and m.size), None)
    known = VLLM_MODELS.get(engine.model)
    return known.weights_bytes if known else None


# --- the whole run -------------------------------------------------------------------------------


def not_checked(check: str, down: list[str]) -> Finding:
    lines = f"the {' and '.join(down)} line{'s' if len(down) > 1 else ''} above"
    return Finding(check, "note", f"not checked: see {lines}")


async def behaviour_findings(name: str, engine: HTTPEngine, gpu_name: str | None) -> list[Finding]:
    """The thinking, streaming and decode speed lines of one engine that answers."""
    label = LABELS[name]
    thinking = await thinking_finding(name, engine)
    try:
        stream = await measure_stream(engine)
    except EngineError as error:
        return [
            thinking,
            Finding(f"streaming, {label}", "problem", f"the request failed: {error}"),
            Finding(f"decode speed, {label}", "note", "not checked: the stream failed"),
        ]
    weights = await weights_bytes(name, engine)
    return [
        thinking,
        streaming_finding(name, stream),
        speed_finding(name, stream, gpu_name, weights),
    ]


def adapter(engines: dict[EngineName, Engine], name: EngineName) -> HTTPEngine:
    engine = engines[name]
    assert isinstance(engine, HTTPEngine), f"{name}: not an HTTP adapter"
    return engine


async def check_stack(settings: Settings, gpu_name: str | None = None) -> list[Finding]:
    """Every line of the report, in order. `gpu_name` names the card where nvidia-smi cannot
    see it (inside the web UI's container); by default the first card nvidia-smi lists."""
    if gpu_name is None:
        gpus: list[Gpu] = query_gpus() or []
        gpu_name = gpus[0].name if gpus else None
    engines = build_engines(settings)
    checked = {name: adapter(engines, name) for name in CHECKED}
    try:
        findings = [
            await engine_finding(name, engine, CHECKED[name]) for name, engine in checked.items()
        ]
        down = [
            LABELS[name] for name, f in zip(checked, findings, strict=True) if f.status == "problem"
        ]
        for conversation in CONVERSATIONS:
            if down:
                findings.append(not_checked(f"prompt tokens, {conversation.name}", down))
            else:
                findings.append(
                    await parity_finding(conversation, checked["vllm"], checked["ollama"])
                )
        for name, engine in checked.items():
            if LABELS[name] in down:
                for kind in ("thinking", "streaming", "decode speed"):
                    findings.append(not_checked(f"{kind}, {LABELS[name]}", [LABELS[name]]))
            else:
                findings += await behaviour_findings(name, engine, gpu_name)
    finally:
        for engine in engines.values():
            await engine.aclose()
    return findings


def run_stack_check(gpu_name: str | None = None) -> int:
    """Print the report for the stack the settings name; 1 if any line is a problem."""
    findings = asyncio.run(check_stack(Settings.from_env(), gpu_name))
    print(report(findings), end="")
    return 1 if any(f.status == "problem" for f in findings) else 0
