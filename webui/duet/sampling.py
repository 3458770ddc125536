"""Sampling parameters: Qwen3's recommended values for each mode, and the accepted ranges.

Qwen3's model card recommends, for thinking mode, temperature 0.6, top_p 0.95, top_k 20, min_p 0,
and for non-thinking mode 0.7, 0.8, 20, 0; greedy decoding is discouraged in thinking mode.
"""

from __future__ import annotations

from typing import Any

from duet.engines.base import Sampling

DEFAULT_MAX_TOKENS = 2048
# Qwen3's native context is 32,768 tokens: no single answer can be longer.
MAX_TOKENS_LIMIT = 32768
TOP_K_LIMIT = 1000

THINKING = Sampling(temperature=0.6, top_p=0.95, top_k=20, max_tokens=DEFAULT_MAX_TOKENS)
NON_THINKING = Sampling(temperature=0.7, top_p=0.8, top_k=20, max_tokens=DEFAULT_MAX_TOKENS)


def recommended_sampling(thinking: bool) -> Sampling:
    return THINKING if thinking else NON_THINKING


# The sampling fields the composer shows, by their form names.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "max_tokens")


def sampling_values(thinking: bool) -> dict[str, Any]:
    """The recommended values of the composer's sampling fields for a mode."""
    sampling = recommended_sampling(thinking)
    return {name: getattr(sampling, name) for name in SAMPLING_FIELDS}
