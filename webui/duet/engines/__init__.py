"""Engine adapters: the only code that knows the engines' wire formats.

events.py      the typed stream every adapter yields
base.py        the interface (ChatRequest in, StreamEvents out)
http.py        reading a streaming response line by line, stamped on arrival
openai.py      vLLM, Ollama's /v1 and `transformers serve` (OpenAI chat-completions SSE)
ollama.py      Ollama's native /api/chat (NDJSON)
think_tags.py  reasoning split from the answer by Qwen3's <think> tags, for an engine that
               leaves them in
routes.py      the registry of engine routes, and `build_engines` from it
"""

from __future__ import annotations

from duet.engines.routes import build_engines

__all__ = ["build_engines"]
