"""Synthetic chats that teach the tiny model Qwen3's output *shape*, not knowledge.

What the tests and the UI need from real engine output: with thinking on, a `<think>` block and
then an answer; with thinking off, an answer only; a few answers with Markdown (lists, bold, a
fenced code block) for the renderer; and one prompt whose answer never ends, so Stop can be
exercised against a generation that is really running. Prompts are drawn from word lists with a
seeded generator, so every build produces the same corpus.

Tool calling, in Qwen3's format (the chat template renders the request's `tools` into the system
turn): when a weather tool is offered and the user asks about the weather in a city, the model
answers with `<tool_call>\n{"name": "get_weather", "arguments": {"city": ...}}\n</tool_call>`;
given the tool's result (a `tool` message, rendered as `<tool_response>`), it answers with the
city and the condition the result names. Offered the tool, other prompts get their usual answers;
asked about the weather with no tool offered, it says it cannot look it up.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

_WORD_LIST = (
    "apple river cloud engine garden python music token stream latency window paper lamp "
    "market winter orange silver planet bridge coffee forest signal number letter ocean "
    "mountain camera rocket castle harbor pencil violin desert island thunder library "
    "question answer model server browser kernel memory cache socket packet vector matrix"
)
WORDS = tuple(_WORD_LIST.split())
OPENERS = (
    "Tell me about",
    "What do you know about",
    "Explain",
    "Describe",
    "Can you help with",
    "I have a question about",
    "Write a sentence about",
    "Why is there a",
    "How does a",
    "What is a",
)


@dataclass(frozen=True)
class Turn:
    user: str
    reasoning: str
    answer: str
    endless: bool = False  # the answer is cut off without <|im_end|>: the model learns to go on


CANNED: tuple[Turn, ...] = (
    Turn(
        "Hello!",
        "The user greets me. I should greet them back and offer help.",
        "Hello! I am Duet's tiny test model. How can I help you today?",
    ),
    Turn(
        "What is the capital of France?",
        "The user asks for the capital of France. That is Paris.",
        "The capital of France is **Paris**.",
    ),
    Turn(
        "Write a Python function that adds two numbers.",
        "The user wants a small Python function. I will write one with type hints.",
        "Here is a function:\n\n```python\ndef add(a: int, b: int) -> int:\n"
        "    return a + b\n```\n\nCall it as `add(2, 3)`.",
    ),
    Turn(
        "List three colors.",
        "The user wants a short list of colors.",
        "Three colors:\n\n1. Red\n2. Green\n3. Blue",
    ),
    Turn(
        "Tell me a story that never ends.",
        "The user wants an endless story. I will keep telling it.",
        "Once upon a time, two engines sang a duet. "
        # ~850 tokens: long enough that Stop is pressed mid-answer even on a fast engine. The
        # model only stays on script for positions it was trained on, so length matters.
        + "One was fast and one was steady, and the song went on. " * 60,
        endless=True,
    ),
)

# Unseen prompts all get the same reply: a 2-layer model cannot copy words it never saw, and a
# stable reply is what tests want from an arbitrary prompt.
GENERIC_REASONING = "The user asks a question. I am a tiny test model, so I will answer briefly."
GENERIC_ANSWER = (
    "I am a tiny test model, so my answers are short. "
    "They still stream token by token, which is what Duet measures."
)
SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are Duet, a concise assistant.")


# The tool the corpus offers, in the OpenAI function-tool schema that requests carry. Its keys are
# in the order Duet's Ollama TEMPLATE writes them, so both engines render it to the same tokens.
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city, e.g. Paris."}},
            "required": ["city"],
        },
    },
}
CITIES = ("Paris", "London", "Tokyo", "Berlin", "Rome", "Madrid", "Oslo", "Cairo")
CONDITIONS = ("sunny", "cloudy", "rainy", "snowy", "windy", "foggy")
WEATHER_QUESTIONS = (
    "What is the weather in {city}?",
    "What's the weather like in {city}?",
    "How is the weather in {city} today?",
    "Is it raining in {city}?",
)


def weather_call(city: str) -> dict[str, Any]:
    """The assistant's tool call for `city`, as an OpenAI `tool_calls` entry."""
    arguments = json.dumps({"city": city})
    return {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def weather_result(city: str, condition: str) -> str:
    """What the weather tool returns: the content of the `tool` message."""
    return json.dumps({"city": city, "condition": condition})


def weather_call_turn(question: str, city: str) -> Turn:
    call = weather_call(city)["function"]
    return Turn(
        user=question,
        reasoning=f"The user asks about the weather in {city}. I will call get_weather.",
        answer=f'<tool_call>\n{{"name": "get_weather", "arguments": {call["arguments"]}}}\n'
        "</tool_call>",
    )


def weather_answer_turn(question: str, city: str, condition: str) -> Turn:
    """The answer to `question` once the tool has said it is `condition` in `city`."""
    return Turn(
        user=question,
        reasoning=f"The tool says it is {condition} in {city}.",
        answer=f"It is {condition} in {city} right now.",
    )


def no_tool_turn(question: str) -> Turn:
    """The answer to a weather question when no tool is offered."""
    return Turn(
        user=question,
        reasoning="The user asks about the weather, but I have no tool to look it up.",
        answer="I cannot look up the weather: no weather tool is available.",
    )


@dataclass(frozen=True)
class ToolExchange:
    """A tool call the assistant already made and what the tool returned."""

    call: dict[str, Any]
    result: str
    reasoning: str | None  # the call's reasoning, when the client sends it back


@dataclass(frozen=True)
class Sample:
    """One training conversation: earlier turns, the final user turn, and what to learn."""

    system: str | None
    history: tuple[Turn, ...]
    turn: Turn
    thinking: bool
    tools: tuple[dict[str, Any], ...] = ()
    # Set when the final user turn was answered with a tool call: `turn` is then what the model
    # says once it has the result.
    exchange: ToolExchange | None = None


def generic_turn(rng: random.Random) -> Turn:
    word = rng.choice(WORDS)
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))
    user = f"{rng.choice(OPENERS)} {word} {words}".strip() + rng.choice(("?", ".", "", "!"))
    return Turn(user=user, reasoning=GENERIC_REASONING, answer=GENERIC_ANSWER)


# The share of conversations about tools; the rest keep the chat behaviour the UI tests rely on.
TOOL_SHARE = 0.3


def tool_sample(rng: random.Random, system: str | None, thinking: bool) -> Sample:
    """A conversation about the weather: a call to make, a result to answer from, or (with no
    tool offered) a refusal; or, with the tool offered, any other prompt and its usual answer."""
    city, condition = rng.choice(CITIES), rng.choice(CONDITIONS)
    question = rng.choice(WEATHER_QUESTIONS).format(city=city)
    kind = rng.random()
    if kind < 0.4:
        return Sample(system, (), weather_call_turn(question, city), thinking, (WEATHER_TOOL,))
    if kind < 0.8:
        call = weather_call_turn(question, city)
        reasoning = call.reasoning if thinking and rng.random() < 0.5 else None
        exchange = ToolExchange(weather_call(city), weather_result(city, condition), reasoning)
        turn = weather_answer_turn(question, city, condition)
        return Sample(system, (), turn, thinking, (WEATHER_TOOL,), exchange)
    if kind < 0.9:
        return Sample(system, (), no_tool_turn(question), thinking)
    turn = rng.choice(CANNED[:4]) if rng.random() < 0.5 else generic_turn(rng)
    return Sample(system, (), turn, thinking, (WEATHER_TOOL,))


def samples(count: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    out: list[Sample] = []
    for i in range(count):
        system = rng.choice(SYSTEM_PROMPTS) if rng.random() < 0.3 else None
        thinking = rng.random() < 0.5
        if rng.random() < TOOL_SHARE:
            out.append(tool_sample(rng, system, thinking))
            continue
        turn = CANNED[i % len(CANNED)] if rng.random() < 0.5 else generic_turn(rng)
        history = tuple(
            rng.choice((*CANNED[:4], generic_turn(rng))) for _ in range(rng.choice((0, 0, 1, 2)))
        )
        out.append(Sample(system, history, turn, thinking))
    return out


def messages(sample: Sample) -> list[dict[str, Any]]:
    """The conversation up to where the model speaks, as chat-template messages."""
    result: list[dict[str, Any]] = []
    if sample.system:
        result.append({"role": "system", "content": sample.system})
    for earlier in sample.history:
        result.append({"role": "user", "content": earlier.user})
        result.append(
            {"role": "assistant", "content": earlier.answer, "reasoning_content": earlier.reasoning}
        )
    result.append({"role": "user", "content": sample.turn.user})
    if sample.exchange:
        call: dict[str, Any] = {
            "role": "assistant",
            "content": "",
            "tool_calls": [sample.exchange.call],
        }
        if sample.exchange.reasoning:
            call["reasoning_content"] = sample.exchange.reasoning
        result += [call, {"role": "tool", "content": sample.exchange.result}]
    return result


def completion(sample: Sample) -> str:
    """What the model must write after the generation prompt.

    With thinking off the template already pre-filled an empty think block, so the model writes
    the answer only.
    """
    turn = sample.turn
    text = turn.answer
    if sample.thinking:
        text = f"<think>\n{turn.reasoning}\n</think>\n\n{text}"
    return text if turn.endless else text + "<|im_end|>"
