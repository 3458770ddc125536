"""Synthetic chats that teach the tiny model Qwen3's output *shape*, not knowledge.

What the tests and the UI need from real engine output: with thinking on, a `<think>` block and
then an answer; with thinking off, an answer only; a few answers with Markdown (lists, bold, a
fenced code block) for the renderer; and one prompt whose answer never ends, so Stop can be
exercised against a generation that is really running. Prompts are drawn from word lists with a
seeded generator, so every build produces the same corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Sample:
    """One training conversation: earlier turns, the final user turn, and what to learn."""

    system: str | None
    history: tuple[Turn, ...]
    turn: Turn
    thinking: bool


def generic_turn(rng: random.Random) -> Turn:
    word = rng.choice(WORDS)
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))
    user = f"{rng.choice(OPENERS)} {word} {words}".strip() + rng.choice(("?", ".", "", "!"))
    return Turn(user=user, reasoning=GENERIC_REASONING, answer=GENERIC_ANSWER)


def samples(count: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    out: list[Sample] = []
    for i in range(count):
        turn = CANNED[i % len(CANNED)] if rng.random() < 0.5 else generic_turn(rng)
        history = tuple(
            rng.choice((*CANNED[:4], generic_turn(rng))) for _ in range(rng.choice((0, 0, 1, 2)))
        )
        system = rng.choice(SYSTEM_PROMPTS) if rng.random() < 0.3 else None
        out.append(Sample(system, history, turn, thinking=rng.random() < 0.5))
    return out


def messages(sample: Sample) -> list[dict[str, str]]:
    """The conversation up to the last user turn, as chat-template messages."""
    result: list[dict[str, str]] = []
    if sample.system:
        result.append({"role": "system", "content": sample.system})
    for earlier in sample.history:
        result.append({"role": "user", "content": earlier.user})
        result.append(
            {"role": "assistant", "content": earlier.answer, "reasoning_content": earlier.reasoning}
        )
    result.append({"role": "user", "content": sample.turn.user})
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
