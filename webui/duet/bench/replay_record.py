"""Recording the replay source's answers (`duet.bench.replay_source`) from the real engines.

Each chat stream is asked for as Duet's own adapters ask (their `payload`), with the relay
benchmark's request (`duet.bench.relay.bench_request`: a fixed prompt, greedy, thinking off),
and its body is kept byte for byte with its status and content type; so are the answers to
the calls Duet's adapters and health checks make. With `--ignore-eos`, vLLM is asked for
exactly `--max-tokens` tokens (`duet.bench.load_send.FixedLengthVllm`); Ollama has no such
option and stops where the model does.

    python -m duet.bench.replay_record --vllm http://127.0.0.1:8000 \\
        --ollama http://127.0.0.1:11434 --model qwen3-duet-tiny --max-tokens 64 \\
        --out webui/duet/bench/replay_recordings.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx

from duet.bench.load_send import fixed_length_vllm
from duet.bench.relay import bench_request
from duet.engines import build_engines
from duet.settings import Settings

# What Duet's adapters and health checks call besides a chat, by engine: (method, path).
DOCUMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "vllm": (("GET", "/v1/models"), ("GET", "/version"), ("GET", "/health")),
    "ollama": (
        ("GET", "/api/tags"),
        ("GET", "/api/ps"),
        ("GET", "/api/version"),
        ("GET", "/v1/models"),
        ("POST", "/api/show"),
    ),
}
CHAT_PATHS = {
    "vllm": ("vllm", "/v1/chat/completions"),
    "ollama": ("ollama", "/api/chat"),
    "ollama-openai": ("ollama", "/v1/chat/completions"),
}


def recorded(response: httpx.Response, body: bytes) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type", ""),
        "body": body.decode("utf-8"),
    }


def record(settings: Settings, max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
    """Every stream and answer the replay source serves, from the engines `settings` name."""
    engines: dict[str, Any] = build_engines(settings)
    if ignore_eos:
        engines["vllm"] = fixed_length_vllm(settings)
    bases = {"vllm": settings.vllm_url, "ollama": settings.ollama_url}
    request = bench_request(max_tokens)
    streams, documents = {}, {}
    with httpx.Client(timeout=300.0, trust_env=False) as client:
        for route, (prefix, path) in CHAT_PATHS.items():
            payload = engines[route].payload(request)
            with client.stream("POST", bases[prefix] + path, json=payload) as response:
                body = b"".join(response.iter_bytes())
            response.raise_for_status()
            streams[route] = recorded(response, body)
        for prefix, calls in DOCUMENTS.items():
            documents[prefix] = {}
            for method, path in calls:
                body_json = {"model": settings.ollama_model} if method == "POST" else None
                response = client.request(method, bases[prefix] + path, json=body_json)
                documents[prefix][f"{method} {path}"] = recorded(response, response.content)
    about = {
        "what": "Recorded from the real engines by duet.bench.replay_record, for the replay"
        " source (duet.bench.replay_source): every body byte for byte, with its status and"
        " content type. Served by the replay source, they measure Duet, not an engine.",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "vllm": {"url": settings.vllm_url, "model": settings.vllm_model},
        "ollama": {"url": settings.ollama_url, "model": settings.ollama_model},
        "request": {
            "prompt": request.messages[0].content,
            "max_tokens": max_tokens,
            "thinking": request.thinking,
            "vllm_ignore_eos": ignore_eos,
        },
    }
    return {"about": about, "streams": streams, "documents": documents}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vllm", default="http://127.0.0.1:8000")
    parser.add_argument("--ollama", default="http://127.0.0.1:11434")
    parser.add_argument("--model", default="qwen3-duet-tiny")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ignore-eos", action="store_true", help="vLLM: exactly --max-tokens")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(
        vllm_url=args.vllm, ollama_url=args.ollama, vllm_model=args.model, ollama_model=args.model
    )
    recordings = record(settings, args.max_tokens, args.ignore_eos)
    args.out.write_text(json.dumps(recordings, indent=1, ensure_ascii=False) + "\n", "utf-8")
    for route, entry in recordings["streams"].items():
        print(f"{route}: {len(entry['body'])} characters", flush=True)


if __name__ == "__main__":
    main()
