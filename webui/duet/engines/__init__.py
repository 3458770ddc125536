"""Engine adapters: the only code that knows vLLM's and Ollama's wire formats.

events.py   the typed stream every adapter yields
base.py     the interface (ChatRequest in, StreamEvents out)
http.py     reading a streaming response line by line, stamped on arrival
openai.py   vLLM and Ollama's /v1 (OpenAI chat-completions SSE)
ollama.py   Ollama's native /api/chat (NDJSON)
"""

from __future__ import annotations

from duet.engines.base import Engine
from duet.engines.events import EngineName
from duet.engines.ollama import OllamaEngine
from duet.engines.openai import OllamaOpenAIEngine, VllmEngine
from duet.settings import Settings


def build_engines(settings: Settings) -> dict[EngineName, Engine]:
    timeouts = {"connect_timeout": settings.connect_timeout, "read_timeout": settings.read_timeout}
    return {
        "vllm": VllmEngine(
            "vllm", "vLLM", settings.vllm_url, settings.vllm_model,
            api_key=settings.vllm_api_key, **timeouts,
        ),
        "ollama": OllamaEngine(
            "ollama", "Ollama", settings.ollama_url, settings.ollama_model, **timeouts
        ),
        "ollama-openai": OllamaOpenAIEngine(
            "ollama-openai", "Ollama (/v1)", settings.ollama_url, settings.ollama_model, **timeouts
        ),
    }  # fmt: skip
